package authz

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/internal/gcra"
	"github.com/warden-sidecar/warden/internal/ratekeys"
	"github.com/warden-sidecar/warden/internal/secevent"
)

// rateLimitPolicy approves 2 requests a second (burst 2) per peer and route.
const rateLimitPolicy = `package warden.authz

allow := {"allow": true, "rate_limit": {"key": concat(" ", [input.peer.spiffe_id, input.path]), "per_second": 2, "burst": 2}} if input.path != "/malformed"
allow := {"allow": true, "rate_limit": {"key": "k", "per_second": "2"}} if input.path == "/malformed"
`

func peerAt(path, peer string) *pep.Request {
	p := peerRequest(path)
	p.PeerID = peer
	return p
}

const otherPeer = "spiffe://warden.test/ns/default/sa/other"

// A decision's rate_limit holds across requests of the same key, cached
// decisions included; other keys (another route, another peer) have their
// own bucket; the refusal is 429 rate_limited with Retry-After, logged as a
// refusal and as one sampled security event that never names the key.
func TestPolicyRateLimit(t *testing.T) {
	var dlog, events bytes.Buffer
	keys := ratekeys.New(100)
	a := New(newEngine(t, rateLimitPolicy), func() string { return ownID }, zerolog.New(&dlog),
		WithRateLimits(keys, gcra.Params{}), WithEventLog(secevent.New(&events, func() string { return ownID })))
	client := "spiffe://warden.test/ns/default/sa/client"
	for i := range 2 {
		if v := check(a, request("GET", "/a"), peerAt("/a", client)); v.Status != 0 || v.Cached != (i == 1) {
			t.Fatalf("request %d within the budget: %+v", i+1, v)
		}
	}
	v := check(a, request("GET", "/a"), peerAt("/a", client))
	if v.Status != 429 || v.Code != "rate_limited" || v.Stage != pep.StageRateLimit || !v.Cached || header(v.ClientHeaders, "Retry-After") != "1" || v.AppHeaders != nil {
		t.Fatalf("third request in a second: %+v, want 429 rate_limited with Retry-After 1, from the cached decision", v)
	}
	check(a, request("GET", "/a"), peerAt("/a", client)) // a second refusal in the same second: no second event
	if v := check(a, request("GET", "/b"), peerAt("/b", client)); v.Status != 0 {
		t.Fatalf("another route of the same peer: %+v", v)
	}
	if v := check(a, request("GET", "/a"), peerAt("/a", otherPeer)); v.Status != 0 {
		t.Fatalf("another peer on the same route: %+v", v)
	}
	if st := keys.Stats(); st.Keys != 3 || st.Refused != 2 {
		t.Fatalf("keys %+v, want 3 keys and 2 refusals", st)
	}

	var limited []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(dlog.String()), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatal(err)
		}
		if w := line["warden"].(map[string]any); w["reason"] == "rate_limited" {
			limited = append(limited, w)
		}
	}
	if len(limited) != 2 || limited[0]["allow"] != false || limited[0]["status"] != float64(429) {
		t.Fatalf("decision log's rate-limited lines: %v, want 2 with allow false, status 429", limited)
	}
	ev := strings.TrimSpace(events.String())
	if strings.Count(ev, "\n") != 0 || !strings.Contains(ev, `"event":"rate_limited"`) || !strings.Contains(ev, `"event_type":"security"`) ||
		!strings.Contains(ev, `"source_ip":"10.0.0.9"`) || !strings.Contains(ev, `"peer_id":"`+client+`"`) ||
		!strings.Contains(ev, `"reason":"rate_limited"`) || !strings.Contains(ev, `"limit":"policy"`) || !strings.Contains(ev, `"per_second":2`) {
		t.Fatalf("security events: want one rate_limited with its fields, got:\n%s", ev)
	}
	if strings.Contains(ev, client+" /a") {
		t.Fatalf("the event names the policy's key: %s", ev)
	}
}

func TestMalformedRateLimitFailsClosed(t *testing.T) {
	var dlog bytes.Buffer
	a := New(newEngine(t, rateLimitPolicy), func() string { return ownID }, zerolog.New(&dlog), WithRateLimits(ratekeys.New(10), gcra.Params{}))
	if v := check(a, request("GET", "/malformed"), peerRequest("/malformed")); v.Status != 403 || v.Stage != pep.StagePolicy {
		t.Fatalf("a malformed rate_limit: %+v, want 403 from the policy stage", v)
	}
	if !strings.Contains(dlog.String(), `"reason":"policy_error"`) || !strings.Contains(dlog.String(), "rate_limit.per_second is a string") {
		t.Fatalf("decision log: %s", dlog.String())
	}
}

// WARDEN_PEER_RATE_LIMIT: a budget per peer across its routes, when the
// decision gives no rate_limit of its own.
func TestPeerRateLimit(t *testing.T) {
	a := New(newEngine(t, "package warden.authz\nallow := true\n"), func() string { return ownID }, zerolog.New(io.Discard),
		WithRateLimits(ratekeys.New(10), gcra.New(1, 2)))
	client := "spiffe://warden.test/ns/default/sa/client"
	for i, path := range []string{"/a", "/b"} {
		if v := check(a, request("GET", path), peerAt(path, client)); v.Status != 0 {
			t.Fatalf("request %d of a burst of 2: %+v", i+1, v)
		}
	}
	if v := check(a, request("GET", "/c"), peerAt("/c", client)); v.Status != 429 || v.Code != "rate_limited" || header(v.ClientHeaders, "Retry-After") != "1" {
		t.Fatalf("third request of the peer, on a third route: %+v", v)
	}
	if v := check(a, request("GET", "/c"), peerAt("/c", otherPeer)); v.Status != 0 {
		t.Fatalf("another peer: %+v", v)
	}
}

func TestRetryAfterRoundsUp(t *testing.T) {
	for _, tt := range []struct {
		wait string
		want string
	}{{"1ns", "1"}, {"999ms", "1"}, {"1s", "1"}, {"1001ms", "2"}, {"299.5s", "300"}, {"1h", "3600"}} {
		d, _ := time.ParseDuration(tt.wait)
		if got := retryAfter(d)[0].Value; got != tt.want {
			t.Errorf("Retry-After for %s: %s, want %s", tt.wait, got, tt.want)
		}
	}
}

// BenchmarkCheckCachedRateLimited is BenchmarkCheckCached with the
// decision's rate_limit charged to its bucket on every request.
func BenchmarkCheckCachedRateLimited(b *testing.B) {
	rego := strings.Replace(policy, `allow := {"allow": true, "headers"`, `allow := {"allow": true, "rate_limit": {"key": input.peer.spiffe_id, "per_second": 1000000000}, "headers"`, 1)
	keys := ratekeys.New(100000)
	a := New(newEngine(b, rego), func() string { return ownID }, zerolog.New(io.Discard), WithRateLimits(keys, gcra.Params{}))
	ctx := request("GET", "/accounts/%61lice?expand=true", "X-Api-Version", "2", "User-Agent", "bench", "Accept", "*/*")
	req := peerRequest("/accounts/alice")
	b.ReportAllocs()
	for b.Loop() {
		if v := check(a, ctx, req); v.Status != 0 {
			b.Fatal(v)
		}
	}
	if keys.Stats().Keys != 1 {
		b.Fatal("the decision's rate_limit was not charged")
	}
}
