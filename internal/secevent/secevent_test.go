package secevent

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestEventCarriesTheSchema(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, func() string { return "spiffe://example.org/warden" })
	l.Event(HoneypotHit, High).Str(FieldSourceIP, "192.0.2.7").Str(FieldPath, "/.env").Send()
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not one JSON line: %v: %q", err, buf.String())
	}
	for k, want := range map[string]string{"event_type": "security", "event": "honeypot_hit", "severity": "high",
		"source_ip": "192.0.2.7", "path": "/.env", "spiffe_id": "spiffe://example.org/warden"} {
		if got[k] != want {
			t.Errorf("%s = %v, want %q", k, got[k], want)
		}
	}
	ts, _ := got["time"].(string)
	if _, err := time.Parse(timeLayout, ts); err != nil || len(ts) != len("2006-01-02T15:04:05.000Z") {
		t.Errorf("time %q is not RFC 3339 UTC with milliseconds", ts)
	}
}

func TestNilLogWritesNothing(t *testing.T) {
	var l *Log
	l.Event(PolicyDenied, Medium).Str(FieldReason, "x").Send() // must not panic
}

func TestSampledWritesOncePerKeyPerSecond(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, nil)
	// Inside one second (retried if the loop straddles a second boundary).
	for range 3 {
		buf.Reset()
		start := time.Now().Unix()
		for range 5 {
			l.Sampled(RateLimited, Low, "192.0.2.1").Send()
			l.Sampled(RateLimited, Low, "192.0.2.2").Send()
		}
		if time.Now().Unix() != start {
			continue
		}
		if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 2 {
			t.Fatalf("%d events for 2 sources in one second, want 2:\n%s", n, buf.String())
		}
		return
	}
	t.Fatal("could not stay within one second")
}
