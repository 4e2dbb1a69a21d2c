package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/internal/testenv"
)

// The real binary's decision log file holds OPA's schema and nothing else
// at the top level; WARDEN_DECISION_LOG_SAMPLE=0 leaves out the allowed
// decisions from the cache, and only those.
func TestDecisionLogFileSampled(t *testing.T) {
	decisions := filepath.Join(t.TempDir(), "decisions.log")
	s := startSidecar(t, startApp(t, appOptions{}), "WARDEN_POLICY_BUNDLE="+policyDir(t, reportsPolicy),
		"WARDEN_DECISION_LOG="+decisions, "WARDEN_DECISION_LOG_SAMPLE=0")
	allowed := rawGET("/reports/q3?format=csv", "X-Team: finance")
	denied := rawGET("/reports/q3?format=csv", "X-Team: sales")
	for _, req := range []string{allowed, allowed, allowed, denied, denied} {
		s.send(t, req)
	}
	final := s.send(t, rawGET("/reports/last", "X-Team: sales"))
	var lines []map[string]any
	testenv.Poll(t, "the last request's line", 15*time.Second, func() bool {
		b, _ := os.ReadFile(decisions)
		return bytes.Contains(b, []byte(`"request_id":"`+final.header.Get("X-Request-Id")+`"`))
	})
	b, _ := os.ReadFile(decisions)
	for _, raw := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var l map[string]any
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		for name := range l {
			if !slices.Contains([]string{"decision_id", "timestamp", "path", "bundles", "input", "result", "erased", "metrics", "warden"}, name) {
				t.Errorf("top-level field %q is not OPA's: %s", name, raw)
			}
		}
		lines = append(lines, l)
	}
	// The first allowed one was evaluated; the two after it came from the
	// cache and were left out; every denial is there, cached or not.
	var got []string
	for _, l := range lines {
		w := decision(l)
		in, _ := l["input"].(map[string]any)
		path, _ := in["path"].(string)
		reason, _ := w["reason"].(string)
		line := path + " " + reason
		if w["cached"] == true {
			line += " cached"
		}
		got = append(got, line)
	}
	want := []string{"/reports/q3 ", "/reports/q3 reports are for finance", "/reports/q3 reports are for finance cached", "/reports/last reports are for finance"}
	if len(lines) != len(want) || !slices.Equal(got, want) {
		t.Errorf("logged decisions %q, want %q", got, want)
	}
}

// A peer WARDEN_ALLOWED_PEERS does not name is refused with the reason
// peer_not_allowed in its event.
func TestPeerRefusedReason(t *testing.T) {
	s := startSidecar(t, startApp(t, appOptions{}), "WARDEN_ALLOWED_PEERS=spiffe://warden.local/ns/default/sa/someone-else")
	if got := s.send(t, rawGET("/")); got.status != 403 || got.code() != "peer_not_allowed" {
		t.Fatalf("got %s, want 403 peer_not_allowed", got)
	}
	s.find(t, func(l map[string]any) bool {
		return l["event"] == "peer_denied" && l["reason"] == "peer_not_allowed" && l["peer_id"] == "spiffe://warden.local/ns/default/sa/client"
	})
}
