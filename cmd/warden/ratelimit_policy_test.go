package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rateLimitedPolicy approves 1 request a second, with bursts of 3, per peer,
// route and API key: the key holds a credential, which no log may show.
const rateLimitedPolicy = `package warden.authz

allow := {"allow": true, "rate_limit": {"key": concat(" ", [input.peer.spiffe_id, input.path, object.get(input.headers, "x-api-key", "")]), "per_second": 1, "burst": 3}} if input.path != "/malformed"

allow := {"allow": true, "rate_limit": {"key": input.peer.spiffe_id, "per_second": 0}} if input.path == "/malformed"
`

// asPeer is s as seen by a client holding an SVID for id.
func asPeer(t *testing.T, s *sidecar, id string) *sidecar {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "peer")
	if out, err := devIssueCmd(t, s.devDir, id, dir); err != nil {
		t.Fatalf("dev issue %s: %v\n%s", id, err, out)
	}
	other := *s
	other.tls = clientTLS(t, dir)
	return &other
}

// burstUntilLimited sends path on a new connection each time until warden
// answers 429 (at most 12 requests) and returns how many got 200, the
// refusal, and how long it took.
func burstUntilLimited(t *testing.T, s *sidecar, path string, headers ...string) (allowed int, refusal answer, took time.Duration) {
	t.Helper()
	start := time.Now()
	for range 12 {
		got := s.send(t, rawGET(path, headers...))
		switch got.status {
		case 200:
			allowed++
		case 429:
			return allowed, got, time.Since(start)
		default:
			t.Fatalf("%s: %s, want 200 or 429", path, got)
		}
	}
	t.Fatalf("%s: 12 requests, none refused", path)
	return
}

// checkBurst asserts a 429 rate_limited with a Retry-After, after at least
// burst and at most what the rate could have refilled meanwhile.
func checkBurst(t *testing.T, what string, allowed int, refusal answer, took time.Duration, burst, rate int) {
	t.Helper()
	if max := burst + rate*(int(took/time.Second)+1); allowed < burst || allowed > max {
		t.Errorf("%s: %d allowed in %v before the refusal, want %d to %d", what, allowed, took, burst, max)
	}
	wantRefused(t, what, refusal, 429, "rate_limited")
	if ra := refusal.header.Get("Retry-After"); ra != "1" {
		t.Errorf("%s: Retry-After %q, want 1", what, ra)
	}
}

// A policy's rate_limit, keyed on the peer and the route, holds across the
// peer's connections: beyond it 429 rate_limited with Retry-After, and the
// app sees nothing of the refused requests; another peer, and another
// route, are unaffected. A malformed rate_limit fails closed.
func TestPolicyRateLimitAcrossConnections(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "authz.rego"), rateLimitedPolicy)
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_POLICY_BUNDLE="+dir)
	apiKey := secret(t, "api key", "ak-"+strings.Repeat("7", 16))

	allowed, refusal, took := burstUntilLimited(t, s, "/orders", "X-Api-Key: "+apiKey)
	checkBurst(t, "the peer on /orders", allowed, refusal, took, 3, 1)
	if got := app.receivedTarget("/orders"); got != allowed {
		t.Errorf("the app received /orders %d times, want %d (only the allowed ones)", got, allowed)
	}
	if got := s.send(t, rawGET("/invoices", "X-Api-Key: "+apiKey)); got.status != 200 {
		t.Errorf("the same peer on another route: %s, want 200", got)
	}
	other := asPeer(t, s, "spiffe://warden.local/ns/default/sa/other")
	if got := other.send(t, rawGET("/orders", "X-Api-Key: "+apiKey)); got.status != 200 {
		t.Errorf("another peer on /orders: %s, want 200", got)
	}

	got := s.send(t, rawGET("/malformed"))
	wantRefused(t, "a malformed rate_limit", got, 403, "forbidden")
	if app.receivedTarget("/malformed") != 0 {
		t.Error("the app received a request whose decision was malformed")
	}

	ev := s.find(t, func(l map[string]any) bool { return l["event"] == "rate_limited" })
	for field, want := range map[string]any{"event_type": "security", "reason": "rate_limited", "limit": "policy",
		"peer_id": "spiffe://warden.local/ns/default/sa/client", "source_ip": "127.0.0.1", "path": "/orders", "method": "GET",
		"per_second": float64(1), "burst": float64(3)} {
		if ev[field] != want {
			t.Errorf("rate_limited event: %s = %v, want %v (%v)", field, ev[field], want, ev)
		}
	}
	s.find(t, func(l map[string]any) bool {
		w, _ := l["warden"].(map[string]any)
		return l["path"] == "warden/authz/allow" && w["reason"] == "policy_error"
	})

	rl := rateLimitStatus(t, s.admin)
	if rl.PolicyLimits.Keys != 3 || rl.PolicyLimits.Limited != 1 || rl.PolicyLimits.MaxKeys != 100000 || rl.PolicyLimits.Overflow != 0 || rl.Mode == "" {
		t.Errorf("/ratelimit: %+v, want 3 keys, 1 refusal, 100000 at most, and the limiter's own fields", rl)
	}
}

type rateLimitView struct {
	Mode         string `json:"mode"`
	PolicyLimits struct {
		PeerRate  int    `json:"peer_rate"`
		PeerBurst int    `json:"peer_burst"`
		Keys      int    `json:"keys"`
		MaxKeys   int    `json:"max_keys"`
		Overflow  uint64 `json:"overflow"`
		Limited   uint64 `json:"limited"`
	} `json:"policy_limits"`
}

func rateLimitStatus(t *testing.T, admin string) rateLimitView {
	t.Helper()
	code, body := get(t, admin+"/ratelimit")
	var v rateLimitView
	if code != 200 || json.Unmarshal([]byte(body), &v) != nil {
		t.Fatalf("/ratelimit: %d %s", code, body)
	}
	return v
}

// WARDEN_PEER_RATE_LIMIT without a policy limit: one budget per peer
// SPIFFE ID across its connections and routes; another peer has its own;
// the key table is bounded by WARDEN_RATE_LIMIT_KEYS.
func TestPeerRateLimitAcrossConnections(t *testing.T) {
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_PEER_RATE_LIMIT=1", "WARDEN_PEER_BURST=2", "WARDEN_RATE_LIMIT_KEYS=2")
	start := time.Now()
	allowed := 0
	var refusal answer
	for i := range 12 {
		got := s.send(t, rawGET(fmt.Sprintf("/route-%d", i)))
		if got.status == 429 {
			refusal = got
			break
		}
		if got.status != 200 {
			t.Fatalf("request %d: %s", i, got)
		}
		allowed++
	}
	checkBurst(t, "the peer across routes", allowed, refusal, time.Since(start), 2, 1)
	if got := app.received(); got != allowed {
		t.Errorf("the app received %d requests, want %d", got, allowed)
	}
	other := asPeer(t, s, "spiffe://warden.local/ns/default/sa/other")
	if got := other.send(t, rawGET("/route-0")); got.status != 200 {
		t.Errorf("another peer: %s, want 200", got)
	}
	third := asPeer(t, s, "spiffe://warden.local/ns/default/sa/third")
	if got := third.send(t, rawGET("/route-0")); got.status != 200 {
		t.Errorf("a third peer: %s, want 200", got)
	}
	rl := rateLimitStatus(t, s.admin)
	if rl.PolicyLimits.PeerRate != 1 || rl.PolicyLimits.PeerBurst != 2 || rl.PolicyLimits.Keys != 2 || rl.PolicyLimits.MaxKeys != 2 || rl.PolicyLimits.Overflow != 1 {
		t.Errorf("/ratelimit: %+v, want peer rate 1 burst 2, 2 keys of 2, 1 overflow", rl.PolicyLimits)
	}
	ev := s.find(t, func(l map[string]any) bool { return l["event"] == "rate_limited" })
	if ev["limit"] != "peer" || ev["per_second"] != float64(1) || ev["burst"] != float64(2) {
		t.Errorf("rate_limited event: %v", ev)
	}
}
