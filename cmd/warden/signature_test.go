package main

// Signed requests (issue 18), end to end: a "gateway" signs each request
// with RFC 9421; warden verifies it against the request as it arrived and
// refuses every altered, stale or replayed one before any byte reaches the
// app.

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/signature"
	"github.com/warden-sidecar/warden/agent/token/tokentest"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// signedRaw builds a raw HTTP/1.1 request and signs it with s as a gateway
// would; tamper then changes the request after signing (nil: nothing).
func signedRaw(t *testing.T, s *signature.Signer, method, target, host string, headers []string, body string, tamper func(*rawReq)) string {
	t.Helper()
	r := &rawReq{method: method, target: target, host: host, headers: headers, body: body}
	if s != nil {
		var fields []pep.Field
		fields = append(fields, pep.Field{Name: []byte("Host"), Value: []byte(host)})
		for _, h := range headers {
			n, v, _ := strings.Cut(h, ": ")
			fields = append(fields, pep.Field{Name: []byte(n), Value: []byte(v)})
		}
		var b []byte
		if body != "" {
			b = []byte(body)
		}
		hs, err := s.Sign(&signature.Request{Method: []byte(method), Scheme: "https", Authority: []byte(host),
			RawTarget: []byte(target), Headers: fields, Body: b})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			r.headers = append(r.headers, h.Name+": "+h.Value)
		}
	}
	if tamper != nil {
		tamper(r)
	}
	return r.String()
}

type rawReq struct {
	method, target, host string
	headers              []string
	body                 string
}

func (r *rawReq) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", r.method, r.target, r.host)
	for _, h := range r.headers {
		b.WriteString(h + "\r\n")
	}
	if r.body != "" || r.method == "POST" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.body))
	}
	b.WriteString("\r\n" + r.body)
	return b.String()
}

func (r *rawReq) setHeader(name, value string) {
	for i, h := range r.headers {
		if n, _, _ := strings.Cut(h, ": "); strings.EqualFold(n, name) {
			r.headers[i] = name + ": " + value
			return
		}
	}
	r.headers = append(r.headers, name+": "+value)
}

func writeJWKS(t *testing.T, keys ...*tokentest.Key) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "signers.json")
	if err := os.WriteFile(file, tokentest.JWKS(t, keys...), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestAttackSignedRequests(t *testing.T) {
	gw := tokentest.NewKey(t, "ES256", "gateway")
	other := tokentest.NewKey(t, "ES256", "gateway") // same kid, not the gateway's key
	stranger := tokentest.NewKey(t, "ES256", "stranger")
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_SIGNATURE_KEYS="+writeJWKS(t, gw))

	signer := func(k *tokentest.Key, comps []string, now func() time.Time) *signature.Signer {
		sg, err := signature.NewSigner(k.Private, k.KID, comps, now)
		if err != nil {
			t.Fatal(err)
		}
		return sg
	}
	good := signer(gw, nil, nil)
	auth := []string{"Authorization: Bearer " + randomSecret(t, "bearer token", "tok-")}
	body := `{"amount":5}`
	json := append([]string{"Content-Type: application/json"}, auth...)

	ok := signedRaw(t, good, "POST", "/payments?dry_run=1", "app.local", json, body, nil)
	if got := s.send(t, ok); got.status != 200 {
		t.Fatalf("a request signed by the gateway: %s", got)
	}
	if r := app.last(t); r.target != "/payments?dry_run=1" || string(r.body) != body {
		t.Errorf("the app got %s with %q", r.target, r.body)
	}

	attacks := []inputAttack{
		{"unsigned", rawGET("/s/unsigned"), 401, "invalid_signature", "signature:missing"},
		{"unknown key", signedRaw(t, signer(stranger, nil, nil), "GET", "/s/stranger", "app.local", auth, "", nil), 401, "invalid_signature", "signature:unknown_key"},
		{"another key with the gateway's kid", signedRaw(t, signer(other, nil, nil), "GET", "/s/other", "app.local", auth, "", nil), 401, "invalid_signature", "signature:bad_signature"},
		{"method changed", signedRaw(t, good, "GET", "/s/method", "app.local", auth, "", func(r *rawReq) { r.method = "DELETE" }), 401, "invalid_signature", "signature:bad_signature"},
		{"path changed", signedRaw(t, good, "GET", "/s/path", "app.local", auth, "", func(r *rawReq) { r.target = "/s/path2" }), 401, "invalid_signature", "signature:bad_signature"},
		{"query changed", signedRaw(t, good, "GET", "/s/query?limit=1", "app.local", auth, "", func(r *rawReq) { r.target = "/s/query?limit=1000" }), 401, "invalid_signature", "signature:bad_signature"},
		{"authority changed", signedRaw(t, good, "GET", "/s/authority", "app.local", auth, "", func(r *rawReq) { r.host = "admin.local" }), 401, "invalid_signature", "signature:bad_signature"},
		{"body changed", signedRaw(t, good, "POST", "/s/body", "app.local", json, body, func(r *rawReq) { r.body = `{"amount":9}` }), 401, "invalid_signature", "signature:digest_mismatch"},
		{"token swapped", signedRaw(t, good, "GET", "/s/token", "app.local", auth, "", func(r *rawReq) {
			r.setHeader("Authorization", "Bearer "+randomSecret(t, "bearer token", "tok-"))
		}), 401, "invalid_signature", "signature:bad_signature"},
		{"components missing", signedRaw(t, signer(gw, []string{"@method", "@authority"}, nil), "GET", "/s/components", "app.local", auth, "", nil), 401, "invalid_signature", "signature:component_not_covered"},
		{"stale", signedRaw(t, signer(gw, nil, func() time.Time { return time.Now().Add(-10 * time.Minute) }), "GET", "/s/stale", "app.local", auth, "", nil), 401, "invalid_signature", "signature:stale"},
		{"duplicated signature header", signedRaw(t, good, "GET", "/s/dup", "app.local", auth, "", func(r *rawReq) {
			for _, h := range r.headers {
				if strings.HasPrefix(h, "Signature: ") {
					r.headers = append(r.headers, h)
					break
				}
			}
		}), 401, "invalid_signature", "signature:duplicate_header"},
	}
	for _, a := range attacks {
		got := s.send(t, a.req)
		wantRefused(t, a.name, got, a.status, a.code)
		target := strings.Fields(a.req)[1]
		if n := app.receivedTarget(target); n != 0 {
			t.Errorf("%s: the app received %s", a.name, target)
		}
		ev := s.wantOnce(t, "signature_invalid", got.header.Get("X-Request-Id"))
		if ev["reason"] != a.rule || ev["path"] != strings.SplitN(target, "?", 2)[0] || ev["source_ip"] != "127.0.0.1" {
			t.Errorf("%s: signature_invalid %v, want reason %s and path %s", a.name, ev, a.rule, target)
		}
	}

	// The same signed request twice: the second is a replay.
	again := signedRaw(t, good, "GET", "/s/replay", "app.local", auth, "", nil)
	if got := s.send(t, again); got.status != 200 {
		t.Fatalf("first sending: %s", got)
	}
	replay := s.send(t, again)
	wantRefused(t, "the replay", replay, 401, "invalid_signature")
	if ev := s.wantOnce(t, "signature_invalid", replay.header.Get("X-Request-Id")); ev["reason"] != "signature:replayed" || ev["severity"] != "high" {
		t.Errorf("the replay's event %v, want signature:replayed, high", ev)
	}
	if n := app.receivedTarget("/s/replay"); n != 1 {
		t.Errorf("the app received the replayed request %d times, want once", n)
	}
	// Each refusal counted by its reason: two verified, every attack and
	// the replay refused, and the unsigned barrier requests of wantOnce.
	b := float64(s.barriers)
	wantSeries(t, scrape(t, s.admin), map[string]float64{
		`warden_signature_verifications_total{reason="none",result="valid"}`:                    2,
		`warden_signature_verifications_total{reason="missing",result="refused"}`:               1 + b,
		`warden_signature_verifications_total{reason="unknown_key",result="refused"}`:           1,
		`warden_signature_verifications_total{reason="bad_signature",result="refused"}`:         6,
		`warden_signature_verifications_total{reason="digest_mismatch",result="refused"}`:       1,
		`warden_signature_verifications_total{reason="component_not_covered",result="refused"}`: 1,
		`warden_signature_verifications_total{reason="stale",result="refused"}`:                 1,
		`warden_signature_verifications_total{reason="duplicate_header",result="refused"}`:      1,
		`warden_signature_verifications_total{reason="replayed",result="refused"}`:              1,
		`warden_denials_total{stage="signature"}`:                                               13 + b,
	})
}

// The policy sees who signed, and can require a signature for some routes
// only (WARDEN_SIGNATURE_REQUIRED=false).
func TestPolicyOnSignature(t *testing.T) {
	gw := tokentest.NewKey(t, "EdDSA", "gateway")
	app := startApp(t, appOptions{})
	const rego = `package warden.authz
default allow := false
allow if not startswith(input.path, "/payments")
allow if {
	startswith(input.path, "/payments")
	input.signature.key_id == "gateway"
	"@target-uri" in input.signature.components
}
`
	s := startSidecar(t, app, "WARDEN_SIGNATURE_KEYS="+writeJWKS(t, gw), "WARDEN_SIGNATURE_REQUIRED=false",
		"WARDEN_POLICY_BUNDLE="+policyDir(t, rego))
	sg, err := signature.NewSigner(gw.Private, gw.KID, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		req    string
		status int
	}{
		{"unsigned, open route", rawGET("/status"), 200},
		{"unsigned, signed-only route", rawGET("/payments/1"), 403},
		{"signed, signed-only route", signedRaw(t, sg, "GET", "/payments/2", "app.local", nil, "", nil), 200},
	} {
		if got := s.send(t, c.req); got.status != c.status {
			t.Errorf("%s: %s, want %d", c.name, got, c.status)
		}
	}
}

// One warden signs what its app sends out, the next verifies it.
func TestOutboundSigning(t *testing.T) {
	key := tokentest.NewKey(t, "ES256", "")
	der, err := x509.MarshalPKCS8PrivateKey(key.Private)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "signing.pem")
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	secretPEM(t, "outbound signing key", keyFile)
	jwk := key.Public()
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	key.KID = base64.RawURLEncoding.EncodeToString(tp)

	app := startApp(t, appOptions{})
	orders := startSidecar(t, app, "WARDEN_SIGNATURE_KEYS="+writeJWKS(t, key))
	frontend := startWarden(t, "WARDEN_IDENTITY=dev", "WARDEN_DEV_DIR="+orders.devDir,
		"WARDEN_SPIFFE_ID=spiffe://warden.local/ns/default/sa/frontend",
		"WARDEN_INBOUND_ADDR=127.0.0.1:0", "WARDEN_ADMIN_ADDR=127.0.0.1:0", "WARDEN_OUTBOUND_ADDR=127.0.0.1:0",
		"WARDEN_OUTBOUND_ROUTES=orders="+orders.addr+"|spiffe://warden.local/ns/default/sa/app",
		"WARDEN_OUTBOUND_SIGNING_KEY="+keyFile)
	out := "http://" + frontend.listenAddr(t, "outbound")
	c := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	var code int
	testenv.Poll(t, "the outbound route", 15*time.Second, func() bool {
		req, _ := http.NewRequest("POST", out+"/orders?id=7", strings.NewReader(`{"item":"tea"}`))
		req.Host = "orders"
		resp, err := c.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		code = resp.StatusCode
		return code != http.StatusServiceUnavailable && code != http.StatusBadGateway
	})
	if code != 200 {
		t.Fatalf("a signed outbound request: %d, want 200", code)
	}
	r := app.last(t)
	if r.target != "/orders?id=7" || len(r.values("Signature")) != 1 || len(r.values("Content-Digest")) != 1 {
		t.Errorf("the app got %s with signature %q, digest %q", r.target, r.values("Signature"), r.values("Content-Digest"))
	}
	// Without the signing key, the same call is refused by the verifier.
	plain := startWarden(t, "WARDEN_IDENTITY=dev", "WARDEN_DEV_DIR="+orders.devDir,
		"WARDEN_SPIFFE_ID=spiffe://warden.local/ns/default/sa/frontend",
		"WARDEN_INBOUND_ADDR=127.0.0.1:0", "WARDEN_ADMIN_ADDR=127.0.0.1:0", "WARDEN_OUTBOUND_ADDR=127.0.0.1:0",
		"WARDEN_OUTBOUND_ROUTES=orders="+orders.addr+"|spiffe://warden.local/ns/default/sa/app")
	out = "http://" + plain.listenAddr(t, "outbound")
	testenv.Poll(t, "the unsigned outbound route", 15*time.Second, func() bool {
		req, _ := http.NewRequest("GET", out+"/orders/unsigned", nil)
		req.Host = "orders"
		resp, err := c.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		code = resp.StatusCode
		return code != http.StatusServiceUnavailable && code != http.StatusBadGateway
	})
	if code != 401 || app.receivedTarget("/orders/unsigned") != 0 {
		t.Errorf("an unsigned outbound request: %d, want 401 and nothing at the app", code)
	}
}
