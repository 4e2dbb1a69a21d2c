package authz

import (
	"bytes"
	"encoding/json"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/internal/secevent"
)

// blockRecorder is a Blocker that remembers what it was asked.
type blockRecorder struct{ blocks []recordedBlock }

type recordedBlock struct {
	src   netip.Addr
	d     time.Duration
	cause string
	path  string
}

func (r *blockRecorder) Block(src netip.Addr, d time.Duration, cause string, req *pep.Request) {
	r.blocks = append(r.blocks, recordedBlock{src, d, cause, string(req.Path)})
}

func TestDecoysMatchExactPathsAndPrefixes(t *testing.T) {
	d := newDecoys([]string{"/.env", "/wp-login.php", "/actuator/*", "/.git/*"})
	for path, want := range map[string]bool{
		"/.env": true, "/.env/x": false, "/.envy": false, "/wp-login.php": true,
		"/actuator": true, "/actuator/": true, "/actuator/health": true, "/actuators": false,
		"/.git/config": true, "/api/.env": false, "/": false, "": false,
	} {
		if got := d.match([]byte(path)); got != want {
			t.Errorf("match(%q) = %v, want %v", path, got, want)
		}
	}
	if root := newDecoys([]string{"/*"}); !root.match([]byte("/anything")) || !root.match([]byte("/")) {
		t.Error("/* does not match every path")
	}
}

// A decoy is refused first, as an unknown route, before a token is even
// looked at; its source is handed to the Blocker, and honeypot_hit is
// written with the schema's fields and no secret.
func TestDecoyHitIsAnUnknownRouteAndBlocks(t *testing.T) {
	var events bytes.Buffer
	rec := &blockRecorder{}
	fx := newTokenFixture(t)
	a := New(newEngine(t, policy), func() string { return ownID }, zerolog.New(io.Discard),
		WithTokens(fx.verifier, "Authorization", true),
		WithHoneypot([]string{"/.env", "/actuator/*"}, 10*time.Minute),
		WithBlocker(rec, time.Hour),
		WithEventLog(secevent.New(&events, func() string { return ownID })))

	r := request("GET", "/actuator/env?token=secret-query", "Authorization", "Bearer secret-token", "Cookie", "sid=secret-cookie")
	v := check(a, r, peerRequest("/actuator/env"))
	if v.Status != 404 || v.Code != "not_found" || v.Stage != pep.StageHoneypot || len(v.ClientHeaders) != 0 {
		t.Fatalf("decoy verdict %+v, want 404 not_found at the honeypot stage", v)
	}
	if len(rec.blocks) != 1 || rec.blocks[0] != (recordedBlock{netip.MustParseAddr("10.0.0.9"), 10 * time.Minute, CauseHoneypot, "/actuator/env"}) {
		t.Fatalf("blocks %+v", rec.blocks)
	}
	var ev map[string]any
	if err := json.Unmarshal(events.Bytes(), &ev); err != nil {
		t.Fatalf("event %q: %v", events.String(), err)
	}
	for k, want := range map[string]any{
		"event_type": "security", "event": "honeypot_hit", "severity": "high", "source_ip": "10.0.0.9",
		"peer_id": "spiffe://warden.test/ns/default/sa/client", "request_id": "req-1", "method": "GET",
		"path": "/actuator/env", "reason": "honeypot", "spiffe_id": ownID,
	} {
		if ev[k] != want {
			t.Errorf("event %s = %v, want %v", k, ev[k], want)
		}
	}
	if s := events.String(); strings.Contains(s, "secret") || strings.Count(s, "\n") != 1 {
		t.Errorf("events: %s", s)
	}

	// Not a decoy: the token stage answers, nothing is blocked.
	if v := check(a, request("GET", "/accounts/alice"), peerRequest("/accounts/alice")); v.Stage != pep.StageToken {
		t.Errorf("ordinary request without a token: %+v, want the token stage's refusal", v)
	}
	if len(rec.blocks) != 1 {
		t.Errorf("an ordinary request blocked: %+v", rec.blocks)
	}
}

func TestDecoyWithoutBlocking(t *testing.T) {
	rec := &blockRecorder{}
	a := New(newEngine(t, policy), func() string { return ownID }, zerolog.New(io.Discard),
		WithHoneypot([]string{"/.env"}, 0), WithBlocker(rec, time.Hour))
	if v := check(a, request("GET", "/.env"), peerRequest("/.env")); v.Status != 404 || v.Stage != pep.StageHoneypot {
		t.Fatalf("verdict %+v", v)
	}
	if len(rec.blocks) != 0 {
		t.Fatalf("WARDEN_HONEYPOT_BLOCK_FOR=0 blocked: %+v", rec.blocks)
	}
}

const blockPolicy = `package warden.authz

default allow := false

allow := {"allow": false, "status": 403, "reason": "scraper", "block_for_seconds": 120} if input.path == "/scrape"
allow := {"allow": false, "block_for_seconds": 999999} if input.path == "/forever"
allow := {"allow": true, "block_for_seconds": 0} if input.path == "/fine"
`

// A decision's block_for_seconds blocks the source on every request that
// gets it, the cached ones too, capped by WARDEN_MAX_BLOCK_FOR.
func TestPolicyBlocksCachedOrNot(t *testing.T) {
	rec := &blockRecorder{}
	var log bytes.Buffer
	a := New(newEngine(t, blockPolicy), func() string { return ownID }, zerolog.New(&log),
		WithBlocker(rec, time.Hour))
	for i := range 2 {
		v := check(a, request("GET", "/scrape"), peerRequest("/scrape"))
		if v.Status != 403 || v.Cached != (i == 1) {
			t.Fatalf("request %d: verdict %+v", i, v)
		}
	}
	check(a, request("GET", "/forever"), peerRequest("/forever"))
	if v := check(a, request("GET", "/fine"), peerRequest("/fine")); v.Status != 0 {
		t.Fatalf("/fine: %+v", v)
	}
	if first, _, _ := strings.Cut(log.String(), "\n"); !strings.Contains(first, `"result":{"allow":false,"status":403,"reason":["scraper"],"block_for_seconds":120}`) {
		t.Errorf("the decision log's result does not say the policy blocked: %s", first)
	}
	src := netip.MustParseAddr("10.0.0.9")
	want := []recordedBlock{
		{src, 2 * time.Minute, CausePolicy, "/scrape"},
		{src, 2 * time.Minute, CausePolicy, "/scrape"},
		{src, time.Hour, CausePolicy, "/forever"},
	}
	if len(rec.blocks) != len(want) {
		t.Fatalf("blocks %+v, want %+v", rec.blocks, want)
	}
	for i := range want {
		if rec.blocks[i] != want[i] {
			t.Errorf("block %d: %+v, want %+v", i, rec.blocks[i], want[i])
		}
	}

	off := New(newEngine(t, blockPolicy), func() string { return ownID }, zerolog.New(io.Discard), WithBlocker(rec, 0))
	check(off, request("GET", "/scrape"), peerRequest("/scrape"))
	if len(rec.blocks) != len(want) {
		t.Errorf("WARDEN_MAX_BLOCK_FOR=0 blocked: %+v", rec.blocks[len(want):])
	}
}

// With decoys configured, an ordinary request costs one map lookup more
// and still allocates nothing.
func BenchmarkCheckCachedWithDecoys(b *testing.B) {
	benchmarkCheckCached(b, WithHoneypot([]string{"/.env", "/wp-login.php", "/actuator/*", "/.git/*"}, time.Minute))
}

// BenchmarkDecoyMatch is what decoys add to an ordinary request: the
// match of its path, which misses.
func BenchmarkDecoyMatch(b *testing.B) {
	d := newDecoys([]string{"/.env", "/wp-login.php", "/actuator/*", "/.git/*"})
	path := []byte("/accounts/alice/transactions")
	b.ReportAllocs()
	for b.Loop() {
		if d.match(path) {
			b.Fatal("matched")
		}
	}
}
