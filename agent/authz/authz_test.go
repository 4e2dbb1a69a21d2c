package authz

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/bundle"
	"github.com/warden-sidecar/warden/internal/secevent"
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

// request is what a protocol path hands the pipeline for method and uri,
// with a Host and the headers given as name, value pairs; peerRequest adds
// what it established about the peer and the normalized path.
func request(method, uri string, headers ...string) *pep.Request {
	path, query, _ := strings.Cut(uri, "?")
	r := &pep.Request{Method: []byte(method), RawPath: []byte(path), RawQuery: []byte(query),
		Headers: []pep.Field{{Name: []byte("Host"), Value: []byte("app")}}}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Headers = append(r.Headers, pep.Field{Name: []byte(headers[i]), Value: []byte(headers[i+1])})
	}
	return r
}

func peerRequest(path string) *pep.Request {
	return &pep.Request{
		ID: []byte("req-1"), Path: []byte(path), PeerID: "spiffe://warden.test/ns/default/sa/client",
		PeerTrustDomain: "warden.test", ClientIP: "10.0.0.9",
	}
}

// check asks a for r as the peer p sent it.
func check(a *Authorizer, r, p *pep.Request) pep.Verdict {
	r.ID, r.Path, r.PeerID, r.PeerTrustDomain, r.ClientIP = p.ID, p.Path, p.PeerID, p.PeerTrustDomain, p.ClientIP
	return a.Check(r)
}

// header returns the value of the verdict's header name, for the app or
// (client) for the refusal.
func header(hs []pep.Header, name string) string {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

func TestPolicySeesTheInputAndItsHeadersReachTheApp(t *testing.T) {
	var log bytes.Buffer
	a := New(newEngine(t, policy), func() string { return ownID }, zerolog.New(&log))
	ctx := request("GET", "/accounts/%61lice?expand=true",
		"X-Api-Version", "2", "Authorization", "Bearer secret-token", "Cookie", "session=secret-cookie",
		"X-Request-Id", "req-1", "X-Forwarded-Client-Cert", "By=me",
		"Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	v := check(a, ctx, peerRequest("/accounts/alice"))
	if v.Status != 0 {
		t.Fatalf("verdict %+v, want allowed; decision log: %s", v, log.String())
	}
	// The policy's headers for the app, its XFCC included: the proxy, which
	// owns that header, never lets a verdict replace it (its own test).
	if got := header(v.AppHeaders, "X-User-Tier"); got != "gold" {
		t.Errorf("policy header X-User-Tier = %q, want gold", got)
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
			v := check(a, request("GET", tt.path+"?expand=true", "X-Api-Version", "2"), peerRequest(tt.path))
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
	if v := check(a, request("GET", "/"), peerRequest("/")); v.Status != 403 {
		t.Errorf("verdict %+v before any bundle is active, want 403", v)
	}
}

// BenchmarkCheckCached is the PEP's cost for a request whose decision is
// cached: building the input, the cache lookup and the decision log line.
func BenchmarkCheckCached(b *testing.B) { benchmarkCheckCached(b) }

// BenchmarkCheckCachedMetrics (metrics_timing_test.go) is
// BenchmarkCheckCached with agent/metrics told each stage's outcome.

func benchmarkCheckCached(b *testing.B, opts ...Option) {
	a := New(newEngine(b, policy), func() string { return ownID }, zerolog.New(io.Discard), opts...)
	ctx := request("GET", "/accounts/%61lice?expand=true", "X-Api-Version", "2", "User-Agent", "bench", "Accept", "*/*")
	req := peerRequest("/accounts/alice")
	b.ReportAllocs()
	for b.Loop() {
		if v := check(a, ctx, req); v.Status != 0 {
			b.Fatal(v)
		}
	}
}

// BenchmarkCheckCachedDenied is a cached denial with its policy_denied
// event written (to io.Discard): what a flood of denied requests costs.
func BenchmarkCheckCachedDenied(b *testing.B) {
	a := New(newEngine(b, policy), func() string { return ownID }, zerolog.New(io.Discard),
		WithEventLog(secevent.New(io.Discard, func() string { return ownID })))
	ctx := request("GET", "/hidden?expand=true", "X-Api-Version", "2", "User-Agent", "bench", "Accept", "*/*")
	req := peerRequest("/hidden")
	b.ReportAllocs()
	for b.Loop() {
		if v := check(a, ctx, req); v.Status == 0 {
			b.Fatal("allowed")
		}
	}
}

func TestDecisionLogRedactsSecretsInTheQuery(t *testing.T) {
	var log bytes.Buffer
	a := New(newEngine(t, policy), func() string { return ownID }, zerolog.New(&log))
	check(a, request("GET", "/hidden?a=1&access_token=eyJsecret&API_KEY=k3y&%61ccess_token=enc1&client%5Fsecret=enc2&b=2"), peerRequest("/hidden"))
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
	check(a, request("GET", "/hidden", "X-Api-Key", "k3y-secret", "X-Session-Id", "sess-secret", "X-Signature", "sig-secret",
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

func engineWith(t testing.TB, files map[string]string, opts bundle.Options) *bundle.Engine {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opts.Source, opts.PollInterval = dir, time.Minute
	e, err := bundle.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

// A bundle's data.system.log.mask erases what it names from the decision
// log, on a computed decision and on a cached one alike.
func TestDecisionLogHonoursTheBundlesMask(t *testing.T) {
	e := engineWith(t, map[string]string{
		"authz.rego": "package warden.authz\nallow := {\"allow\": true, \"reason\": \"ok\"}\n",
		"mask.rego": `package system.log
mask contains "/input/headers/x-custom"
mask contains "/input/peer/spiffe_id"
mask contains "/input/query/page"
`,
	}, bundle.Options{CacheSize: 10, CacheTTL: time.Minute})
	for i := range 2 {
		var log bytes.Buffer
		a := New(e, func() string { return ownID }, zerolog.New(&log))
		if v := check(a, request("GET", "/x?page=s3cret-page", "X-Custom", "custom-secret", "X-Color", "blue"), peerRequest("/x")); v.Status != 0 {
			t.Fatalf("denied: %+v", v)
		}
		s := log.String()
		for _, secret := range []string{"custom-secret", "s3cret-page", "ns/default/sa/client"} {
			if strings.Contains(s, secret) {
				t.Errorf("round %d: the log holds %q, which the mask erases: %s", i, secret, s)
			}
		}
		if !strings.Contains(s, `"x-color":"blue"`) || !strings.Contains(s, `"trust_domain":"warden.test"`) || !strings.Contains(s, `"allow":true`) {
			t.Errorf("round %d: the log lost what the mask keeps: %s", i, s)
		}
		if cached := strings.Contains(s, `"cached":true`); cached != (i == 1) {
			t.Errorf("round %d: cached %v", i, cached)
		}
	}
}

// A policy that runs past WARDEN_POLICY_EVAL_TIMEOUT denies, and says so.
func TestSlowPolicyIsDeniedAtTheDeadline(t *testing.T) {
	e := engineWith(t, map[string]string{"authz.rego": `package warden.authz
default allow := false
allow if count([x | some x in numbers.range(1, 100000000); x % 7 == 0]) > 0
`}, bundle.Options{EvalTimeout: 50 * time.Millisecond})
	var events bytes.Buffer
	a := New(e, func() string { return ownID }, zerolog.New(io.Discard), WithEventLog(secevent.New(&events, nil)))
	start := time.Now()
	v := check(a, request("GET", "/x"), peerRequest("/x"))
	if v.Status != http.StatusForbidden {
		t.Fatalf("verdict %+v, want 403", v)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the evaluation ran %s", took)
	}
	if !strings.Contains(events.String(), `"event":"policy_denied"`) || !strings.Contains(events.String(), `"reason":"policy_timeout"`) {
		t.Errorf("no policy_denied event with reason policy_timeout: %s", events.String())
	}
}
