package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/warden-sidecar/warden/agent/token/tokentest"
)

// requestLine returns the fields of a line that accounts for one request
// (path, request_id, status): an access line's, or a decision line's
// finished with the response (WARDEN_ACCESS_LOG=combined, the default);
// nil for any other line.
func requestLine(l map[string]any) map[string]any {
	if l["event"] == "access" {
		return l
	}
	w := decision(l)
	if w == nil || w["duration_s"] == nil {
		return nil
	}
	in, _ := l["input"].(map[string]any)
	return map[string]any{"path": in["path"], "request_id": w["request_id"], "status": w["status"]}
}

// Every request the real binary answers is accounted for by exactly one log
// line in the default mode (the decision line, finished with the response,
// for a request the policy decided; an access line for one refused before
// the policy, or sampled out of the decision log), and by the access line
// beside the decision line with WARDEN_ACCESS_LOG=separate: over HTTP/1.1
// and HTTP/2, for allowed, denied, hardening-refused and token-refused
// requests.
func TestOneLogLinePerRequest(t *testing.T) {
	k := tokentest.NewKey(t, "EdDSA", "log-key")
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, tokentest.JWKS(t, k), 0o600); err != nil {
		t.Fatal(err)
	}
	type kind struct {
		name, method, path string
		fields             []string
		status             int
		decided            bool // the policy decided it: it has a decision line
	}
	kinds := []kind{
		{"allowed", "GET", "/public", nil, 200, true},
		{"denied by the policy", "GET", "/admin/secret", nil, 403, true},
		{"refused by hardening", "GET", "/public", []string{"X-HTTP-Method-Override", "DELETE"}, 400, false},
		{"refused for its token", "GET", "/public", []string{"Authorization", "Bearer not.a.token"}, 401, false},
	}
	protocols := []struct {
		name string
		do   func(t *testing.T, addr string, cfg *tls.Config, method, path string, body []byte, fields ...string) h2Response
	}{{"HTTP/1.1", h1Do}, {"HTTP/2", h2Do}}
	const repeats = 3 // the repeated allowed requests' decisions come from the cache

	for _, mode := range []struct {
		name string
		env  []string
		// Lines per request: decision lines, and whether they carry the
		// response's fields; access lines for decided and refused ones.
		separate bool
		sampled  bool // WARDEN_DECISION_LOG_SAMPLE=0
	}{
		{name: "combined (default)"},
		{name: "separate", env: []string{"WARDEN_ACCESS_LOG=separate"}, separate: true},
		{name: "combined, cached decisions sampled out", env: []string{"WARDEN_DECISION_LOG_SAMPLE=0"}, sampled: true},
	} {
		t.Run(mode.name, func(t *testing.T) {
			s := startSidecar(t, startApp(t, appOptions{}), append([]string{"WARDEN_POLICY_BUNDLE=" + policyDir(t, desyncPolicy),
				"WARDEN_JWT_JWKS=" + jwks, "WARDEN_JWT_ISSUERS=" + jwtIssuer, "WARDEN_JWT_AUDIENCES=" + jwtAudience,
				"WARDEN_JWT_REQUIRED=false"}, mode.env...)...)
			type sent struct {
				kind
				proto string
				id    string
				n     int // the kind's nth request on this protocol
				bytes int // the body the client got
			}
			var all []sent
			for _, p := range protocols {
				for n := range repeats {
					for i, k := range kinds {
						id := fmt.Sprintf("log-%s-%d-%d", map[string]string{"HTTP/1.1": "h1", "HTTP/2": "h2"}[p.name], n, i)
						r := p.do(t, s.addr, s.tls, k.method, k.path, nil, append([]string{"X-Request-Id", id}, k.fields...)...)
						if r.status != k.status {
							t.Fatalf("%s %s: %d, want %d", p.name, k.name, r.status, k.status)
						}
						// A request refused before the pipeline gets a fresh id.
						id = r.header.Get("X-Request-Id")
						all = append(all, sent{k, p.name, id, n, len(r.body)})
					}
				}
			}
			// Every line about these requests is written before the
			// barrier's, into the same stderr.
			s.barrier(t)

			lines := s.logLines()
			sampledOuts := 0
			for _, r := range all {
				var decisions, finished, access int
				for _, l := range lines {
					if w := decision(l); w != nil && w["request_id"] == r.id {
						decisions++
						if w["duration_s"] != nil {
							finished++
							if w["status"] != float64(r.status) || w["bytes_out"] != float64(r.bytes) || w["bytes_in"] != float64(0) ||
								w["client_ip"] != "127.0.0.1" || w["duration_s"].(float64) <= 0 {
								t.Errorf("%s %s: the line's response fields %v, want status %d, bytes_out %d, bytes_in 0, client_ip 127.0.0.1",
									r.proto, r.name, w, r.status, r.bytes)
							}
						}
					}
					if l["event"] == "access" && l["request_id"] == r.id {
						access++
						if l["status"] != float64(r.status) || l["path"] != r.path || l["method"] != r.method {
							t.Errorf("%s %s: access line %v", r.proto, r.name, l)
						}
					}
				}
				// Sampling leaves out allowed decisions from the cache: all
				// but the first of each input (HTTP/2's may differ).
				sampledOut := mode.sampled && r.status == 200 && decisions == 0
				if sampledOut {
					sampledOuts++
				}
				wantDecisions, wantFinished, wantAccess := 0, 0, 1
				switch {
				case !r.decided || sampledOut:
				case mode.separate:
					wantDecisions = 1
				default:
					wantDecisions, wantFinished, wantAccess = 1, 1, 0
				}
				if decisions != wantDecisions || finished != wantFinished || access != wantAccess {
					t.Errorf("%s %s #%d (%s): %d decision lines (%d with the response), %d access lines; want %d (%d), %d",
						r.proto, r.name, r.n, r.id, decisions, finished, access, wantDecisions, wantFinished, wantAccess)
				}
				if got := countAccounted(lines, r.id); !mode.separate && got != 1 {
					t.Errorf("%s %s #%d: %d lines account for it, want exactly 1", r.proto, r.name, r.n, got)
				}
			}
			if mode.sampled && sampledOuts < 2*repeats-2 {
				t.Errorf("%d allowed requests sampled out of the decision log, want %d or more", sampledOuts, 2*repeats-2)
			}
		})
	}
}

// countAccounted is how many lines account for the request id: access
// lines and finished decision lines.
func countAccounted(lines []map[string]any, id string) int {
	n := 0
	for _, l := range lines {
		if r := requestLine(l); r != nil && r["request_id"] == id {
			n++
		}
	}
	return n
}
