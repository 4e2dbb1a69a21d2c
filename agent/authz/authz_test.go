package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/agent/proxy"
	"github.com/warden-sidecar/warden/bundle"
)

const ownID = "spiffe://warden.test/ns/default/sa/app"

// policy is a real bundle directory exercising every part of the input and
// of the decision object.
const policy = `package warden.authz

default allow := {"allow": false, "status": 401, "reason": "no rule matched"}

allow := {"allow": true, "headers": {"X-User-Tier": "gold", "X-Forwarded-Client-Cert": "forged"}} if {
	input.method == "GET"
	input.path == "/accounts/alice"
	input.raw_path == "/accounts/%61lice"
	input.query.expand == ["true"]
	input.headers["x-api-version"] == "2"
	not input.headers.traceparent
	not input.headers.authorization
	not input.headers.cookie
	not input.headers["x-request-id"]
	input.transaction == "req-1"
	input.sender == "10.0.0.9"
	input.peer.spiffe_id == "spiffe://warden.test/ns/default/sa/client"
	input.peer.trust_domain == "warden.test"
	input.destination.spiffe_id == "` + ownID + `"
}

allow := {"allow": false, "status": 404} if input.path == "/hidden"

# Two conflicting values: an evaluation error.
allow := true if input.path == "/conflict"
allow := false if input.path == "/conflict"
`

func newEngine(t testing.TB, rego string) *bundle.Engine {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := bundle.New(bundle.Options{Source: dir, PollInterval: time.Minute, CacheSize: 100, CacheTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

func request(method, uri string, headers ...string) *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(uri)
	ctx.Request.Header.SetHost("app")
	for i := 0; i+1 < len(headers); i += 2 {
		ctx.Request.Header.Add(headers[i], headers[i+1])
	}
	return &ctx
}

func peerRequest(path string) *proxy.Request {
	return &proxy.Request{
		ID: []byte("req-1"), Path: []byte(path), PeerID: "spiffe://warden.test/ns/default/sa/client",
		PeerTrustDomain: "warden.test", ClientIP: "10.0.0.9",
	}
}

func TestPolicySeesTheInputAndItsHeadersReachTheApp(t *testing.T) {
	var log bytes.Buffer
	a := New(newEngine(t, policy), func() string { return ownID }, zerolog.New(&log))
	ctx := request("GET", "/accounts/%61lice?expand=true",
		"X-Api-Version", "2", "Authorization", "Bearer secret-token", "Cookie", "session=secret-cookie",
		"X-Request-Id", "req-1", "X-Forwarded-Client-Cert", "By=me",
		"Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if v := a.Check(ctx, peerRequest("/accounts/alice")); v.Status != 0 {
		t.Fatalf("verdict %+v, want allowed; decision log: %s", v, log.String())
	}
	if got := string(ctx.Request.Header.Peek("X-User-Tier")); got != "gold" {
		t.Errorf("policy header X-User-Tier = %q, want gold", got)
	}
	if got := string(ctx.Request.Header.Peek("X-Forwarded-Client-Cert")); got != "By=me" {
		t.Errorf("policy overrode warden's XFCC: %q", got)
	}
	if s := log.String(); strings.Contains(s, "secret-token") || strings.Contains(s, "secret-cookie") {
		t.Errorf("decision log holds a credential: %s", s)
	}
}

func TestDenialsAndErrorsFailClosed(t *testing.T) {
	a := New(newEngine(t, policy), func() string { return ownID }, zerolog.New(io.Discard))
	tests := []struct {
		name, path string
		status     int
		code       string
	}{
		{"default rule denies with the policy's status", "/other", 401, "unauthorized"},
		{"a policy status picks the error code", "/hidden", 404, "not_found"},
		{"an evaluation error denies with 403", "/conflict", 403, "forbidden"},
		{"a request differing in one input field is not allowed", "/accounts/bob", 401, "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := a.Check(request("GET", tt.path+"?expand=true", "X-Api-Version", "2"), peerRequest(tt.path))
			if v.Status != tt.status || v.Code != tt.code {
				t.Errorf("verdict %+v, want %d %s", v, tt.status, tt.code)
			}
		})
	}
}

func TestNoActiveBundleDenies(t *testing.T) {
	e, err := bundle.New(bundle.Options{Source: t.TempDir(), PollInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	a := New(e, func() string { return ownID }, zerolog.New(io.Discard))
	if v := a.Check(request("GET", "/"), peerRequest("/")); v.Status != 403 {
		t.Errorf("verdict %+v before any bundle is active, want 403", v)
	}
}

func TestDecisionLogLine(t *testing.T) {
	var log bytes.Buffer
	a := New(newEngine(t, policy), func() string { return ownID }, zerolog.New(&log))
	a.Check(request("GET", "/hidden?q=1", "X-Api-Version", "2"), peerRequest("/hidden"))
	var line struct {
		Event     string `json:"event"`
		RequestID string `json:"request_id"`
		Allow     bool   `json:"allow"`
		Status    int    `json:"status"`
		Revision  string `json:"revision"`
		Input     struct {
			Path    string            `json:"path"`
			Query   string            `json:"query"`
			Headers map[string]string `json:"headers"`
			Peer    struct {
				SPIFFEID string `json:"spiffe_id"`
			} `json:"peer"`
		} `json:"input"`
	}
	if err := json.Unmarshal(log.Bytes(), &line); err != nil {
		t.Fatalf("decision log line %q: %v", log.String(), err)
	}
	if line.Event != "decision" || line.RequestID != "req-1" || line.Allow || line.Status != 404 ||
		!strings.HasPrefix(line.Revision, "sha256:") || line.Input.Path != "/hidden" || line.Input.Query != "q=1" ||
		line.Input.Headers["x-api-version"] != "2" || line.Input.Peer.SPIFFEID == "" {
		t.Errorf("decision log line %+v", line)
	}
}

// BenchmarkCheckCached is the PEP's cost for a request whose decision is
// cached: building the input, the cache lookup and the decision log line.
func BenchmarkCheckCached(b *testing.B) {
	a := New(newEngine(b, policy), func() string { return ownID }, zerolog.New(io.Discard))
	ctx := request("GET", "/accounts/%61lice?expand=true", "X-Api-Version", "2", "User-Agent", "bench", "Accept", "*/*")
	req := peerRequest("/accounts/alice")
	b.ReportAllocs()
	for b.Loop() {
		if v := a.Check(ctx, req); v.Status != 0 {
			b.Fatal(v)
		}
	}
}

func TestDecisionLogRedactsSecretsInTheQuery(t *testing.T) {
	var log bytes.Buffer
	a := New(newEngine(t, policy), func() string { return ownID }, zerolog.New(&log))
	a.Check(request("GET", "/hidden?a=1&access_token=eyJsecret&API_KEY=k3y&%61ccess_token=enc1&client%5Fsecret=enc2&b=2"), peerRequest("/hidden"))
	s := log.String()
	for _, secret := range []string{"eyJsecret", "k3y", "enc1", "enc2"} {
		if strings.Contains(s, secret) {
			t.Fatalf("a secret from the query (%s) reached the decision log: %s", secret, s)
		}
	}
	if !strings.Contains(s, `"query":"a=1&access_token=REDACTED&API_KEY=REDACTED&%61ccess_token=REDACTED&client%5Fsecret=REDACTED&b=2"`) {
		t.Errorf("query not logged with redactions: %s", s)
	}
}

// Headers whose names say they carry a credential reach the policy but not
// the decision log.
func TestDecisionLogMasksCredentialHeaders(t *testing.T) {
	var log bytes.Buffer
	a := New(newEngine(t, policy), func() string { return ownID }, zerolog.New(&log))
	a.Check(request("GET", "/hidden", "X-Api-Key", "k3y-secret", "X-Session-Id", "sess-secret", "X-Signature", "sig-secret",
		"X-Auth-Token", "tok-secret", "X-Api-Version", "2"), peerRequest("/hidden"))
	s := log.String()
	for _, secret := range []string{"k3y-secret", "sess-secret", "sig-secret", "tok-secret"} {
		if strings.Contains(s, secret) {
			t.Errorf("%s reached the decision log: %s", secret, s)
		}
	}
	if !strings.Contains(s, `"x-api-key":"REDACTED"`) || !strings.Contains(s, `"x-api-version":"2"`) {
		t.Errorf("headers not logged as expected: %s", s)
	}
}
