package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/internal/secevent"
)

// conn is an inbound TLS connection with what warden learns about its peer
// once, at the first request, instead of per request (peer), and the
// scratch space of the request in flight (reqState). fasthttp serves one
// request at a time per connection, so the scratch buffers need no
// locking; the HTTP/2 path keeps a reqState per stream instead (h2.go).
type conn struct {
	*tls.Conn
	peer
	reqState

	// Open connections by source (sources.go): tracked from accept to
	// Close; closing is set when the source is blocked, and ends the
	// connection at its next read (on either protocol path).
	tracked *sources
	closing atomic.Bool

	// The start of the current request's first line, as read, for the log
	// line of a request fasthttp cannot parse (fasthttp resets what it read
	// before it reports the error). Captured by the first Read after the
	// previous request was handled, cleared once a request parses.
	firstLine      []byte
	atRequestStart bool

	// The TLS handshake gets its own deadline (handshakeTimeout), within
	// whatever read deadline the server set: see Read.
	handshakeTimeout            time.Duration
	handshook                   bool
	readDeadline, writeDeadline time.Time

	// lazy: the deadlines fasthttp sets are armed at the next read or
	// write, coalesced within slack (deadline.go). Only on the HTTP/1.1
	// path, from the first request on (see Server.handle), and until a
	// hijack hands the connection to a tunnel.
	lazy   bool
	slack  time.Duration
	rd, wd lazyDeadline

	// lingerOnClose is set when warden answers before reading the whole
	// request (a body over the limit): see Close.
	lingerOnClose bool

	// For the Observer: told how the handshake ended.
	obs Observer

	// The connection's own app connection (affinity.go), and the slots it
	// counts against. Swapped atomically: Close may run on fasthttp's
	// shutdown goroutine.
	up   atomic.Pointer[pinned]
	pins *pinSlots
}

// peer is what warden learns about a connection's client once: its SPIFFE
// ID, whether it may talk to the app, its IP and the identity header. Both
// protocol paths read it; only resolve writes it, before the first request.
type peer struct {
	resolved bool
	peerID   spiffeid.ID
	peerStr  string
	peerTD   string
	allowed  bool
	clientIP string
	xfcc     []byte

	addr       netip.Addr // the client's address, from accept
	limitState uint64     // the Limiter's per-connection slot (see Limiter.AllowRequest)
}

// reqState is one request's scratch space and what the request path
// learns about it, whatever the protocol: reused request after request
// (fasthttp) or pooled per stream (HTTP/2).
type reqState struct {
	requestID []byte
	scratch   []byte
	path      []byte      // the normalized, decoded path of the current request
	target    []byte      // the request target forwarded to the app
	req       pep.Request // the pipeline's request, kept to spare an allocation
	fields    []pep.Field
	verdict   verdict     // what the pipeline decided on the current request
	span      RequestSpan // the current request's span; nil without a Tracer
	// The decision log line the pipeline held for the access fields
	// (WARDEN_ACCESS_LOG=combined), finished by accessLine.
	line pep.Line

	// What the header scan found in the current request; the slices alias
	// the protocol path's copy of the header block, valid during the
	// handler.
	del        [][]byte // header names to delete before policy and app
	xff        [][]byte // the client's X-Forwarded-For values, in order
	requestIDs int      // how many X-Request-Id headers the client sent
	upgrade    []byte   // the Upgrade protocol of an upgrade request (upgrade.go), else empty

	// For the Observer: what the current request came to so far (reset as
	// each request is handled).
	stage     pep.Stage
	forwarded bool
	upstream  time.Duration
	untimed   bool // the request could not be read: its start is unknown
}

// Lingering close bounds: how long and how much of the rest of a refused
// request warden reads and discards before closing.
const (
	lingerTimeout  = time.Second
	lingerMaxBytes = 1 << 20
)

// Close closes the connection. When warden answered before the client
// finished sending (413 for a body over the limit), closing at once would
// leave the unread body in the kernel's buffer, and the kernel would answer
// with a reset that can reach the client before it reads the 413. So the
// write side is shut first, and what the client still sends is read and
// discarded for a bounded time: the lingering close HTTP servers do.
func (c *conn) Close() error {
	if c.tracked != nil {
		c.tracked.remove(c)
	}
	if p := c.up.Load(); p != nil {
		// A stray answer left on the connection (a request smuggled in a
		// body the app read as a request) is logged as upstream_desync
		// even when no later request of this client finds it.
		if p.c.reused {
			_ = p.c.checkIdle()
		}
		c.dropPinned(p)
	}
	if c.lingerOnClose {
		c.lingerOnClose = false
		_ = c.Conn.CloseWrite()
		raw := c.Conn.NetConn()
		if tcp, ok := raw.(*net.TCPConn); ok {
			_ = tcp.CloseWrite()
		}
		_ = raw.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.CopyN(io.Discard, raw, lingerMaxBytes)
	}
	return c.Conn.Close()
}

// Handshake runs the TLS handshake under a deadline of its own: the
// server's read timeout is sized for a whole request, and a client that
// never finishes its handshake must not hold a connection slot that long.
// fasthttp calls it before the first read; the deadline is set on the
// connection rather than with HandshakeContext, which would start a
// goroutine per connection to watch the context.
//
// The first call is the handshake, and the one the Observer is told about;
// later calls return its result again (tls.Conn keeps it).
func (c *conn) Handshake() error {
	if c.handshook {
		return c.Conn.Handshake()
	}
	c.handshook = true
	var err error
	if c.handshakeTimeout <= 0 {
		err = c.Conn.Handshake()
	} else {
		d := time.Now().Add(c.handshakeTimeout)
		if !c.readDeadline.IsZero() && c.readDeadline.Before(d) {
			d = c.readDeadline
		}
		_ = c.Conn.SetDeadline(d)
		err = c.Conn.Handshake()
		_ = c.Conn.SetReadDeadline(c.readDeadline)
		_ = c.Conn.SetWriteDeadline(c.writeDeadline)
		c.rd.setArmed(c.readDeadline)
		c.wd.setArmed(c.writeDeadline)
	}
	if c.obs != nil {
		c.obs.Handshake(handshakeResult(err))
	}
	return err
}

// maxFirstLine bounds what is kept of a request line for the log.
const maxFirstLine = 256

// Read makes sure the handshake ran under its deadline first, and keeps the
// beginning of a request's first line (see firstLine).
func (c *conn) Read(p []byte) (int, error) {
	if !c.handshook {
		if err := c.Handshake(); err != nil {
			return 0, err
		}
	}
	// Armed before closing is checked: CloseSource sets the flag, then a
	// deadline in the past, so either this read sees the flag or that
	// deadline comes after this one and wakes it.
	if c.lazy {
		if t, ok := c.rd.arm(c.slack); ok {
			if err := c.Conn.SetReadDeadline(t); err != nil {
				return 0, err
			}
		}
	}
	if c.closing.Load() {
		return 0, errClosing
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.atRequestStart {
		c.atRequestStart = false
		line := p[:min(n, maxFirstLine)]
		if i := indexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		c.firstLine = append(c.firstLine[:0], line...)
	}
	return n, err
}

// requestLine returns the method and the path (without query) of what
// firstLine holds; both are empty when it holds no request line.
func (c *conn) requestLine() (method, path []byte) {
	line := c.firstLine
	sp := indexByte(line, ' ')
	if sp <= 0 {
		return nil, nil
	}
	method, rest := line[:sp], line[sp+1:]
	for _, b := range method {
		if !tokenChar[b] {
			return nil, nil
		}
	}
	end := 0
	for end < len(rest) && rest[end] != ' ' && rest[end] != '?' && rest[end] != '\r' {
		end++
	}
	return method, rest[:end]
}

// Write arms the write deadline fasthttp last asked for (see lazy).
func (c *conn) Write(p []byte) (int, error) {
	if c.lazy {
		if t, ok := c.wd.arm(c.slack); ok {
			if err := c.Conn.SetWriteDeadline(t); err != nil {
				return 0, err
			}
		}
	}
	return c.Conn.Write(p)
}

// The deadline setters remember what the server asked for, so that Read
// can restore it after the handshake. With lazy, the next read or write
// arms it; a zero deadline (no limit: fasthttp hands the connection over)
// is set at once.

func (c *conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.readDeadline = t
	if c.lazy && !t.IsZero() {
		c.rd.set(t)
		return nil
	}
	c.rd.setArmed(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline = t
	if c.lazy && !t.IsZero() {
		c.wd.set(t)
		return nil
	}
	c.wd.setArmed(t)
	return c.Conn.SetWriteDeadline(t)
}

// eagerDeadlines arms what is pending and ends lazy arming: the connection
// goes to code that sets its deadlines from several goroutines (a tunnel).
func (c *conn) eagerDeadlines() {
	if !c.lazy {
		return
	}
	c.lazy = false
	if t, ok := c.rd.arm(0); ok {
		_ = c.Conn.SetReadDeadline(t)
	}
	if t, ok := c.wd.arm(0); ok {
		_ = c.Conn.SetWriteDeadline(t)
	}
}

// listener wraps accepted connections in TLS and in conn.
type listener struct {
	net.Listener
	cfg              *tls.Config
	lim              Limiter
	handshakeTimeout time.Duration
	obs              Observer      // set by Server.Serve, before the first Accept
	events           *secevent.Log // as obs
	sources          *sources      // set by Server.Serve, before the first Accept
	slack            time.Duration // as obs: the coalescing slack of the server's timeouts
}

// NewListener serves TLS with cfg on inner; the proxy Server needs its
// connections to come from such a listener. lim, when not nil, decides each
// connection before its handshake. A handshake not complete within
// handshakeTimeout (0: no limit of its own) fails.
func NewListener(inner net.Listener, cfg *tls.Config, lim Limiter, handshakeTimeout time.Duration) net.Listener {
	return &listener{Listener: inner, cfg: cfg, lim: lim, handshakeTimeout: handshakeTimeout}
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var addr netip.Addr
		if tcp, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			addr = tcp.AddrPort().Addr().Unmap()
		}
		if l.lim != nil && !l.lim.AllowConn(addr) {
			if l.events != nil {
				ip := addr.String()
				if e := l.events.Sampled(secevent.RateLimited, secevent.Low, ip); e != nil {
					e.Str(secevent.FieldReason, pep.ReasonRateLimitConnection).Str(secevent.FieldSourceIP, ip).
						Msg("connection refused at accept by the rate limiter")
				}
			}
			// Refused before the handshake costs anything; a reset rather
			// than a FIN, so the socket does not linger in TIME_WAIT.
			if tcp, ok := c.(*net.TCPConn); ok {
				_ = tcp.SetLinger(0)
			}
			_ = c.Close()
			continue
		}
		tc := &conn{Conn: tls.Server(c, l.cfg), peer: peer{addr: addr}, handshakeTimeout: l.handshakeTimeout, atRequestStart: true, obs: l.obs, slack: l.slack}
		if l.sources != nil {
			tc.tracked = l.sources
			l.sources.add(tc)
		}
		return tc, nil
	}
}

// resolve reads the verified peer identity after the handshake (which the
// first read of the request completed).
func (c *conn) resolve(ownID string, allow func(spiffeid.ID) bool) {
	c.resolved = true
	if addr, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		c.clientIP = addr.IP.String()
	}
	// x509svid rather than warden's spiffe package (spiffe.PeerID does
	// the same): that one brings the Workload API client, and with it
	// gRPC, into the data path's dependencies.
	cs := c.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return
	}
	id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return
	}
	c.peerID = id
	c.peerStr = id.String()
	c.peerTD = id.TrustDomain().Name()
	c.allowed = allow(id)
	c.xfcc = append(c.xfcc[:0], "By="...)
	c.xfcc = append(c.xfcc, ownID...)
	c.xfcc = append(c.xfcc, ";URI="...)
	c.xfcc = append(c.xfcc, c.peerStr...)
}
