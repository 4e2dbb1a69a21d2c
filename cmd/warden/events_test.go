package main

// The security events (docs/security-events.md) from the real binary: each
// trigger, end to end, gives exactly one event with the documented fields;
// and the events reach each WARDEN_SECURITY_LOG destination.

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/token/tokentest"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// eventsPolicy allows everything but /forbidden/..., which it denies with
// its own reason.
const eventsPolicy = `package warden.authz
default allow := {"allow": false}
allow := {"allow": true} if not startswith(input.path, "/forbidden/")
allow := {"allow": false, "reason": "forbidden_route"} if startswith(input.path, "/forbidden/")
`

// securityEvents parses the security events named name among lines.
func securityEvents(lines []map[string]any, name string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["event_type"] == "security" && l["event"] == name {
			out = append(out, l)
		}
	}
	return out
}

// barrier returns once everything warden logged before it is readable: a
// request's line (access, or decision with the response) is written after the events of every request
// answered before it, into the same writer.
// The barrier request is an ordinary GET /barrier: metrics count it
// (s.barriers says how many were sent).
func (s *sidecar) barrier(t *testing.T) {
	t.Helper()
	s.barriers++
	got := s.send(t, rawGET("/barrier"))
	id := got.header.Get("X-Request-Id")
	s.find(t, func(l map[string]any) bool { r := requestLine(l); return r != nil && r["request_id"] == id })
}

// wantOnce checks that exactly one event name carries requestID, and
// returns it.
func (s *sidecar) wantOnce(t *testing.T, name, requestID string) map[string]any {
	t.Helper()
	if requestID == "" {
		t.Fatalf("%s: the answer had no X-Request-Id", name)
	}
	s.barrier(t)
	var found []map[string]any
	for _, ev := range securityEvents(s.logLines(), name) {
		if ev["request_id"] == requestID {
			found = append(found, ev)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s events for request %s, want 1: %v", len(found), name, requestID, found)
	}
	return found[0]
}

var eventTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// checkEvent holds ev to the schema and to the fields want.
func checkEvent(t *testing.T, ev map[string]any, ownID string, want map[string]any) {
	t.Helper()
	ts, _ := ev["time"].(string)
	if !eventTime.MatchString(ts) || ev["spiffe_id"] != ownID || ev["event_type"] != "security" {
		t.Errorf("%v: time %q (want RFC 3339 UTC with ms), spiffe_id %v (want %s)", ev["event"], ts, ev["spiffe_id"], ownID)
	}
	for k, v := range want {
		if ev[k] != v {
			t.Errorf("%v: %s = %v, want %v", ev["event"], k, ev[k], v)
		}
	}
}

// Every trigger of the pipeline, from a refused peer to a rejected bundle,
// through one warden: one event each, with its fields; the old warn lines
// are gone; the app never sees a refused request.
func TestSecurityEventsEndToEnd(t *testing.T) {
	key := tokentest.NewKey(t, "ES256", "sts-1")
	forger := tokentest.NewKey(t, "ES256", "sts-1") // the same kid, another key
	app := startApp(t, appOptions{})
	bundleDir := policyDir(t, eventsPolicy)
	s := startSidecar(t, app, "WARDEN_POLICY_BUNDLE="+bundleDir, "WARDEN_POLICY_POLL_INTERVAL=200ms",
		"WARDEN_ALLOWED_PEERS=spiffe://warden.local/ns/default/sa/client",
		"WARDEN_JWT_JWKS="+writeJWKS(t, key), "WARDEN_JWT_ISSUERS="+jwtIssuer, "WARDEN_JWT_AUDIENCES="+jwtAudience,
		"WARDEN_JWT_REQUIRED=false")
	ownID, _ := s.find(t, func(l map[string]any) bool { return l["event"] == "identity_ready" })["spiffe_id"].(string)
	intruderDir := filepath.Join(t.TempDir(), "intruder")
	if out, err := devIssueCmd(t, s.devDir, "spiffe://warden.local/ns/default/sa/intruder", intruderDir); err != nil {
		t.Fatalf("dev issue: %v\n%s", err, out)
	}
	clientID := "spiffe://warden.local/ns/default/sa/client"
	common := func(extra map[string]any) map[string]any {
		m := map[string]any{"source_ip": "127.0.0.1", "peer_id": clientID}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}

	t.Run("peer_denied", func(t *testing.T) {
		c, err := tls.Dial("tcp", s.addr, clientTLS(t, intruderDir))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cc := &clientConn{Conn: c, br: bufio.NewReader(c)}
		got := cc.do(rawGET("/hello"))
		wantRefused(t, "an intruder", got, 403, "peer_not_allowed")
		ev := s.wantOnce(t, "peer_denied", got.header.Get("X-Request-Id"))
		checkEvent(t, ev, ownID, map[string]any{"severity": "high", "reason": "peer_not_allowed", "source_ip": "127.0.0.1",
			"peer_id": "spiffe://warden.local/ns/default/sa/intruder", "method": "GET", "path": "/hello"})
	})

	t.Run("policy_denied", func(t *testing.T) {
		tok := secret(t, "bearer token", key.Mint(t, userClaims("alice")))
		q := randomSecret(t, "signed-URL signature", "sig-")
		got := s.send(t, rawGET("/forbidden/report?X-Amz-Signature="+q, "Authorization: Bearer "+tok))
		wantRefused(t, "a denied route", got, 403, "forbidden")
		ev := s.wantOnce(t, "policy_denied", got.header.Get("X-Request-Id"))
		checkEvent(t, ev, ownID, common(map[string]any{"severity": "medium", "reason": "forbidden_route",
			"token_subject": "id-alice", "method": "GET", "path": "/forbidden/report", "status": 403.0}))
		// An allowed request is no event.
		ok := s.send(t, rawGET("/allowed"))
		if ok.status != 200 {
			t.Fatalf("an allowed request: %s", ok)
		}
		for _, ev := range s.logLines() {
			if ev["event_type"] == "security" && ev["request_id"] == ok.header.Get("X-Request-Id") {
				t.Errorf("an allowed request gave an event: %v", ev)
			}
		}
	})

	t.Run("token_invalid", func(t *testing.T) {
		forged := secret(t, "forged bearer token", forger.Mint(t, userClaims("mallory")))
		got := s.send(t, rawGET("/hello", "Authorization: Bearer "+forged))
		wantRefused(t, "a forged token", got, 401, "unauthorized")
		ev := s.wantOnce(t, "token_invalid", got.header.Get("X-Request-Id"))
		checkEvent(t, ev, ownID, common(map[string]any{"severity": "high", "reason": "token:bad_signature", "method": "GET", "path": "/hello"}))
		if _, ok := ev["token_subject"]; ok {
			t.Errorf("an unverified token's subject in the event: %v", ev)
		}
	})

	t.Run("input_refused by the hardening", func(t *testing.T) {
		got := s.send(t, "POST /smuggle HTTP/1.1\r\nHost: app.local\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		wantRefused(t, "CL and TE", got, 400, "bad_request")
		ev := s.wantOnce(t, "input_refused", got.header.Get("X-Request-Id"))
		checkEvent(t, ev, ownID, common(map[string]any{"severity": "medium", "reason": "hardening:content_length_and_transfer_encoding",
			"method": "POST", "path": "/smuggle"}))
	})

	t.Run("input_refused by a JSON limit", func(t *testing.T) {
		got := s.send(t, post("/j/deep", "application/json", nested("[", "]", 40)))
		wantRefused(t, "a deep JSON body", got, 400, "invalid_body")
		ev := s.wantOnce(t, "input_refused", got.header.Get("X-Request-Id"))
		checkEvent(t, ev, ownID, common(map[string]any{"severity": "medium", "reason": "body:max_depth", "rule": "max_depth",
			"method": "POST", "path": "/j/deep"}))
	})

	t.Run("tls_handshake_failed, sampled", func(t *testing.T) {
		// Five handshakes without a client certificate from one source
		// within a second: one event (two if the burst straddles a second).
		noCert := s.tls.Clone()
		noCert.Certificates = nil
		first := time.Now().Unix()
		for range 5 {
			c, err := tls.Dial("tcp", s.addr, noCert)
			if err == nil {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Read(make([]byte, 1)) // TLS 1.3: the refusal arrives after the handshake
				c.Close()
			}
			if err == nil {
				t.Fatal("a client without a certificate was served")
			}
		}
		last := time.Now().Unix()
		s.barrier(t)
		evs := securityEvents(s.logLines(), "tls_handshake_failed")
		if n := int64(len(evs)); n < 1 || n > last-first+1 {
			t.Fatalf("%d tls_handshake_failed events for 5 failures within %d s", n, last-first+1)
		}
		checkEvent(t, evs[0], ownID, map[string]any{"severity": "low", "reason": "tls:error", "source_ip": "127.0.0.1"})
	})

	t.Run("bundle_rejected", func(t *testing.T) {
		writeFile(t, filepath.Join(bundleDir, "broken.rego"), "package warden.authz\nallow if {")
		ev := s.find(t, func(l map[string]any) bool { return l["event"] == "bundle_rejected" })
		checkEvent(t, ev, ownID, map[string]any{"severity": "medium", "reason": "parse"})
		// The same broken content, polled five more times, is reported once.
		testenv.Poll(t, "five more polls", 10*time.Second, func() bool {
			code, body := get(t, s.admin+"/policy")
			return code == 200 && strings.Contains(body, "broken.rego") && time.Since(parseTime(t, ev["time"])) > time.Second
		})
		if n := len(securityEvents(s.logLines(), "bundle_rejected")); n != 1 {
			t.Errorf("%d bundle_rejected events for one broken revision, want 1", n)
		}
		if err := os.Remove(filepath.Join(bundleDir, "broken.rego")); err != nil {
			t.Fatal(err)
		}
	})

	if n := app.receivedTarget("/smuggle") + app.receivedTarget("/j/deep") + app.receivedTarget("/forbidden/report"); n != 0 {
		t.Errorf("the app saw %d refused requests", n)
	}
	for _, l := range s.logLines() {
		switch l["event"] {
		case "peer_refused", "token_refused", "request_refused", "path_refused", "body_refused", "openapi_refused",
			"policy_rejected", "policy_eval_timeout", "svid_expiring", "svid_expired":
			t.Errorf("an old event name is still written: %v", l)
		}
	}
}

func parseTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return ts
}

// The userspace limiter's 429s are sampled: a burst of refusals from one
// source within a second is one rate_limited event.
func TestRateLimitedEventIsSampled(t *testing.T) {
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_PACKET_RATE_LIMIT=1", "WARDEN_PACKET_BURST=1")
	c := s.dial(t)
	first := time.Now().Unix()
	var ids []string
	for i := range 8 {
		got := c.do(rawGET("/burst"))
		if i == 0 && got.status != 200 {
			t.Fatalf("the first request: %s", got)
		}
		if i > 0 {
			wantRefused(t, "a request over the limit", got, 429, "rate_limited")
			ids = append(ids, got.header.Get("X-Request-Id"))
		}
	}
	last := time.Now().Unix()
	s.barrier(t) // a new connection: a bucket of its own
	evs := securityEvents(s.logLines(), "rate_limited")
	if n := int64(len(evs)); n < 1 || n > last-first+1 {
		t.Fatalf("%d rate_limited events for 7 refusals within %d s, want one per second", n, last-first+1)
	}
	if ev := evs[0]; ev["request_id"] != ids[0] || ev["reason"] != "rate_limit:request" || ev["severity"] != "low" ||
		ev["source_ip"] != "127.0.0.1" || ev["path"] != "/burst" || ev["method"] != "GET" {
		t.Errorf("rate_limited %v, want the first refusal's (%s)", evs[0], ids[0])
	}
	if n := app.receivedTarget("/burst"); n != 1 {
		t.Errorf("the app saw %d requests, want 1", n)
	}
}

// Each WARDEN_SECURITY_LOG destination gets the events, and only it: a
// refused peer's peer_denied reaches a file, stdout, and a syslog collector
// over UDP and over TCP (RFC 5424, the event's JSON as MSG), and is not on
// stderr with the log.
func TestSecurityLogDestinations(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	file := filepath.Join(t.TempDir(), "security.log")

	// received returns the first message the destination got, polling.
	tests := []struct {
		name, dest string
		received   func(t *testing.T, p *process) string
	}{
		{"file", file, func(t *testing.T, p *process) string {
			var line string
			testenv.Poll(t, "the file", 10*time.Second, func() bool {
				b, _ := os.ReadFile(file)
				line, _, _ = strings.Cut(string(b), "\n")
				return line != ""
			})
			return line
		}},
		{"stdout", "stdout", func(t *testing.T, p *process) string {
			var line string
			testenv.Poll(t, "stdout", 10*time.Second, func() bool {
				line, _, _ = strings.Cut(p.stdoutText(), "\n")
				return line != ""
			})
			return line
		}},
		{"syslog over UDP", "syslog://" + udp.LocalAddr().String(), func(t *testing.T, p *process) string {
			buf := make([]byte, 64<<10)
			_ = udp.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, _, err := udp.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			return syslogMSG(t, string(buf[:n]), p)
		}},
		{"syslog over TCP", "syslog+tcp://" + tcp.Addr().String(), func(t *testing.T, p *process) string {
			_ = tcp.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
			c, err := tcp.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			n, err := r.ReadString(' ')
			if err != nil {
				t.Fatal(err)
			}
			size, err := strconv.Atoi(strings.TrimSpace(n))
			if err != nil {
				t.Fatalf("no octet count: %q", n)
			}
			msg := make([]byte, size)
			if _, err := io.ReadFull(r, msg); err != nil {
				t.Fatal(err)
			}
			return syslogMSG(t, string(msg), p)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSidecar(t, startApp(t, appOptions{}), "WARDEN_SECURITY_LOG="+tt.dest,
				"WARDEN_ALLOWED_PEERS=spiffe://warden.local/ns/default/sa/someone-else")
			got := s.send(t, rawGET("/hello"))
			wantRefused(t, "a peer not allowed", got, 403, "peer_not_allowed")
			var ev map[string]any
			if line := tt.received(t, s.process); json.Unmarshal([]byte(line), &ev) != nil {
				t.Fatalf("not a JSON event: %q", line)
			}
			if ev["event"] != "peer_denied" || ev["request_id"] != got.header.Get("X-Request-Id") || ev["event_type"] != "security" {
				t.Errorf("the destination got %v", ev)
			}
			// The access line is on stderr: the event is not.
			s.find(t, func(l map[string]any) bool { return l["event"] == "access" && l["request_id"] == ev["request_id"] })
			if evs := securityEvents(s.logLines(), "peer_denied"); len(evs) != 0 {
				t.Errorf("the event is on stderr too: %v", evs)
			}
		})
	}
}

// rfc5424 is the header warden writes before the event's JSON.
var rfc5424 = regexp.MustCompile(`^<3[4-7]>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S+ warden (\d+) ([a-z_]+) - (\{.*\})$`)

// syslogMSG checks an RFC 5424 message from warden p and returns its MSG.
func syslogMSG(t *testing.T, msg string, p *process) string {
	t.Helper()
	m := rfc5424.FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("not an RFC 5424 message as documented: %q", msg)
	}
	if m[1] != strconv.Itoa(p.cmd.Process.Pid) || m[2] != "peer_denied" {
		t.Errorf("PROCID %s MSGID %s, want %d peer_denied", m[1], m[2], p.cmd.Process.Pid)
	}
	return m[3]
}

// An event written just before SIGTERM still reaches the collector: the
// security log stops last, after flushing, and then closes its connection.
func TestSecurityLogIsFlushedOnShutdown(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	s := startSidecar(t, startApp(t, appOptions{}), "WARDEN_SECURITY_LOG=syslog+tcp://"+tcp.Addr().String(),
		"WARDEN_ALLOWED_PEERS=spiffe://warden.local/ns/default/sa/someone-else")
	got := s.send(t, rawGET("/last-words"))
	wantRefused(t, "a peer not allowed", got, 403, "peer_not_allowed")
	// At once: the event is still in the batch (flushed every 100 ms).
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("warden exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("warden did not exit")
	}
	_ = tcp.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	c, err := tcp.Accept()
	if err != nil {
		t.Fatalf("the collector never heard from warden: %v", err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	all, err := io.ReadAll(c) // to EOF: warden closed the connection
	if err != nil {
		t.Fatalf("reading to the connection's end: %v", err)
	}
	n, msg, ok := strings.Cut(string(all), " ")
	if size, err := strconv.Atoi(n); !ok || err != nil || size != len(msg) {
		t.Fatalf("want exactly one octet-counted message, got %q", all)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(syslogMSG(t, msg, s.process)), &ev); err != nil {
		t.Fatal(err)
	}
	if ev["request_id"] != got.header.Get("X-Request-Id") || ev["path"] != "/last-words" {
		t.Errorf("the collector got %v", ev)
	}
}

// The sink itself: a registered secret in anything a warden process wrote
// (stderr, stdout, a log file) is reported, naming the secret's kind and
// where it was, never the secret.
func TestSecretSinkReadsEverythingWardenWrites(t *testing.T) {
	value := randomSecret(t, "sink self-test secret", "selftest-")
	file := filepath.Join(t.TempDir(), "security.log")
	writeFile(t, file, `{"event":"policy_denied","detail":"`+value+`"}`+"\n")
	// Not in processes.all: the suite-wide sweep does not see it.
	p := &process{owner: t.Name(), leaked: map[string]bool{}, logFiles: []string{file}}
	p.raw.WriteString(`{"event":"access","path":"/` + value + `"}` + "\n")
	p.stdout.WriteString(value + "\n")
	leaks := p.leaks()
	if len(leaks) != 3 {
		t.Fatalf("%d leaks reported, want 3 (stderr, stdout, the file): %q", len(leaks), leaks)
	}
	for i, where := range []string{"log of", "stdout of", "log file security.log of"} {
		if !strings.HasPrefix(leaks[i], where) || !strings.Contains(leaks[i], "sink self-test secret") || strings.Contains(leaks[i], value) {
			t.Errorf("leak %d %q: want where (%s) and the kind, never the value", i, leaks[i], where)
		}
	}
	if again := p.leaks(); len(again) != 0 {
		t.Errorf("the same leaks reported twice: %q", again)
	}
}
