package bundle

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRealOPACLI cross-checks warden against bundles built and signed by the
// real `opa` binary named by WARDEN_OPA_BIN (CI installs v1.22.2): warden
// accepts what `opa build` signs, and both refuse it once a file changed.
func TestRealOPACLI(t *testing.T) {
	opa := os.Getenv("WARDEN_OPA_BIN")
	if opa == "" {
		if os.Getenv("WARDEN_REQUIRE_PRIVILEGED_TESTS") != "" {
			t.Fatal("WARDEN_OPA_BIN is empty; CI must install opa v1.22.2 and name it there")
		}
		t.Skip("WARDEN_OPA_BIN is empty: no opa binary to cross-check against")
	}
	run := func(t *testing.T, dir string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(opa, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("opa %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), err
	}
	for _, alg := range []string{"RS256", "ES256", "EdDSA", "HS256"} {
		t.Run(alg, func(t *testing.T) {
			key := newKey(t, alg)
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "policy", ".manifest"), []byte(`{"revision": "cli-1", "roots": ["warden"]}`))
			writeFile(t, filepath.Join(dir, "policy", "authz.rego"), []byte(allowGET))

			// `opa build --verification-key` insists on an already signed
			// input, so: sign, then have the CLI verify (and re-sign) that.
			if _, err := run(t, dir, "build", "-b", "policy", "--signing-key", key.signing, "--signing-alg", alg, "-o", "signed.tar.gz"); err != nil {
				t.Fatal(err)
			}
			if _, err := run(t, dir, "build", "-b", "signed.tar.gz", "--verification-key", key.verifyPath,
				"--signing-key", key.signing, "--signing-alg", alg, "-o", "resigned.tar.gz"); err != nil {
				t.Fatal("the CLI refused its own signature: ", err)
			}

			src := filepath.Join(dir, "active.tar.gz")
			signed, err := os.ReadFile(filepath.Join(dir, "resigned.tar.gz"))
			if err != nil {
				t.Fatal(err)
			}
			writeTarball(t, src, signed)
			e := newEngine(t, Options{Source: src, VerificationKeyPath: key.verifyPath})
			e.mustLoad(t)
			if d := decide(t, e.Engine, request("GET", "/")); !d.Allow || d.Revision != "cli-1" {
				t.Fatalf("CLI-signed bundle: %+v", d)
			}

			var rego string
			for name := range unpackArchive(t, signed) {
				if strings.HasSuffix(name, ".rego") {
					rego = name
				}
			}
			tampered := tamper(t, signed, rego, "package warden.authz\nallow := true\n")
			writeFile(t, filepath.Join(dir, "tampered.tar.gz"), tampered)
			out, err := run(t, dir, "build", "-b", "tampered.tar.gz", "--verification-key", key.verifyPath,
				"--signing-key", key.signing, "--signing-alg", alg, "-o", "x.tar.gz")
			if err == nil || !strings.Contains(out, "digest mismatch") {
				t.Fatalf("the CLI accepted a tampered bundle, or refused it for another reason: %v", err)
			}
			writeTarball(t, src, tampered)
			e.mustReject(t, "verify: "+rego+": digest mismatch")
			if d := decide(t, e.Engine, request("DELETE", "/")); d.Allow || d.Revision != "cli-1" {
				t.Fatalf("the tampered bundle took effect: %+v", d)
			}
		})
	}
}
