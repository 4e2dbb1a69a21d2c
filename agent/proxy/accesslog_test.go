package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/pep"
)

// holdLine is a Checker that allows every request and writes a decision
// line as agent/authz does with WithAccessFields: held in the request's
// Line when it has one.
type holdLine struct{ log zerolog.Logger }

func (h holdLine) Check(r *pep.Request) pep.Verdict {
	e := h.log.Log().Str("path", string(r.Path))
	w := zerolog.Dict().Str("event", "decision").Str("request_id", string(r.ID))
	if r.Line != nil {
		r.Line.Hold(e, w, false)
	} else {
		e.Dict("warden", w).Send()
	}
	return pep.Verdict{}
}

// logLine is a line of the proxy's log: an access line or a decision line.
type logLine struct {
	Event  string `json:"event"`
	Path   string `json:"path"`
	Status int    `json:"status"`
	Warden *struct {
		Event     string   `json:"event"`
		RequestID string   `json:"request_id"`
		Status    int      `json:"status"`
		DurationS *float64 `json:"duration_s"`
		BytesOut  *int     `json:"bytes_out"`
		ClientIP  string   `json:"client_ip"`
	} `json:"warden"`
}

func TestAccessLogModes(t *testing.T) {
	for _, tt := range []struct {
		name string
		mode AccessLog
		// Lines for one allowed and one refused request, per protocol.
		decisions, finished, access int
	}{
		{"combined: one line per request, the decision line finished with the response", AccessLogCombined, 1, 1, 1},
		{"separate: the decision line and an access line for each", AccessLogSeparate, 1, 0, 2},
		{"off: the decision line only", AccessLogOff, 1, 0, 0},
	} {
		for _, h2 := range []bool{false, true} {
			name := tt.name + map[bool]string{false: " (HTTP/1.1)", true: " (HTTP/2)"}[h2]
			t.Run(name, func(t *testing.T) {
				var h *harness
				h = startProxy(t, func(o *Options) {
					o.AccessLog = tt.mode
					o.HTTP2 = h2
					o.Guard = holdLine{zerolog.New(&lateWriter{h: &h})}
				})
				tr := &http.Transport{TLSClientConfig: h.clientTLS(t, clientID), ForceAttemptHTTP2: h2}
				c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
				t.Cleanup(tr.CloseIdleConnections)
				resp, err := c.Get(h.url("/hello"))
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || (resp.ProtoMajor == 2) != h2 {
					t.Fatalf("%s %d", resp.Proto, resp.StatusCode)
				}
				id := resp.Header.Get("X-Request-Id")
				// A refused peer's request never reaches the pipeline.
				itr := &http.Transport{TLSClientConfig: h.clientTLS(t, intruderID), ForceAttemptHTTP2: h2}
				t.Cleanup(itr.CloseIdleConnections)
				if resp, err := (&http.Client{Transport: itr, Timeout: 5 * time.Second}).Get(h.url("/hello")); err != nil || resp.StatusCode != 403 {
					t.Fatalf("refused peer: %v %v", resp, err)
				}

				want := tt.decisions + tt.access
				var lines []logLine
				deadline := time.Now().Add(5 * time.Second)
				for {
					lines = parseLines(t, h.logs.String())
					if len(lines) >= want || time.Now().After(deadline) {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				var decisions, finished, access int
				for _, l := range lines {
					switch {
					case l.Warden != nil && l.Warden.Event == "decision":
						decisions++
						if l.Warden.RequestID != id {
							t.Errorf("decision line of request %q, want %q", l.Warden.RequestID, id)
						}
						if l.Warden.DurationS != nil {
							finished++
							if l.Warden.Status != 200 || *l.Warden.DurationS <= 0 || l.Warden.BytesOut == nil || *l.Warden.BytesOut != len(body) ||
								l.Warden.ClientIP != "127.0.0.1" {
								t.Errorf("finished line %+v, want status 200, bytes_out %d", *l.Warden, len(body))
							}
						}
					case l.Event == "access":
						access++
					}
				}
				if decisions != tt.decisions || finished != tt.finished || access != tt.access || len(lines) != want {
					t.Errorf("%d decision lines (%d finished), %d access lines, %d in all; want %d (%d), %d, %d:\n%s",
						decisions, finished, access, len(lines), tt.decisions, tt.finished, tt.access, want, h.logs)
				}
			})
		}
	}
}

// lateWriter writes to the harness's log, which exists only once
// startProxy returned.
type lateWriter struct{ h **harness }

func (w *lateWriter) Write(p []byte) (int, error) { return (*w.h).logs.Write(p) }

func parseLines(t *testing.T, s string) []logLine {
	var out []logLine
	for _, raw := range strings.Split(strings.TrimSpace(s), "\n") {
		if raw == "" || !bytes.HasPrefix([]byte(raw), []byte("{")) {
			continue
		}
		var l logLine
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Fatalf("%v: %s", err, raw)
		}
		if l.Event != "access" && l.Warden == nil {
			continue // another event (connection, debug)
		}
		out = append(out, l)
	}
	return out
}
