package bundle

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSignedBundles(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "ES384", "EdDSA", "HS256"} {
		t.Run(alg, func(t *testing.T) {
			key := newKey(t, alg)
			other := newKey(t, alg)
			srv := newBundleServer(t)
			srv.set(build(t, "signed-1", policy(allowGET), &key))
			e := newEngine(t, Options{Source: srv.URL, VerificationKeyPath: key.verifyPath, CacheSize: 10, CacheTTL: time.Minute})
			e.mustLoad(t)
			if d := decide(t, e.Engine, request("GET", "/")); !d.Allow || d.Revision != "signed-1" {
				t.Fatalf("signed bundle: %+v", d)
			}

			signed2 := build(t, "signed-2", policy(allowPOST), &key)
			rejects := []struct {
				name string
				body []byte
				want string
			}{
				{"an unsigned bundle", build(t, "unsigned", policy(allowPOST), nil), "verify: bundle is not signed"},
				{"a policy changed after signing", tamper(t, signed2, "authz.rego", allowPOST+"allow if true\n"), "verify: authz.rego: digest mismatch"},
				{"a manifest changed after signing", tamper(t, signed2, ".manifest", `{"revision": "signed-2", "roots": [""]}`), "verify: .manifest: digest mismatch"},
				{"a file added after signing", func() []byte {
					files := unpackArchive(t, signed2)
					files["warden/extra/data.json"] = []byte(`{"x": 1}`)
					return packArchive(t, files)
				}(), "verify: file warden/extra/data.json not included in bundle signature"},
				{"a signed file removed", func() []byte {
					files := unpackArchive(t, signed2)
					delete(files, "authz.rego")
					return packArchive(t, files)
				}(), "verify: signed files missing from the bundle: authz.rego"},
				{"a bundle signed with another key", build(t, "other", policy(allowPOST), &other), "verify: failed to verify JWT signature"},
			}
			for _, r := range rejects {
				srv.set(r.body)
				e.mustReject(t, r.want)
				if d := decide(t, e.Engine, request("GET", "/")); !d.Allow || d.Revision != "signed-1" {
					t.Fatalf("after %s the good revision stopped deciding: %+v", r.name, d)
				}
			}

			srv.set(signed2)
			e.mustLoad(t)
			if d := decide(t, e.Engine, request("POST", "/")); !d.Allow || d.Revision != "signed-2" {
				t.Fatalf("second signed revision: %+v", d)
			}
		})
	}
}

func TestSignedDirectoryTamperedOnDisk(t *testing.T) {
	key := newKey(t, "ES256")
	dir := t.TempDir()
	writeDir(t, dir, build(t, "d1", policy(allowGET), &key))
	e := newEngine(t, Options{Source: dir, VerificationKeyPath: key.verifyPath})
	e.mustLoad(t)
	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte("package warden.authz\nallow := true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustReject(t, "digest mismatch")
	if d := decide(t, e.Engine, request("DELETE", "/")); d.Allow || d.Revision != "d1" {
		t.Fatalf("tampered policy took effect: %+v", d)
	}
}

func TestKeyAlgorithmInference(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "ES384", "EdDSA", "HS256"} {
		k := newKey(t, alg)
		raw, err := os.ReadFile(k.verifyPath)
		if err != nil {
			t.Fatal(err)
		}
		got, err := keyAlg(raw, "")
		if err != nil || got != alg {
			t.Errorf("key for %s inferred as %q, %v", alg, got, err)
		}
	}
	// PS256 with an RSA key is OPA's too; it must be asked for.
	k := newKey(t, "RS256")
	raw, _ := os.ReadFile(k.verifyPath)
	if got, err := keyAlg(raw, "PS256"); err != nil || got != "PS256" {
		t.Errorf("RSA key with PS256: %q, %v", got, err)
	}
}

func TestVerificationErrorsNameTheSource(t *testing.T) {
	key := newKey(t, "RS256")
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	writeTarball(t, path, build(t, "u", policy(allowGET), nil))
	e := newEngine(t, Options{Source: path, VerificationKeyPath: key.verifyPath})
	err := e.Load(context.Background())
	if want := "bundle: " + path + ": verify: bundle is not signed (no .signatures.json)"; err == nil || err.Error() != want {
		t.Fatalf("Load: %v\nwant %s", err, want)
	}
	if e.Ready() {
		t.Fatal("an unsigned bundle became active")
	}
}
