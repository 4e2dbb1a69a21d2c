package proxy

// HTTP/1.1 upgrades (RFC 9110 section 7.8), WebSocket above all (RFC 6455).
//
// An upgrade request is an ordinary request until it is allowed: the peer
// check, the hardening, normalization, the token, the rate limit and the
// policy decide it like any other, and it is logged and counted like any
// other. Only then does warden open a connection of its own to the app
// (never a pooled one: after a 101 it carries another protocol, and after
// anything else it is closed), send the request, and read the app's
// answer. A 101 is relayed and both connections become a byte-for-byte
// tunnel; any other answer is relayed as a response and the client's
// connection is closed after it, so that nothing the client sent behind
// the request head (frames sent ahead of the 101, or a second request
// hidden there) is ever read as a request or reaches the app.

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

var (
	headerUpgrade         = []byte("Upgrade")
	headerWSVersion       = []byte("Sec-WebSocket-Version")
	tokenWebSocket        = []byte("websocket")
	wsVersion13           = []byte("13")
	valueUpgrade          = []byte("Upgrade")
	statusLine101         = []byte("HTTP/1.1 101 Switching Protocols\r\n")
	errUpgradeMismatch    = errors.New("proxy: app answered 101 with another protocol than the one requested")
	errUpgradeNoConnUpgrd = errors.New("proxy: app answered 101 without Connection: upgrade")
)

// Refusals of upgrade requests. An upgrade that is not allowed is refused
// rather than forwarded without its Upgrade header: the app would answer a
// request the client did not mean to send, and a WebSocket client that
// already sent frames would have them read as the next request.
var (
	refuseUpgradeNotAllowed = &refusal{fasthttp.StatusBadRequest, "upgrade_not_allowed", "upgrade protocol not in WARDEN_ALLOW_UPGRADE"}
	refuseUpgradeAmbiguous  = &refusal{fasthttp.StatusBadRequest, "bad_request", "more than one Upgrade protocol"}
	refuseUpgradeMethod     = &refusal{fasthttp.StatusBadRequest, "bad_request", "upgrade on a method other than GET"}
	refuseUpgradeBody       = &refusal{fasthttp.StatusBadRequest, "bad_request", "upgrade request with a body"}
	refuseWebSocketKey      = &refusal{fasthttp.StatusBadRequest, "bad_request", "Sec-WebSocket-Key missing, repeated or not 16 bytes in base64"}
	// RFC 6455 section 4.4: 426 with the versions the server speaks.
	refuseWebSocketVersion = &refusal{fasthttp.StatusUpgradeRequired, "unsupported_websocket_version", "Sec-WebSocket-Version missing, repeated or not 13"}
)

// Upgrade limits.
const (
	// maxUpgradeRefusalBytes bounds the body of an app's non-101 answer to
	// an upgrade request, which warden reads whole from its dedicated
	// connection; a larger one gets 502.
	maxUpgradeRefusalBytes = 1 << 20
	// tunnelBufferBytes is each direction's copy buffer: a TLS record's
	// worth. With the client's read buffer (WARDEN_MAX_HEADER_BYTES, kept by
	// fasthttp's hijacked connection) and the TLS state, an open tunnel
	// holds about 64 KiB.
	tunnelBufferBytes = 16 << 10
	// tunnelCloseGrace bounds what closing a tunnel may wait for: the
	// client's TLS close_notify, the tunnels of a forced drain.
	tunnelCloseGrace = time.Second
)

// checkUpgrade recognises an upgrade request (Upgrade, and Connection
// naming upgrade) and keeps its protocol in c.upgrade for the rest of the
// request; it refuses, and reports false, one warden does not tunnel. An
// Upgrade header without Connection: upgrade asks for nothing (RFC 9110
// section 7.8) and goes as hop-by-hop headers go; so does Upgrade on
// HTTP/1.0 (fasthttp's ConnectionUpgrade is false without keep-alive),
// which RFC 9110 says a server must ignore. For other requests it costs
// one header lookup.
func (s *Server) checkUpgrade(ctx *fasthttp.RequestCtx, c *conn) bool {
	c.upgrade = c.upgrade[:0]
	h := &ctx.Request.Header
	up := h.PeekBytes(headerUpgrade)
	if len(up) == 0 || !h.ConnectionUpgrade() {
		return true
	}
	// Whatever the answer, the connection ends with it: after a 101 it is
	// the tunnel's, after anything else the bytes behind the request head
	// are the client's idea of the upgraded protocol, not a request.
	ctx.SetConnectionClose()
	var bad *refusal
	switch {
	case len(h.PeekAll("Upgrade")) != 1 || indexByte(up, ',') >= 0:
		bad = refuseUpgradeAmbiguous
	case !s.upgradeAllowed(up):
		bad = refuseUpgradeNotAllowed
	case !h.IsGet():
		bad = refuseUpgradeMethod
	case h.ContentLength() > 0 || h.ContentLength() == -1 || len(ctx.Request.Body()) > 0:
		bad = refuseUpgradeBody
	case equalFold(trimOWS(up), tokenWebSocket):
		bad = checkWebSocket(h)
	}
	if bad != nil {
		s.refuseRequest(ctx, c, bad)
		if bad == refuseWebSocketVersion {
			ctx.Response.Header.SetCanonical(headerWSVersion, wsVersion13)
		}
		return false
	}
	c.upgrade = append(c.upgrade, trimOWS(up)...)
	return true
}

// upgradeAllowed reports whether WARDEN_ALLOW_UPGRADE names the protocol.
func (s *Server) upgradeAllowed(up []byte) bool {
	up = trimOWS(up)
	for _, a := range s.opts.AllowUpgrade {
		if equalFold(up, []byte(a)) {
			return true
		}
	}
	return false
}

// checkWebSocket checks the handshake fields RFC 6455 section 4.2.1 asks a
// server to check, as loosely as real clients need: one Sec-WebSocket-Key
// that is 16 bytes in base64 and one Sec-WebSocket-Version of 13.
// Sec-WebSocket-Protocol and -Extensions are the app's to negotiate.
func checkWebSocket(h *fasthttp.RequestHeader) *refusal {
	if v := h.PeekAll("Sec-WebSocket-Version"); len(v) != 1 || !equalFold(trimOWS(v[0]), wsVersion13) {
		return refuseWebSocketVersion
	}
	keys := h.PeekAll("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return refuseWebSocketKey
	}
	// 16 bytes are 24 characters of base64 with padding; the length comes
	// first, since Decode writes as much as a longer key decodes to.
	key := trimOWS(keys[0])
	var raw [18]byte
	if len(key) != 24 {
		return refuseWebSocketKey
	}
	if n, err := base64.StdEncoding.Decode(raw[:], key); err != nil || n != 16 {
		return refuseWebSocketKey
	}
	return nil
}

// restoreUpgrade puts back the two headers the hop-by-hop removal took,
// before the policy sees the request: the policy can tell an upgrade
// (input.headers.upgrade), and the app must see it.
func restoreUpgrade(h *fasthttp.RequestHeader, c *conn) {
	h.Set(headerConnection, "Upgrade")
	h.SetCanonical(headerUpgrade, c.upgrade)
}

// upgrade sends an allowed upgrade request to the app on a connection of
// its own and relays the answer: a 101 becomes a tunnel, anything else a
// response after which the client's connection closes.
func (s *Server) upgrade(ctx *fasthttp.RequestCtx, c *conn) {
	t := &tunnel{s: s, idle: s.opts.IdleTimeout, proto: string(c.upgrade), requestID: string(c.requestID), peerID: c.peerStr}
	if !s.tunnels.add(t, s.opts.MaxConnections) {
		s.log.Warn().Str("event", "upgrade_refused").Str("reason", "tunnel limit or shutdown").
			Int("tunnels", s.tunnels.count()).Bytes("request_id", c.requestID).Msg("no tunnel for this upgrade")
		s.refuse(ctx, c, OutcomeError, fasthttp.StatusServiceUnavailable, "upgrade_unavailable")
		return
	}
	hijacked := false
	defer func() {
		if !hijacked {
			s.tunnels.remove(t)
		}
	}()

	// The protocol the client asked for and the policy decided on, whatever
	// a verdict's headers set: the app must not be offered another (h2c,
	// whose tunnel would carry requests past the policy).
	h := &ctx.Request.Header
	h.Del(headerConnection)
	h.DelBytes(headerUpgrade)
	restoreUpgrade(h, c)

	var sent time.Time
	if s.opts.Observer != nil {
		sent = time.Now()
	}
	app, br, err := s.sendUpgrade(ctx)
	if s.opts.Observer != nil {
		c.forwarded, c.upstream = true, time.Since(sent)
	}
	if err != nil {
		if app != nil {
			_ = app.Close()
		}
		status, code := upstreamError(err)
		if errors.Is(err, errUpgradeMismatch) || errors.Is(err, errUpgradeNoConnUpgrd) || errors.Is(err, fasthttp.ErrBodyTooLarge) {
			status, code = fasthttp.StatusBadGateway, "upstream_unavailable"
		}
		s.log.Error().Str("event", "upstream_error").Err(err).Str("upstream", s.opts.UpstreamAddr).
			Bytes("request_id", c.requestID).Msg("upgrade request to the app failed")
		ctx.Response.Reset()
		ctx.SetConnectionClose()
		s.refuse(ctx, c, OutcomeError, status, code)
		return
	}
	resp := &ctx.Response
	if resp.StatusCode() != fasthttp.StatusSwitchingProtocols {
		// The app declined: its answer goes back as any answer does, and
		// the connection closes after it (see checkUpgrade).
		_ = app.Close()
		RemoveHopByHopResponse(&resp.Header)
		resp.Header.SetBytesV(HeaderRequestID, c.requestID)
		resp.SetConnectionClose()
		s.finish(ctx, c, OutcomeAllow)
		return
	}
	t.mu.Lock()
	if t.closed { // the drain ran out while the app answered
		t.mu.Unlock()
		_ = app.Close()
		resp.Reset()
		ctx.SetConnectionClose()
		s.refuse(ctx, c, OutcomeError, fasthttp.StatusServiceUnavailable, "upgrade_unavailable")
		return
	}
	t.app, t.appR = app, br
	t.mu.Unlock()
	t.head = switchingHead(t.head, &resp.Header, c.requestID)
	// The 101 is written by the tunnel, on the hijacked connection: fasthttp
	// writes nothing. ctx.Response keeps the status for the access line and
	// the metrics, whose duration ends at the 101 (the tunnel's lifetime is
	// in the upgrade_closed line).
	resp.Reset()
	resp.SetStatusCode(fasthttp.StatusSwitchingProtocols)
	ctx.HijackSetNoResponse(true)
	c.eagerDeadlines()
	ctx.Hijack(t.run)
	hijacked = true
	s.finish(ctx, c, OutcomeAllow)
}

// sendUpgrade dials the app, writes the request head exactly as the policy
// decided it and reads the app's answer into ctx.Response: the head of a
// 101 (what follows it is the tunnel's, left in the returned reader), or a
// whole response. Interim answers other than 101 are skipped.
func (s *Server) sendUpgrade(ctx *fasthttp.RequestCtx) (net.Conn, *bufio.Reader, error) {
	app, err := net.DialTimeout("tcp", s.opts.UpstreamAddr, upstreamDialTimeout)
	if err != nil {
		return nil, nil, err
	}
	_ = app.SetDeadline(time.Now().Add(s.opts.UpstreamTimeout))
	if _, err := app.Write(ctx.Request.Header.Header()); err != nil {
		return app, nil, err
	}
	br := bufio.NewReaderSize(app, s.opts.MaxHeaderBytes)
	resp := &ctx.Response
	resp.Reset()
	for range 8 {
		if err := resp.Header.Read(br); err != nil {
			return app, nil, err
		}
		if st := resp.StatusCode(); st >= 200 || st == fasthttp.StatusSwitchingProtocols {
			break
		}
	}
	switch st := resp.StatusCode(); {
	case st == fasthttp.StatusSwitchingProtocols:
		if !resp.Header.ConnectionUpgrade() {
			return app, nil, errUpgradeNoConnUpgrd
		}
		if !equalFold(trimOWS(resp.Header.PeekBytes(headerUpgrade)), ctx.Request.Header.PeekBytes(headerUpgrade)) {
			return app, nil, errUpgradeMismatch
		}
		_ = app.SetDeadline(time.Time{})
		return app, br, nil
	case st < 200:
		return app, nil, errors.New("proxy: app sent only interim answers to an upgrade request")
	}
	if err := resp.ReadBody(br, maxUpgradeRefusalBytes); err != nil {
		return app, nil, err
	}
	return app, nil, nil
}

// switchingHead is the 101 the client gets: the app's, without the fields
// that describe a message body or another hop, with warden's Connection,
// the app's Upgrade and the request id.
func switchingHead(dst []byte, h *fasthttp.ResponseHeader, requestID []byte) []byte {
	dst = append(dst[:0], statusLine101...)
	for k, v := range h.All() {
		if equalFold(k, []byte(headerConnection)) || equalFold(k, []byte(HeaderRequestID)) ||
			equalFold(k, []byte("Content-Length")) || equalFold(k, []byte("Content-Type")) || hopByHopName(k) {
			continue
		}
		dst = appendField(dst, k, v)
	}
	dst = appendField(dst, []byte(headerConnection), valueUpgrade)
	dst = appendField(dst, headerUpgrade, trimOWS(h.PeekBytes(headerUpgrade)))
	dst = appendField(dst, []byte(HeaderRequestID), requestID)
	return append(dst, '\r', '\n')
}

func appendField(dst, k, v []byte) []byte {
	dst = append(dst, k...)
	dst = append(dst, ':', ' ')
	dst = append(dst, v...)
	return append(dst, '\r', '\n')
}

func hopByHopName(k []byte) bool {
	for _, name := range hopByHop {
		if equalFold(k, []byte(name)) {
			return true
		}
	}
	return false
}

// tunnel is one upgraded connection: the client's (hijacked from fasthttp)
// and the app's, copied both ways until either side closes, nothing flows
// either way for idle, or the server drains.
type tunnel struct {
	s     *Server
	idle  time.Duration
	proto string

	requestID, peerID string

	app  net.Conn
	appR *bufio.Reader // the app's connection, holding what followed its 101
	head []byte        // the 101 for the client

	// client is the hijacked connection, set when run starts; clientDL is
	// the TLS connection under it, whose deadlines may be set from any
	// goroutine (conn's setters keep what they set, for one goroutine).
	client, clientDL net.Conn
	mu               sync.Mutex
	closed           bool
	reason           string
	last             atomic.Int64 // UnixNano of the last byte either way
	fromCli          atomic.Int64
	fromApp          atomic.Int64
}

var tunnelBuffers = sync.Pool{New: func() any { b := make([]byte, tunnelBufferBytes); return &b }}

// Reasons a tunnel ended, for the upgrade_closed line.
const (
	closedByClient = "client_closed"
	closedByApp    = "app_closed"
	closedIdle     = "idle_timeout"
	closedDrain    = "shutdown"
)

// run is the hijack handler: it writes the 101 and copies until the end.
// fasthttp closes the client's connection when it returns.
func (t *tunnel) run(client net.Conn) {
	defer t.s.tunnels.remove(t)
	start := time.Now()
	t.mu.Lock()
	t.client, t.clientDL = client, deadlineConn(client)
	closed := t.closed
	t.mu.Unlock()
	if closed { // drained before it started
		_ = t.app.Close()
		t.log(start)
		return
	}
	t.last.Store(start.UnixNano())
	// The 101, and whatever the app sent right behind it (its first frames)
	// in the same write; the app's connection is then read directly, and
	// the reader's buffer goes.
	if n := t.appR.Buffered(); n > 0 {
		early, _ := t.appR.Peek(n)
		t.head = append(t.head, early...)
		t.fromApp.Add(int64(n))
	}
	t.appR = nil
	_ = t.clientDL.SetWriteDeadline(start.Add(t.idle))
	if _, err := client.Write(t.head); err != nil {
		t.close(closedByClient)
	} else {
		t.head = nil
		done := make(chan struct{})
		go func() {
			defer close(done)
			t.pipe(client, t.clientDL, t.app, t.app, &t.fromApp, closedByApp, closedByClient)
		}()
		t.pipe(t.app, t.app, client, t.clientDL, &t.fromCli, closedByClient, closedByApp)
		<-done
	}
	// fasthttp's Close sends the client a close_notify: give it a bound.
	_ = t.clientDL.SetWriteDeadline(time.Now().Add(tunnelCloseGrace))
	t.log(start)
}

// pipe copies src to dst until either fails or the tunnel closes; srcDL
// and dstDL take their deadlines. A read that times out ends the tunnel
// only when nothing flowed either way for idle: a stream one way keeps it
// open.
func (t *tunnel) pipe(dst io.Writer, dstDL net.Conn, src io.Reader, srcDL net.Conn, n *atomic.Int64, srcGone, dstGone string) {
	bp := tunnelBuffers.Get().(*[]byte)
	defer tunnelBuffers.Put(bp)
	buf := *bp
	for {
		_ = srcDL.SetReadDeadline(time.Now().Add(t.idle))
		// After the deadline is set: a close from now on moves it to now.
		if t.isClosed() {
			return
		}
		k, err := src.Read(buf)
		if k > 0 {
			now := time.Now()
			t.last.Store(now.UnixNano())
			_ = dstDL.SetWriteDeadline(now.Add(t.idle))
			if _, werr := dst.Write(buf[:k]); werr != nil {
				t.close(dstGone)
				return
			}
			n.Add(int64(k))
		}
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if t.isClosed() {
				return
			}
			if time.Since(time.Unix(0, t.last.Load())) < t.idle {
				continue
			}
			t.close(closedIdle)
			return
		}
		t.close(srcGone)
		return
	}
}

// close ends the tunnel once: the app's connection closes, and the
// client's read returns at once (its connection is fasthttp's to close).
func (t *tunnel) close(reason string) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed, t.reason = true, reason
	client, app := t.clientDL, t.app
	t.mu.Unlock()
	if app != nil {
		_ = app.Close()
	}
	if client != nil {
		_ = client.SetReadDeadline(time.Now())
	}
}

// deadlineConn is the connection under a hijacked one whose deadlines are
// safe to set from several goroutines.
func deadlineConn(c net.Conn) net.Conn {
	if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
		c = u.UnsafeConn()
	}
	if pc, ok := c.(*conn); ok {
		return pc.Conn
	}
	return c
}

func (t *tunnel) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// log writes the tunnel's one line: the access line of its request was
// written at the 101.
func (t *tunnel) log(start time.Time) {
	t.mu.Lock()
	reason := t.reason
	t.mu.Unlock()
	t.s.log.Info().Str("event", "upgrade_closed").Str("protocol", t.proto).Str("reason", reason).
		Str("peer_id", t.peerID).Float64("duration_s", time.Since(start).Seconds()).
		Int64("bytes_from_client", t.fromCli.Load()).Int64("bytes_from_app", t.fromApp.Load()).
		Str("request_id", t.requestID).Send()
}

// tunnelSet holds the open tunnels. fasthttp forgets a connection once it
// is hijacked: neither Concurrency (WARDEN_MAX_CONNECTIONS) nor Shutdown
// sees it, so warden bounds and drains tunnels itself.
type tunnelSet struct {
	mu      sync.Mutex
	all     map[*tunnel]struct{}
	closing bool
}

// add registers t unless the server is draining or limit tunnels are open.
func (ts *tunnelSet) add(t *tunnel, limit int) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closing || limit > 0 && len(ts.all) >= limit {
		return false
	}
	if ts.all == nil {
		ts.all = make(map[*tunnel]struct{})
	}
	ts.all[t] = struct{}{}
	return true
}

func (ts *tunnelSet) remove(t *tunnel) {
	ts.mu.Lock()
	delete(ts.all, t)
	ts.mu.Unlock()
}

func (ts *tunnelSet) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.all)
}

// drain refuses new tunnels and lets the open ones run until they end or
// ctx nearly does; then it closes them and waits a moment for them to go.
// Tunnels live as long as their clients and apps want, so a drain with one
// open takes most of its deadline unless the app closes it (as an app told
// to stop does).
func (ts *tunnelSet) drain(ctx context.Context) {
	// The listeners drained after this one (outbound) share ctx's deadline,
	// and tunnels may never end by themselves: they leave the others a
	// tenth of what remains, at most tunnelCloseGrace.
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-min(time.Until(dl)/10, tunnelCloseGrace)))
		defer cancel()
	}
	ts.mu.Lock()
	ts.closing = true
	ts.mu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for ts.count() > 0 {
		select {
		case <-ctx.Done():
			ts.mu.Lock()
			open := make([]*tunnel, 0, len(ts.all))
			for t := range ts.all {
				open = append(open, t)
			}
			ts.mu.Unlock()
			for _, t := range open {
				t.close(closedDrain)
			}
			deadline := time.Now().Add(tunnelCloseGrace)
			for ts.count() > 0 && time.Now().Before(deadline) {
				<-tick.C
			}
			return
		case <-tick.C:
		}
	}
}

// Tunnels is the number of open upgraded connections.
func (s *Server) Tunnels() int { return s.tunnels.count() }
