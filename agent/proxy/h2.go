package proxy

// The HTTP/2 path: connections whose TLS handshake negotiated "h2" are
// served by golang.org/x/net/http2's server on the handshaken connection,
// and each stream runs the same pipeline as an HTTP/1.1 request (peer,
// hardening, request id, limiter, pep.Checker, metrics, span, access line),
// on the bytes the HTTP/2 server decoded. Connections that negotiated
// "http/1.1", or nothing, go to the fasthttp server unchanged.
//
// HTTP/2 denial-of-service classes and what covers each (README, "HTTP/2
// and gRPC"):
//   - Rapid reset (CVE-2023-44487): x/net/http2 since v0.17.0 runs at most
//     MaxConcurrentStreams handlers per connection and queues a bounded
//     number more; a client resetting streams faster than handlers finish
//     has its connection closed. WARDEN_H2_MAX_STREAMS sets the bound.
//   - CONTINUATION flood (CVE-2024-27316 class, Go's CVE-2023-45288):
//     x/net/http2 since v0.23.0 stops reading a header block past
//     MaxHeaderListSize (from WARDEN_MAX_HEADER_BYTES) and closes the
//     connection instead of decoding without bound.
//   - SETTINGS and PING floods: x/net/http2 closes a connection with more
//     than 10,000 control frames queued for writing (maxQueuedControlFrames).
//   - HPACK bombs: the decoder's dynamic table is bounded by
//     MaxDecoderHeaderTableSize (4,096 bytes), each string by the header
//     list size, and the list by SETTINGS_MAX_HEADER_LIST_SIZE; warden's
//     header count limit (WARDEN_MAX_HEADERS) applies to each stream.
// go.mod requires golang.org/x/net v0.62.0, past all three fixes.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"

	"github.com/warden-sidecar/warden/agent/pep"
)

// ALPN protocol names.
const (
	ProtoH2     = "h2"
	ProtoHTTP11 = "http/1.1"
)

// h2Server is the HTTP/2 side of Server and the dispatch of handshaken
// connections by ALPN.
type h2Server struct {
	s    *Server
	srv  *http2.Server
	base *http.Server // x/net/http2's settings source (MaxHeaderBytes, timeouts) and shutdown hook
	h1   *chanListener
	// slots bounds the connections warden holds outside fasthttp: those in
	// their handshake and those served over HTTP/2 (WARDEN_MAX_CONNECTIONS).
	slots chan struct{}
	open  atomic.Int64
	conns sync.WaitGroup
	// refused counts connections refused for want of a slot;
	// refusedLogged is the Unix second of the last such log line.
	refused       atomic.Uint64
	refusedLogged atomic.Int64
	// ctx ends every HTTP/2 connection when a drain runs out of time.
	ctx    context.Context
	cancel context.CancelFunc
	// mu guards ln and closed: Serve and Shutdown run on different
	// goroutines, and no connection may join conns once a drain waits.
	mu     sync.Mutex
	ln     net.Listener
	closed bool

	up      upstreams
	streams sync.Pool
}

func newH2Server(s *Server) *h2Server {
	o := s.opts
	h := &h2Server{s: s, slots: make(chan struct{}, o.MaxConnections), up: newUpstreams(o)}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.srv = &http2.Server{
		MaxConcurrentStreams: uint32(o.H2MaxStreams),
		// 4 KiB, the protocol's default: the most an HPACK dynamic table
		// may hold, whatever the client's SETTINGS ask for.
		MaxDecoderHeaderTableSize: 4096,
		IdleTimeout:               o.IdleTimeout,
	}
	h.base = &http.Server{
		// SETTINGS_MAX_HEADER_LIST_SIZE: x/net advertises this plus its
		// fixed allowance for HPACK's per-field overhead.
		MaxHeaderBytes: o.MaxHeaderBytes,
		// Per stream in x/net/http2: the request body within ReadTimeout,
		// the response within WriteTimeout.
		ReadTimeout:  o.ReadTimeout,
		WriteTimeout: o.WriteTimeout,
		IdleTimeout:  o.IdleTimeout,
		ErrorLog:     log.New(debugWriter{o.Log}, "", 0),
	}
	if err := http2.ConfigureServer(h.base, h.srv); err != nil {
		panic(err) // only for a TLS config, which base does not have
	}
	h.streams.New = func() any { return &stream{out: make(http.Header)} }
	return h
}

// debugWriter sends x/net/http2's own messages (a client's protocol error,
// a closed connection) to the log at debug level, as FasthttpLogger does
// for fasthttp: the events that matter are logged with names elsewhere.
type debugWriter struct{ log zerolog.Logger }

func (d debugWriter) Write(p []byte) (int, error) {
	d.log.Debug().Str("event", "http2").Str("message", strings.TrimSpace(string(p))).Send()
	return len(p), nil
}

// serve accepts from ln (a NewListener), completes each handshake in a
// goroutine of its own and hands the connection to the protocol it
// negotiated.
func (h *h2Server) serve(ln net.Listener) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return net.ErrClosed
	}
	h.ln = ln
	h.mu.Unlock()
	h.h1 = newChanListener(ln.Addr())
	h1done := make(chan error, 1)
	if !h.s.opts.NoHTTP1 {
		go func() { h1done <- h.s.srv.Serve(h.h1) }()
	}
	for {
		nc, err := ln.Accept()
		if err != nil {
			h.h1.Close()
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		c, ok := nc.(*conn)
		if !ok {
			_ = nc.Close()
			continue
		}
		select {
		case h.slots <- struct{}{}:
		default:
			// As fasthttp's Concurrency: refused rather than queued. Logged
			// at most once a second, with the count: a flood of
			// connections must not become a flood of log lines.
			n := h.refused.Add(1)
			if now := time.Now().Unix(); h.refusedLogged.Swap(now) != now {
				h.s.log.Warn().Str("event", "connection_refused").Str("reason", "max_connections").
					Str("remote_addr", c.RemoteAddr().String()).Uint64("connections_refused_total", n).Send()
			}
			_ = c.Close()
			continue
		}
		go h.dispatch(c)
	}
}

// dispatch runs the handshake under its deadline and sends the connection
// where its ALPN protocol says.
func (h *h2Server) dispatch(c *conn) {
	o := h.s.opts
	_ = c.SetDeadline(time.Now().Add(o.ReadTimeout))
	if err := c.Handshake(); err != nil {
		h.s.logHandshakeFailed(c.addr, err)
		_ = c.Close()
		<-h.slots
		return
	}
	_ = c.SetDeadline(time.Time{})
	switch proto := c.ConnectionState().NegotiatedProtocol; {
	case proto == ProtoH2:
		h.serveConn(c)
		<-h.slots
	case o.NoHTTP1:
		// A client without ALPN, or offering only http/1.1, which TLS
		// lets through to a server offering only h2 (crypto/tls's
		// http/1.1 fallback): refused here.
		h.s.log.Warn().Str("event", "protocol_refused").Str("alpn", proto).
			Str("remote_addr", c.RemoteAddr().String()).Msg("HTTP/1.1 is off (WARDEN_INBOUND_PROTOCOLS)")
		_ = c.Close()
		<-h.slots
	default:
		<-h.slots // fasthttp counts its own (Concurrency)
		if !h.h1.push(c) {
			_ = c.Close()
		}
	}
}

// serveConn serves one HTTP/2 connection until it closes.
func (h *h2Server) serveConn(c *conn) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		_ = c.Close()
		return
	}
	h.conns.Add(1)
	h.mu.Unlock()
	h.open.Add(1)
	defer func() { h.open.Add(-1); h.conns.Done() }()
	// The peer is resolved once, before any stream: streams only read it.
	c.resolve(h.s.opts.OwnID().String(), h.s.opts.AllowPeer)
	h.srv.ServeConn(c, &http2.ServeConnOpts{Context: h.ctx, BaseConfig: h.base, Handler: &h2conn{h: h, c: c}})
}

// shutdown stops accepting, sends GOAWAY on every HTTP/2 connection and
// waits for their streams within ctx; then closes what is left.
func (h *h2Server) shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	ln := h.ln
	h.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	_ = h.base.Shutdown(ctx) // runs x/net's graceful shutdown (GOAWAY) on every connection
	done := make(chan struct{})
	go func() { h.conns.Wait(); close(done) }()
	defer h.up.closeIdle()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		h.cancel()
		return ctx.Err()
	}
}

// chanListener hands fasthttp the connections that negotiated HTTP/1.1.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

// h2conn serves the streams of one HTTP/2 connection.
type h2conn struct {
	h *h2Server
	c *conn
	// limitMu serializes the limiter's per-connection state: streams run
	// concurrently, HTTP/1.1 requests did not.
	limitMu sync.Mutex
}

// stream is one HTTP/2 request's state, pooled.
type stream struct {
	reqState
	arena  []byte // the header names and values as bytes, which reqState and fields alias
	names  []string
	out    http.Header // the header the app receives
	method []byte
	body   []byte
	buf    []byte
	grpc   pep.GRPC
}

func (h *h2Server) getStream() *stream { return h.streams.Get().(*stream) }

func (h *h2Server) putStream(st *stream) {
	st.del, st.xff, st.fields = st.del[:0], st.xff[:0], st.fields[:0]
	st.path, st.target = st.path[:0], st.target[:0]
	st.verdict, st.stage, st.forwarded, st.upstream, st.untimed = verdict{}, "", false, 0, false
	st.line.Flush() // a stream that ended without its answer recorded
	st.span, st.grpc = nil, pep.GRPC{}
	clear(st.out)
	if cap(st.body) > 64<<10 {
		st.body = nil // one large upload must not pin its buffer in the pool
	}
	h.streams.Put(st)
}

// bytesOf appends s to the stream's arena and returns the copy.
func (st *stream) bytesOf(s string) []byte {
	start := len(st.arena)
	st.arena = append(st.arena, s...)
	return st.arena[start:len(st.arena):len(st.arena)]
}

var (
	refuseBodyTooLarge = &refusal{http.StatusRequestEntityTooLarge, "body_too_large", "body over WARDEN_MAX_REQUEST_BODY_BYTES"}
	refuseBodyRead     = &refusal{http.StatusBadRequest, "bad_request", "request body could not be read"}
	refuseHostHeader   = &refusal{http.StatusBadRequest, "bad_request", "Host header differs from :authority"}
	refuseGRPCPath     = &refusal{http.StatusBadRequest, "bad_request", "gRPC path is not /package.Service/Method"}
)

// ServeHTTP runs one stream through the pipeline, in the order the
// HTTP/1.1 path (Server.handle) does, and proxies it to the app.
func (hc *h2conn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, s, c := hc.h, hc.h.s, hc.c
	start := time.Now()
	st := h.getStream()
	defer h.putStream(st)
	st.arena = st.arena[:0]
	st.method = st.bytesOf(r.Method)
	ct := r.Header.Get("Content-Type")
	grpc := isGRPC(ct)
	a := &h2answer{hc: hc, w: w, st: st, grpc: grpc, start: start}

	var appTraceparent []byte
	if s.opts.Tracer != nil {
		st.span, appTraceparent = s.opts.Tracer.Start(headerBytes(r.Header, "Traceparent"), headerBytes(r.Header, "Tracestate"), start)
	}

	// The header fields, in a stable order: the policy input, the decision
	// cache key and the log are the same for the same request. HTTP/2 has
	// no obs-fold, no Transfer-Encoding framing and no CL-TE ambiguity
	// (RFC 9113 §8.2.2: connection-specific fields make a request
	// malformed, and x/net/http2 refuses them before this runs), so the
	// raw-line checks of scan have nothing to find here; the per-field
	// rules are the same code (hardening.field).
	st.names = st.names[:0]
	for k := range r.Header {
		st.names = append(st.names, k)
	}
	slices.Sort(st.names)
	st.del, st.xff, st.requestIDs = st.del[:0], st.xff[:0], 0
	var fs fieldScan
	var bad *refusal
	for _, k := range st.names {
		name := st.bytesOf(k)
		for _, v := range r.Header[k] {
			if bad == nil {
				bad = s.harden.field(name, st.bytesOf(v), &st.reqState, &fs)
			}
		}
	}
	var clientID []byte
	if v := r.Header[HeaderRequestID]; len(v) == 1 {
		clientID = st.bytesOf(v[0])
	}
	s.pickRequestID(&st.reqState, clientID)

	rawPath, rawQuery, _ := strings.Cut(r.RequestURI, "?")
	rawPathB, rawQueryB := st.bytesOf(rawPath), st.bytesOf(rawQuery)
	a.rawPath = rawPathB
	if s.opts.Limiter != nil {
		hc.limitMu.Lock()
		ok, wait := s.opts.Limiter.AllowRequest(c.addr, &c.limitState)
		hc.limitMu.Unlock()
		if !ok {
			s.logRateLimited(&c.peer, &st.reqState, st.method, rawPathB)
			a.tooManyRequests(wait)
			return
		}
	}
	if !c.allowed {
		s.logPeerRefused(&c.peer, &st.reqState, st.method, rawPathB)
		a.refuse(OutcomeDeny, http.StatusForbidden, "peer_not_allowed")
		return
	}
	if bad == nil {
		bad = s.harden.checkMethod(st.method)
	}
	host := st.bytesOf(r.Host)
	if bad == nil {
		bad = s.harden.checkHostTarget(host, st.bytesOf(r.RequestURI), true)
	}
	if hv, ok := r.Header["Host"]; bad == nil && ok && (len(hv) != 1 || !strings.EqualFold(hv[0], r.Host)) {
		// RFC 9113 §8.3.1: a Host that names another authority than
		// :authority makes the request malformed; the app might route by it.
		bad = refuseHostHeader
	}

	// A gRPC body streams; any other is read whole within the limit, as
	// fasthttp reads an HTTP/1.1 body, so that the body checks apply.
	if bad == nil && !grpc {
		bad = h.readBody(r, st)
	}
	if bad == nil {
		bad = s.harden.checkBodyless(st.method, len(st.body) > 0 || r.ContentLength > 0)
	}
	if bad != nil {
		s.logRefused(&c.peer, &st.reqState, bad, st.method, rawPathB)
		a.refuse(OutcomeInvalid, bad.status, bad.code)
		return
	}
	if canon, changed := canonicalHostBytes(host, nil); changed {
		host = canon // rare: an upper-case Host or a root dot
	}

	var err error
	st.path, st.target, err = NormalizePath(st.path[:0], st.target[:0], rawPathB, s.harden.KeepSemicolons)
	if err != nil {
		s.logPathRefused(&c.peer, &st.reqState, st.method, rawPathB, err)
		a.refuse(OutcomeInvalid, http.StatusBadRequest, "bad_request")
		return
	}
	var grpcCall *pep.GRPC
	if grpc {
		svc, m, ok := grpcPath(st.path)
		if !ok {
			s.logRefused(&c.peer, &st.reqState, refuseGRPCPath, st.method, rawPathB)
			a.refuse(OutcomeInvalid, refuseGRPCPath.status, refuseGRPCPath.code)
			return
		}
		st.grpc = pep.GRPC{Service: svc, Method: m}
		grpcCall = &st.grpc
	}
	pathEnd := len(st.target)
	if len(rawQueryB) > 0 {
		if bad := s.harden.checkQuery(rawQueryB); bad != nil {
			s.logRefused(&c.peer, &st.reqState, bad, st.method, rawPathB)
			a.refuse(OutcomeInvalid, bad.status, bad.code)
			return
		}
		st.target = append(st.target, '?')
		st.target = append(st.target, rawQueryB...)
	}

	hc.prepare(r, st, grpc, appTraceparent)
	if s.opts.Guard != nil {
		st.fields = append(st.fields[:0], pep.Field{Name: []byte("Host"), Value: host})
		if !grpc && len(st.body) > 0 {
			// What the app receives, as on HTTP/1.1, where the header is
			// part of the request fasthttp forwards.
			st.fields = append(st.fields, pep.Field{Name: []byte("Content-Length"), Value: strconv.AppendInt(nil, int64(len(st.body)), 10)})
		}
		st.names = st.names[:0]
		for k := range st.out {
			st.names = append(st.names, k)
		}
		slices.Sort(st.names)
		for _, k := range st.names {
			name := st.bytesOf(k)
			for _, v := range st.out[k] {
				st.fields = append(st.fields, pep.Field{Name: name, Value: st.bytesOf(v)})
			}
		}
		var body []byte
		if !grpc && len(st.body) > 0 {
			body = st.body
		}
		v := s.decide(&st.reqState, &c.peer, st.method, rawPathB, rawQueryB, body, grpcCall)
		if v.Status != 0 {
			for _, hd := range v.ClientHeaders {
				w.Header().Set(hd.Name, hd.Value)
			}
			a.refuse(OutcomeDeny, v.Status, refusalCode(v))
			return
		}
		for _, hd := range v.AppHeaders {
			if !ownHeader(hd.Name) {
				st.out[http.CanonicalHeaderKey(hd.Name)] = []string{hd.Value}
			}
		}
	}
	h.forward(a, r, string(host), string(st.target[:pathEnd]), string(rawQueryB))
}

func headerBytes(h http.Header, name string) []byte {
	if v := h[name]; len(v) > 0 {
		return []byte(v[0])
	}
	return nil
}

// readBody reads a non-gRPC request body whole, within
// MaxRequestBodyBytes.
func (h *h2Server) readBody(r *http.Request, st *stream) *refusal {
	st.body = st.body[:0]
	limit := h.s.opts.MaxRequestBodyBytes
	if r.ContentLength > int64(limit) {
		return refuseBodyTooLarge
	}
	if r.ContentLength == 0 {
		return nil
	}
	for {
		if len(st.body) == cap(st.body) {
			st.body = slices.Grow(st.body, min(max(4096, 2*cap(st.body)), limit+1)-len(st.body))
		}
		n, err := r.Body.Read(st.body[len(st.body):cap(st.body)])
		st.body = st.body[:len(st.body)+n]
		if len(st.body) > limit {
			return refuseBodyTooLarge
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return refuseBodyRead
		}
	}
}

// hopByHopH2 are the request fields never forwarded from an HTTP/2 client,
// beside those Connection names (x/net/http2 refuses Connection itself):
// the hop-by-hop ones, framing warden redoes (Content-Length), Host (sent
// as the request's host), an Expect warden answered, and the headers
// warden owns, which it sets below.
var hopByHopH2 = []string{
	"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Connection", "Content-Length", "Host", "Expect",
	headerXFCC, headerXFF, headerXFProto, HeaderRequestID,
}

// prepare builds the header the app receives: the client's fields without
// hop-by-hop ones, those the scan dropped, and every copy of the headers
// warden owns, then warden's own, once each.
func (hc *h2conn) prepare(r *http.Request, st *stream, grpc bool, traceparent []byte) {
	c := hc.c
	out := st.out
	for k, vs := range r.Header {
		out[k] = vs
	}
	if v := out["Connection"]; len(v) > 0 {
		for _, cv := range v {
			forEachToken([]byte(cv), func(name []byte) { delete(out, http.CanonicalHeaderKey(string(name))) })
		}
	}
	for _, k := range hopByHopH2 {
		delete(out, k)
	}
	for _, name := range st.del {
		delete(out, http.CanonicalHeaderKey(string(name)))
	}
	// Cookie fields a client split (RFC 9113 §8.2.3) arrive joined with
	// "; " already: x/net/http2 joins them before the handler runs, so the
	// app reads one Cookie line, as from HTTP/1.1 (TestHTTP2SameDecisionsAsHTTP1).
	if grpc {
		// gRPC servers require "te: trailers" (gRPC's PROTOCOL-HTTP2), the
		// one TE value HTTP/2 allows (RFC 9113 §8.2.2).
		out["Te"] = []string{"trailers"}
	}
	st.scratch = appendXFF(st.scratch[:0], st.xff, c.clientIP)
	out[headerXFF] = []string{string(st.scratch)}
	out[headerXFProto] = []string{"https"}
	out[HeaderRequestID] = []string{string(st.requestID)}
	// Whatever identity header the client sent is a forgery: only warden
	// may state who the peer is.
	out[headerXFCC] = []string{string(c.xfcc)}
	if traceparent != nil {
		out["Traceparent"] = []string{string(traceparent)}
	}
}

// forward sends the request to the app and streams the answer back,
// trailers included.
func (h *h2Server) forward(a *h2answer, r *http.Request, host, path, query string) {
	s, st := h.s, a.st
	timeout := s.opts.UpstreamTimeout
	if a.grpc {
		// gRPC's deadline, capped by warden's own.
		if d, ok := grpcTimeout(r.Header.Get("Grpc-Timeout")); ok && d < timeout {
			timeout = d
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	var body io.ReadCloser = http.NoBody
	contentLength := int64(0)
	switch {
	case a.grpc:
		// Streamed both ways: the client's window refills only as the app
		// takes the messages (back-pressure through both flow controls).
		body, contentLength = r.Body, r.ContentLength
	case len(st.body) > 0:
		body, contentLength = io.NopCloser(bytes.NewReader(st.body)), int64(len(st.body))
	}
	// No Trailer field: a client's request trailers are never forwarded,
	// as dropTrailers drops them on HTTP/1.1; they would reach the app
	// after every check ran.
	req := &http.Request{
		Method: string(st.method),
		// Opaque: the app receives exactly the path warden normalized (and
		// the policy decided on), not net/url's re-encoding of it.
		URL:           &url.URL{Scheme: "http", Host: s.opts.UpstreamAddr, Opaque: path, RawQuery: query},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        st.out,
		Body:          body,
		ContentLength: contentLength,
		Host:          host,
	}
	req = req.WithContext(ctx)
	if contentLength == 0 && body == http.NoBody {
		req.Body = nil
	}
	sent := time.Now()
	resp, err := h.up.pick(a.grpc).RoundTrip(req)
	st.forwarded, st.upstream = true, time.Since(sent)
	if err != nil && r.Context().Err() != nil {
		// The client reset the stream or went away: nobody to answer, and
		// nothing the app did wrong. Recorded as nginx does, with 499.
		s.log.Debug().Str("event", "client_gone").Bytes("request_id", st.requestID).Send()
		a.status = statusClientGone
		a.finish(OutcomeError)
		return
	}
	if err != nil {
		status, code := transportError(ctx, err)
		s.log.Error().Str("event", "upstream_error").Err(err).Str("upstream", s.opts.UpstreamAddr).
			Bytes("request_id", st.requestID).Msg("upstream request failed")
		a.refuse(OutcomeError, status, code)
		return
	}
	defer resp.Body.Close()
	wh := a.w.Header()
	for k, vs := range resp.Header {
		wh[k] = vs
	}
	removeHopByHopHTTP(wh)
	wh[HeaderRequestID] = []string{string(st.requestID)}
	a.w.WriteHeader(resp.StatusCode)
	a.status, a.bytesOut = resp.StatusCode, int(resp.ContentLength)
	// The response head is out: the request counts as answered now, as on
	// the HTTP/1.1 path (its body streams after).
	a.finish(OutcomeAllow)

	if len(st.buf) == 0 {
		st.buf = make([]byte, 32<<10)
	}
	flusher, _ := a.w.(http.Flusher)
	var copyErr error
	for {
		n, rerr := resp.Body.Read(st.buf)
		if n > 0 {
			if _, werr := a.w.Write(st.buf[:n]); werr != nil {
				return // the client went away: the app's stream is reset by the deferred Close
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			copyErr = rerr
			break
		}
	}
	if copyErr != nil {
		s.log.Error().Str("event", "upstream_error").Err(copyErr).Str("upstream", s.opts.UpstreamAddr).
			Bytes("request_id", st.requestID).Msg("upstream response failed mid-body")
		if !a.grpc {
			// The client must not take a cut body for a whole one.
			panic(http.ErrAbortHandler)
		}
		if _, ok := resp.Trailer["Grpc-Status"]; !ok {
			status, code := transportError(ctx, copyErr)
			wh[http.TrailerPrefix+"Grpc-Status"] = []string{strconv.Itoa(GRPCStatus(status))}
			wh[http.TrailerPrefix+"Grpc-Message"] = []string{code}
			return
		}
	}
	for k, vs := range resp.Trailer {
		wh[http.TrailerPrefix+k] = vs
	}
}

// statusClientGone is the access log's and metrics' status of a stream the
// client reset before the app answered (nginx's 499).
const statusClientGone = 499

// removeHopByHopHTTP removes the hop-by-hop fields of an app's response.
func removeHopByHopHTTP(h http.Header) {
	for _, v := range h["Connection"] {
		forEachToken([]byte(v), func(name []byte) { delete(h, http.CanonicalHeaderKey(string(name))) })
	}
	delete(h, "Connection")
	for _, name := range hopByHop {
		delete(h, name)
	}
}

// transportError maps a failed round trip to the app to what clients see,
// as upstreamError does for fasthttp's errors.
//
// A failure at or after the deadline is the deadline's, whatever form it
// took: the app got the same grpc-timeout and a gRPC server resets the
// stream when it runs out, which can reach warden before warden's own
// timer has fired on a busy machine. The app's clock started after
// warden's, so its reset never comes before warden's deadline.
func transportError(ctx context.Context, err error) (int, string) {
	var netErr net.Error
	dl, hasDeadline := ctx.Deadline()
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(ctx.Err(), context.DeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout(), hasDeadline && !time.Now().Before(dl):
		return http.StatusGatewayTimeout, "upstream_timeout"
	}
	return http.StatusBadGateway, "upstream_unavailable"
}

// h2answer answers one stream and records it: the Observer, the span and
// the access line, once.
type h2answer struct {
	hc       *h2conn
	w        http.ResponseWriter
	st       *stream
	grpc     bool
	start    time.Time
	rawPath  []byte
	status   int
	bytesOut int
	done     bool
}

// refuse answers in the app's stead: a gRPC status for a gRPC call, the
// JSON error body for anything else.
func (a *h2answer) refuse(o Outcome, status int, code string) {
	if a.grpc {
		writeGRPCRefusal(a.w, status, code, a.st.requestID)
	} else {
		h := a.w.Header()
		h["Content-Type"] = []string{"application/json"}
		h[HeaderRequestID] = []string{string(a.st.requestID)}
		if status == http.StatusMethodNotAllowed && a.hc.h.s.harden.allow != "" {
			h["Allow"] = []string{a.hc.h.s.harden.allow}
		}
		a.w.WriteHeader(status)
		a.st.scratch = appendErrorBody(a.st.scratch[:0], code, a.st.requestID)
		_, _ = a.w.Write(a.st.scratch)
	}
	a.status, a.bytesOut = status, len(a.st.scratch)
	if a.grpc {
		a.bytesOut = 0
	}
	a.finish(o)
}

// appendErrorBody is the JSON body of a refusal, as Server.reject writes
// it for HTTP/1.1.
func appendErrorBody(dst []byte, code string, id []byte) []byte {
	dst = append(dst, `{"error":"`...)
	dst = append(dst, code...)
	dst = append(dst, `","request_id":"`...)
	dst = append(dst, id...)
	return append(dst, "\"}\n"...)
}

// tooManyRequests answers 429 with Retry-After (RESOURCE_EXHAUSTED for
// gRPC, with the same header).
func (a *h2answer) tooManyRequests(wait time.Duration) {
	secs := int((wait + time.Second - 1) / time.Second)
	a.w.Header()["Retry-After"] = []string{strconv.Itoa(max(secs, 1))}
	a.refuse(OutcomeRateLimit, http.StatusTooManyRequests, "rate_limited")
}

// finish records the stream once its answer's head is out.
func (a *h2answer) finish(o Outcome) {
	if a.done {
		return
	}
	a.done = true
	s, st, c := a.hc.h.s, a.st, a.hc.c
	took := time.Since(a.start)
	s.observe(&st.reqState, o, a.status, took)
	if st.span != nil {
		s.endSpanOf(&c.peer, &st.reqState, st.method, a.status)
	}
	path := st.path
	if len(path) == 0 {
		path = a.rawPath
	}
	s.accessLine(&c.peer, &st.reqState, st.method, path, a.status, took, len(st.body), a.bytesOut)
}
