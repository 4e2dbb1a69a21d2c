package authz

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/pep"
)

// combinedLine is what WARDEN_ACCESS_LOG=combined adds under "warden".
type combinedLine struct {
	Input  map[string]any `json:"input"`
	Warden struct {
		Event     string   `json:"event"`
		RequestID string   `json:"request_id"`
		Allow     bool     `json:"allow"`
		Status    *int     `json:"status"`
		DurationS *float64 `json:"duration_s"`
		BytesIn   *int     `json:"bytes_in"`
		BytesOut  *int     `json:"bytes_out"`
		ClientIP  string   `json:"client_ip"`
	} `json:"warden"`
}

func TestCombinedLineWaitsForTheResponse(t *testing.T) {
	var log bytes.Buffer
	a := New(newEngine(t, policy), func() string { return ownID }, zerolog.New(&log), WithAccessFields())
	for _, tt := range []struct {
		name       string
		uri, path  string
		answered   int // what the protocol path says the client got
		wantStatus int // the line's warden.status
		wantAllow  bool
	}{
		{"an allowed request's line has the app's status", "/accounts/%61lice?expand=true", "/accounts/alice", 201, 201, true},
		// A denial's status is the refusal's, which the client got.
		{"a denied request's line keeps the refusal's status", "/hidden", "/hidden", 404, 404, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log.Reset()
			var line pep.Line
			r := request("GET", tt.uri, "X-Api-Version", "2")
			r.Line = &line
			check(a, r, peerRequest(tt.path))
			if log.Len() != 0 || !line.Held() {
				t.Fatalf("the line was written before the response (held %v): %s", line.Held(), log.String())
			}
			line.Finish(tt.answered, 1500*time.Microsecond, 12, 345, "10.0.0.9")
			if line.Held() {
				t.Fatal("still held after Finish")
			}
			var l combinedLine
			if err := json.Unmarshal(log.Bytes(), &l); err != nil {
				t.Fatalf("%v: %s", err, log.String())
			}
			w := l.Warden
			if w.Event != "decision" || w.RequestID != "req-1" || w.Allow != tt.wantAllow || w.Status == nil || *w.Status != tt.wantStatus ||
				w.DurationS == nil || *w.DurationS != 0.0015 || w.BytesIn == nil || *w.BytesIn != 12 || w.BytesOut == nil || *w.BytesOut != 345 ||
				w.ClientIP != "10.0.0.9" || l.Input["method"] != "GET" || l.Input["path"] != tt.path {
				t.Errorf("line %s", log.String())
			}
			if bytes.Count(log.Bytes(), []byte(`"status":`)) != 1+bytes.Count(log.Bytes(), []byte(`"result":{"allow":false,"status"`)) {
				t.Errorf("status twice under warden: %s", log.String())
			}
			// warden policy eval reads the combined line.
			if got, err := ReadLoggedInput(bytes.TrimSpace(log.Bytes())); err != nil || got.RequestID != "req-1" || got.Allow != tt.wantAllow {
				t.Errorf("ReadLoggedInput: %+v, %v", got, err)
			}
		})
	}
}

func TestCombinedLineIsWrittenAtOnceWithoutALine(t *testing.T) {
	// A caller that gives no Line (the gRPC outbound path, a replay) gets
	// its line at once, as without WithAccessFields.
	var log bytes.Buffer
	a := New(newEngine(t, policy), func() string { return ownID }, zerolog.New(&log), WithAccessFields())
	check(a, request("GET", "/accounts/%61lice?expand=true", "X-Api-Version", "2"), peerRequest("/accounts/alice"))
	if n := len(lines(t, &log)); n != 1 {
		t.Fatalf("%d lines, want 1", n)
	}
}

func TestSampledOutDecisionHoldsNoLine(t *testing.T) {
	// The protocol path writes an access line for a request whose line
	// was not held: a sampled-out cached decision is still accounted for.
	var log bytes.Buffer
	a := New(newEngine(t, policy), func() string { return ownID }, zerolog.New(&log), WithAccessFields(),
		WithDecisionLogSample(0), WithSampleSource(rand.NewPCG(1, 2)))
	held := 0
	for range 5 {
		var line pep.Line
		r := request("GET", "/accounts/%61lice?expand=true", "X-Api-Version", "2")
		r.Line = &line
		check(a, r, peerRequest("/accounts/alice"))
		if line.Held() {
			held++
			line.Finish(200, time.Millisecond, 0, 5, "10.0.0.9")
		}
	}
	// The first is evaluated (always logged); the other four are cached.
	if n := len(lines(t, &log)); held != 1 || n != 1 {
		t.Errorf("%d held, %d lines; want 1 and 1 (the uncached decision)", held, n)
	}
}

// BenchmarkCheckCachedCombined is BenchmarkCheckCached with the line held
// and finished with the response's fields (WARDEN_ACCESS_LOG=combined):
// the one log line of a request.
func BenchmarkCheckCachedCombined(b *testing.B) {
	a := New(newEngine(b, policy), func() string { return ownID }, zerolog.New(io.Discard), WithAccessFields())
	ctx := request("GET", "/accounts/%61lice?expand=true", "X-Api-Version", "2", "User-Agent", "bench", "Accept", "*/*")
	req := peerRequest("/accounts/alice")
	var line pep.Line
	ctx.Line = &line
	b.ReportAllocs()
	for b.Loop() {
		if v := check(a, ctx, req); v.Status != 0 {
			b.Fatal(v)
		}
		line.Finish(200, time.Millisecond, 0, 5, "10.0.0.9")
	}
}
