package secevent

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rfc5424 is the header warden writes, then MSG: PRI, VERSION, TIMESTAMP
// (ms, UTC), HOSTNAME, APP-NAME, PROCID, MSGID, no STRUCTURED-DATA.
var rfc5424 = regexp.MustCompile(`^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S{1,255}) warden (\d+) (\S{1,32}) - (\{.*\})$`)

type frame struct {
	pri                      int
	time, host, procID, name string
	msg                      map[string]any
}

func parseFrame(t *testing.T, b []byte) frame {
	t.Helper()
	m := rfc5424.FindSubmatch(b)
	if m == nil {
		t.Fatalf("not an RFC 5424 message as warden writes them: %q", b)
	}
	f := frame{time: string(m[2]), host: string(m[3]), procID: string(m[4]), name: string(m[5])}
	f.pri, _ = strconv.Atoi(string(m[1]))
	if err := json.Unmarshal(m[6], &f.msg); err != nil {
		t.Fatalf("MSG is not the event's JSON: %v: %q", err, m[6])
	}
	return f
}

// checkFrame holds a message to the event it carries.
func checkFrame(t *testing.T, f frame, event string, pri int) {
	t.Helper()
	host, _ := os.Hostname()
	if f.pri != pri || f.name != event || f.procID != strconv.Itoa(os.Getpid()) || f.host != printable(host, 255) {
		t.Errorf("header PRI %d MSGID %q PROCID %s HOSTNAME %s, want %d %q %d %s", f.pri, f.name, f.procID, f.host, pri, event, os.Getpid(), host)
	}
	if f.msg["event"] != event || f.msg["time"] != f.time || f.msg["event_type"] != "security" {
		t.Errorf("MSG %v does not match the header (time %s, MSGID %s)", f.msg, f.time, f.name)
	}
}

func TestSyslogOverUDPSendsOneDatagramPerEvent(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	w := NewSyslog("udp", pc.LocalAddr().String())
	defer w.Close()
	l := New(w, func() string { return "spiffe://example.org/warden" })
	l.Event(PeerDenied, High).Str(FieldPeerID, "spiffe://example.org/intruder").Send()
	l.Event(RateLimited, Low).Str(FieldSourceIP, "127.0.0.1").Send()
	l.Event(IdentityExpiring, Critical).Str(FieldReason, "expired").Send()

	want := []struct {
		event string
		pri   int
	}{{"peer_denied", 35}, {"rate_limited", 37}, {"identity_expiring", 34}}
	buf := make([]byte, 64<<10)
	for _, w := range want {
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		f := parseFrame(t, buf[:n])
		checkFrame(t, f, w.event, w.pri)
		if f.msg["spiffe_id"] != "spiffe://example.org/warden" {
			t.Errorf("spiffe_id %v", f.msg["spiffe_id"])
		}
	}
	if w.Dropped() != 0 {
		t.Errorf("%d dropped", w.Dropped())
	}
}

func TestSyslogOverTCPFramesByOctetCounting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w := NewSyslog("tcp", ln.Addr().String())
	l := New(w, nil)
	// One write with two lines, as the batching writer hands them over.
	var batch strings.Builder
	New(&batch, nil).Event(TokenInvalid, Medium).Str(FieldReason, "token:expired").Send()
	New(&batch, nil).Event(BundleRejected, High).Str(FieldReason, "verification").Send()
	if _, err := w.Write([]byte(batch.String())); err != nil {
		t.Fatal(err)
	}
	l.Event(InputRefused, Medium).Str(FieldReason, "body:max_depth").Send()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	for _, want := range []struct {
		event string
		pri   int
	}{{"token_invalid", 36}, {"bundle_rejected", 35}, {"input_refused", 36}} {
		lenStr, err := r.ReadString(' ')
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(strings.TrimSuffix(lenStr, " "))
		if err != nil || n <= 0 {
			t.Fatalf("no octet count before the message: %q", lenStr)
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(r, msg); err != nil {
			t.Fatal(err)
		}
		checkFrame(t, parseFrame(t, msg), want.event, want.pri)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("after Close the collector reads %v, want EOF", err)
	}
}

// A collector that is down costs the writer no wait: the events are
// dropped and counted, and it dials again once the backoff has passed.
func TestSyslogOverTCPDropsWhileTheCollectorIsDownAndReconnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens: connections are refused
	w := NewSyslog("tcp", addr)
	defer w.Close()
	l := New(w, nil)
	start := time.Now()
	for range 5 {
		l.Event(PolicyDenied, Medium).Send()
	}
	if took := time.Since(start); took > dialTimeout {
		t.Errorf("5 events to a refused collector took %s", took)
	}
	if w.Dropped() != 5 {
		t.Fatalf("dropped %d, want 5", w.Dropped())
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken again meanwhile: %v", addr, err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	// Poll: the first events after the backoff reach the new collector.
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.Event(PolicyDenied, Medium).Str(FieldReason, "default_deny").Send()
		select {
		case c := <-accepted:
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(c)
			if _, err := r.ReadString(' '); err != nil {
				t.Fatal(err)
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("never reconnected")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
