package secevent

import (
	"bytes"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Syslog sends security events to a collector as RFC 5424 messages: one
// message per event, the event's JSON line as MSG (without a BOM: MSG-ANY,
// which collectors take as it is), over UDP (one datagram per message) or
// TCP (RFC 6587 octet counting: "LEN SP message").
//
// The header is read from the line, which Log.Event starts with the same
// fields in the same order: TIMESTAMP is the event's time (RFC 3339, ms,
// UTC), MSGID the event name, and PRI the facility auth (4) with a
// severity from the event's: critical → 2 (critical), high → 3 (error),
// medium → 4 (warning), low → 5 (notice); PRI is thus 34 to 37. HOSTNAME
// is the machine's (the pod's) name, APP-NAME "warden", PROCID warden's
// process id.
//
// Write is meant to be called by one writer at a time, the goroutine of a
// batching writer (agent.BatchWriter) that keeps it off the request path:
// it never sleeps. While the collector cannot be reached, lines are
// dropped (and counted) rather than held, and the connection is dialled
// again after a backoff that doubles from 100ms to 30s at each failure.
type Syslog struct {
	network, addr string
	header        []byte // " HOSTNAME APP-NAME PROCID "

	mu      sync.Mutex
	conn    net.Conn
	retryAt time.Time
	backoff time.Duration
	frames  []byte
	closed  bool

	dropped atomic.Uint64
}

// Backoff bounds, and how long a dial or a write may take before the
// collector counts as unreachable.
const (
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 30 * time.Second
	dialTimeout  = time.Second
	writeTimeout = time.Second
)

// Facility auth (security/authorization messages), RFC 5424 section 6.2.1.
const facilityAuth = 4

// NewSyslog sends to addr (host:port) over network, "udp" or "tcp". It
// dials on the first Write.
func NewSyslog(network, addr string) *Syslog {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "-"
	}
	return &Syslog{
		network: network, addr: addr,
		header: []byte(" " + printable(host, 255) + " warden " + strconv.Itoa(os.Getpid()) + " "),
	}
}

// Write sends each line of p (whole lines, as zerolog and the batching
// writer produce) as one message. It reports success whatever became of
// them: a log sink has nobody to report a failure to; Dropped counts the
// lines lost.
func (s *Syslog) Write(p []byte) (int, error) {
	n := len(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := bytes.Count(p, []byte{'\n'})
	if len(p) > 0 && p[len(p)-1] != '\n' {
		lines++
	}
	if s.closed || !s.connect() {
		s.dropped.Add(uint64(lines))
		return n, nil
	}
	now := time.Now()
	s.frames = s.frames[:0]
	sent := 0
	for len(p) > 0 {
		line := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		if len(line) == 0 {
			continue
		}
		if s.network == "udp" {
			s.frames = appendMessage(s.frames[:0], line, s.header, now)
			_ = s.conn.SetWriteDeadline(now.Add(writeTimeout))
			if _, err := s.conn.Write(s.frames); err != nil {
				s.fail()
				s.dropped.Add(uint64(lines - sent))
				return n, nil
			}
			sent++
			continue
		}
		// Octet counting: the length of the message, a space, the message.
		start := len(s.frames)
		s.frames = appendMessage(s.frames, line, s.header, now)
		msgLen := len(s.frames) - start
		var prefix [12]byte
		pre := strconv.AppendInt(prefix[:0], int64(msgLen), 10)
		pre = append(pre, ' ')
		s.frames = append(s.frames, pre...)
		copy(s.frames[start+len(pre):], s.frames[start:start+msgLen])
		copy(s.frames[start:], pre)
	}
	if s.network == "tcp" && len(s.frames) > 0 {
		_ = s.conn.SetWriteDeadline(now.Add(writeTimeout))
		if _, err := s.conn.Write(s.frames); err != nil {
			// A partial write leaves the stream mid-frame: the connection
			// goes, and with it the batch.
			s.fail()
			s.dropped.Add(uint64(lines))
			return n, nil
		}
	}
	s.backoff = 0
	return n, nil
}

// connect dials when there is no connection and the backoff has passed;
// it reports whether there is one. The caller holds s.mu.
func (s *Syslog) connect() bool {
	if s.conn != nil {
		return true
	}
	if time.Now().Before(s.retryAt) {
		return false
	}
	c, err := net.DialTimeout(s.network, s.addr, dialTimeout)
	if err != nil {
		s.fail()
		return false
	}
	s.conn = c
	return true
}

// fail drops the connection and schedules the next dial. The caller holds
// s.mu.
func (s *Syslog) fail() {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
	s.backoff = min(max(s.backoff*2, minBackoff), maxBackoff)
	s.retryAt = time.Now().Add(s.backoff)
}

// Dropped is the number of events lost because the collector could not be
// reached or did not take them in time.
func (s *Syslog) Dropped() uint64 { return s.dropped.Load() }

// Close closes the connection; later writes are dropped. Close the
// batching writer in front of it first, so that its last lines are sent.
func (s *Syslog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// appendMessage appends the RFC 5424 message of one event line:
// <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG.
func appendMessage(dst, line, header []byte, now time.Time) []byte {
	dst = append(dst, '<')
	dst = strconv.AppendInt(dst, int64(facilityAuth*8+syslogSeverity(field(line, `"severity":"`))), 10)
	dst = append(dst, ">1 "...)
	if ts := field(line, `{"time":"`); len(ts) == len(timeLayout)-len("Z07:00")+1 {
		dst = append(dst, ts...)
	} else {
		dst = now.UTC().AppendFormat(dst, timeLayout)
	}
	dst = append(dst, header...)
	if name := field(line, `"event":"`); len(name) > 0 && len(name) <= 32 {
		dst = append(dst, name...)
	} else {
		dst = append(dst, '-')
	}
	dst = append(dst, " - "...)
	return append(dst, line...)
}

// field is the value of the first string field of line that key (the
// field's opening, up to its value's quote) starts: Event writes time,
// event_type, event and severity first, so the first match is warden's.
func field(line []byte, key string) []byte {
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return nil
	}
	v := line[i+len(key):]
	j := bytes.IndexByte(v, '"')
	if j < 0 {
		return nil
	}
	return v[:j]
}

// syslogSeverity maps an event's severity to RFC 5424's.
func syslogSeverity(sev []byte) int {
	switch string(sev) {
	case "critical":
		return 2
	case "high":
		return 3
	case "medium":
		return 4
	}
	return 5
}

// printable keeps what RFC 5424 allows in a header field (PRINTUSASCII),
// at most n bytes.
func printable(s string, n int) string {
	b := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(b) < n; i++ {
		if c := s[i]; c > 32 && c < 127 {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}
