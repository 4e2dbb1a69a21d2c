package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/token/tokentest"
	"github.com/warden-sidecar/warden/internal/testenv"
)

const (
	jwtIssuer   = "https://sts.bank.test"
	jwtAudience = "accounts"
)

// accountsPolicy: a user may PUT only their own account; GET /public needs
// no token.
const accountsPolicy = `package warden.authz

default allow := false

allow if {
	input.method == "PUT"
	input.path == concat("/", ["", "account", input.token.user])
}

allow if {
	input.method == "GET"
	input.path == "/public"
}
`

// policyDir is a bundle directory holding rego.
func policyDir(t *testing.T, rego string) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "authz.rego"), rego)
	return dir
}

// call sends method url with the token as a Bearer credential (none when
// empty) and returns the status, the WWW-Authenticate header and the body.
func call(t *testing.T, c *http.Client, method, url, token string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(b)
}

func userClaims(user string) map[string]any {
	c := tokentest.Claims(jwtIssuer, "id-"+user, jwtAudience, time.Hour)
	c["preferred_username"] = user
	return c
}

// The real binary with a JWKS URL and a bundle directory: the token's
// claims decide, per user, and each user's decision is cached apart.
func TestJWTEndToEnd(t *testing.T) {
	k1 := tokentest.NewKey(t, "RS256", "sts-2026-01")
	jwks := &docServer{}
	jwks.set(503, nil) // down at start
	hs := httptest.NewServer(jwks)
	defer hs.Close()

	decisions := filepath.Join(t.TempDir(), "decisions.log")
	w := startDevSidecar(t, "WARDEN_POLICY_BUNDLE="+policyDir(t, accountsPolicy), "WARDEN_DECISION_LOG="+decisions,
		"WARDEN_JWT_JWKS="+hs.URL+"/jwks.json", "WARDEN_JWT_ISSUERS="+jwtIssuer, "WARDEN_JWT_AUDIENCES="+jwtAudience)
	alice, bob := secret(t, "bearer token", k1.Mint(t, userClaims("alice"))), secret(t, "bearer token", k1.Mint(t, userClaims("bob")))

	testenv.Poll(t, "/readyz to wait for the JWKS", 15*time.Second, func() bool {
		code, body := get(t, w.admin+"/readyz")
		return code == 503 && strings.Contains(body, "jwks not loaded")
	})
	if code, challenge, _ := call(t, w.client, "PUT", w.inbound+"/account/alice", alice); code != 401 || challenge == "" {
		t.Errorf("token before the keys arrived: %d %q, want 401 with a challenge", code, challenge)
	}
	w.find(t, func(l map[string]any) bool {
		return l["event"] == "token_invalid" && l["reason"] == "token:keys_unavailable"
	})
	jwks.set(200, tokentest.JWKS(t, k1))
	testenv.Poll(t, "readiness once the keys arrived", 15*time.Second, func() bool { code, _ := get(t, w.admin+"/readyz"); return code == 200 })

	steps := []struct {
		name, method, path, token string
		want                      int
	}{
		{"alice writes her own account", "PUT", "/account/alice", alice, 200},
		{"bob may not write alice's account", "PUT", "/account/alice", bob, 403},
		{"alice again, from the decision cache", "PUT", "/account/alice", alice, 200},
		{"bob again, after alice's allow was cached", "PUT", "/account/alice", bob, 403},
		{"bob writes his own account", "PUT", "/account/bob", bob, 200},
		{"the public path with a token", "GET", "/public", bob, 200},
	}
	for _, s := range steps {
		if code, _, body := call(t, w.client, s.method, w.inbound+s.path, s.token); code != s.want {
			t.Errorf("%s: %d %s, want %d", s.name, code, body, s.want)
		}
	}

	t.Run("no token gets 401 with the Bearer challenge", func(t *testing.T) {
		code, challenge, body := call(t, w.client, "PUT", w.inbound+"/account/alice", "")
		if code != 401 || challenge != `Bearer error="invalid_token"` || !strings.HasPrefix(body, `{"error":"unauthorized","request_id":"`) {
			t.Errorf("no token: %d %q %s", code, challenge, body)
		}
		w.find(t, func(l map[string]any) bool { return l["event"] == "token_invalid" && l["reason"] == "token:missing" })
	})
	t.Run("a token in the query string is not read", func(t *testing.T) {
		if code, _, _ := call(t, w.client, "PUT", w.inbound+"/account/alice?access_token="+alice, ""); code != 401 {
			t.Errorf("query-string token: %d, want 401", code)
		}
	})
	t.Run("invalid tokens get 401 and their reason is logged", func(t *testing.T) {
		expired := userClaims("alice")
		expired["exp"] = time.Now().Add(-time.Hour).Unix()
		other := userClaims("alice")
		other["aud"] = "payments"
		for reason, tok := range map[string]string{
			"expired":               secret(t, "bearer token", k1.Mint(t, expired)),
			"wrong_audience":        secret(t, "bearer token", k1.Mint(t, other)),
			"algorithm_not_allowed": secret(t, "bearer token", tokentest.Unsigned(t, k1.KID, userClaims("alice"))),
			"oversized":             strings.Repeat("a", 9000),
		} {
			code, challenge, body := call(t, w.client, "PUT", w.inbound+"/account/alice", tok)
			if code != 401 || challenge == "" || strings.Contains(body, reason) {
				t.Errorf("%s: %d %q %s", reason, code, challenge, body)
			}
			w.find(t, func(l map[string]any) bool { return l["event"] == "token_invalid" && l["reason"] == "token:"+reason })
		}
	})
	t.Run("a key rotated in is used at once", func(t *testing.T) {
		k2 := tokentest.NewKey(t, "ES256", "sts-2026-02")
		jwks.set(200, tokentest.JWKS(t, k1, k2))
		before := jwks.fetches.Load()
		if code, _, body := call(t, w.client, "PUT", w.inbound+"/account/carol", secret(t, "bearer token", k2.Mint(t, userClaims("carol")))); code != 200 {
			t.Errorf("token of the new key: %d %s", code, body)
		}
		if n := jwks.fetches.Load() - before; n != 1 {
			t.Errorf("%d JWKS fetches for the new kid, want 1", n)
		}
	})

	// The decision log: the claims, per user; alice's repeat came from the
	// cache and bob's first decision did not; no token anywhere in the logs.
	testenv.Poll(t, "decision log lines", 15*time.Second, func() bool {
		b, _ := os.ReadFile(decisions)
		return bytes.Count(b, []byte(`"event":"decision"`)) >= len(steps)
	})
	b, _ := os.ReadFile(decisions)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i, want := range []string{`"user":"alice"`, `"user":"bob"`, `"user":"alice"`, `"user":"bob"`} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("decision %d lacks %s: %s", i, want, lines[i])
		}
	}
	if !strings.Contains(lines[1], `"cached":false`) || !strings.Contains(lines[2], `"cached":true`) || !strings.Contains(lines[3], `"cached":true`) {
		t.Errorf("cache use: bob's first decision must not come from alice's entry:\n%s\n%s\n%s", lines[1], lines[2], lines[3])
	}
	for _, tok := range []string{alice, bob} {
		sig := tok[strings.LastIndexByte(tok, '.')+1:]
		if strings.Contains(string(b), sig) || strings.Contains(w.rawLog(), sig) {
			t.Errorf("a token is in a log")
		}
	}
}

// A JWKS file, tokens optional: a request without one reaches the policy
// (without input.token), an invalid one is still refused.
func TestJWTOptionalWithAJWKSFile(t *testing.T) {
	k := tokentest.NewKey(t, "EdDSA", "file-key")
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, tokentest.JWKS(t, k), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startDevSidecar(t, "WARDEN_POLICY_BUNDLE="+policyDir(t, accountsPolicy), "WARDEN_JWT_JWKS="+file,
		"WARDEN_JWT_ISSUERS="+jwtIssuer, "WARDEN_JWT_AUDIENCES="+jwtAudience, "WARDEN_JWT_REQUIRED=false")
	testenv.Poll(t, "readiness", 15*time.Second, func() bool { code, _ := get(t, w.admin+"/readyz"); return code == 200 })
	if code, _, _ := call(t, w.client, "GET", w.inbound+"/public", ""); code != 200 {
		t.Errorf("no token, optional: %d", code)
	}
	if code, _, _ := call(t, w.client, "PUT", w.inbound+"/account/alice", ""); code != 403 {
		t.Errorf("no token on a path the policy wants a user for: %d, want 403", code)
	}
	if code, _, _ := call(t, w.client, "PUT", w.inbound+"/account/alice", secret(t, "bearer token", k.Mint(t, userClaims("alice")))); code != 200 {
		t.Errorf("alice's token from the file's key: %d", code)
	}
	if code, challenge, _ := call(t, w.client, "GET", w.inbound+"/public", "not.a.token"); code != 401 || challenge == "" {
		t.Errorf("invalid optional token: %d %q, want 401", code, challenge)
	}
}

func TestJWTConfigurationErrors(t *testing.T) {
	tests := []struct {
		env  []string
		want string
	}{
		{[]string{"WARDEN_IDENTITY=dev", "WARDEN_JWT_JWKS=spiffe", "WARDEN_JWT_AUDIENCES=a"},
			"warden: config: WARDEN_JWT_JWKS=spiffe needs WARDEN_IDENTITY=workloadapi"},
		{[]string{"WARDEN_IDENTITY=dev", "WARDEN_JWT_JWKS=https://sts/jwks", "WARDEN_JWT_ISSUERS=i", "WARDEN_JWT_AUDIENCES=a", "WARDEN_JWT_ALGORITHMS=HS256"},
			`warden: config: WARDEN_JWT_ALGORITHMS="HS256": expected comma-separated asymmetric JWS algorithms`},
	}
	for _, tt := range tests {
		cmd := exec.Command(wardenBin)
		cmd.Env = tt.env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("%v: exit %v, want status 1", tt.env, err)
		}
		if out := strings.TrimSpace(stderr.String()); !strings.HasPrefix(out, tt.want) || strings.Contains(out, "\n") {
			t.Errorf("%v: %q, want one line starting %q", tt.env, out, tt.want)
		}
	}
}
