package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/internal/redact"
)

// Options configure the inbound proxy. All durations and sizes must be
// positive; agent/config validates them.
type Options struct {
	UpstreamAddr        string
	UpstreamTimeout     time.Duration
	UpstreamMaxConns    int
	ReadTimeout         time.Duration
	WriteTimeout        time.Duration
	IdleTimeout         time.Duration
	MaxHeaderBytes      int
	MaxRequestBodyBytes int
	MaxConnections      int
	// HandshakeTimeout bounds the TLS handshake (0: only ReadTimeout does).
	HandshakeTimeout time.Duration
	// Hardening configures the checks that keep warden and the app reading
	// the same request.
	Hardening Hardening

	// OwnID returns warden's current SPIFFE ID (the By= of the identity header).
	OwnID func() spiffeid.ID
	// AllowPeer says whether a verified peer may send requests at all; it
	// runs once per connection. Refused peers get 403 on every request.
	AllowPeer func(spiffeid.ID) bool
	// Guard, when set, decides each request of an allowed peer.
	Guard Guard
	// Limiter, when set, is the userspace rate limiter: it decides each
	// connection at accept (in NewListener) and each request.
	Limiter Limiter

	Log zerolog.Logger
}

// Guard decides whether a request from an allowed peer may reach the app.
// Check runs after the path is normalized and warden's own headers are set,
// and before anything is sent to the app. It may add headers for the app to
// ctx.Request.Header when it allows; it must not keep ctx or req after it
// returns.
type Guard interface {
	Check(ctx *fasthttp.RequestCtx, req *Request) Verdict
}

// Limiter is the userspace rate limiter's hook (agent/ratelimit.Userspace).
type Limiter interface {
	// AllowConn runs at accept, before the TLS handshake; false closes the
	// connection at once.
	AllowConn(ip netip.Addr) bool
	// AllowRequest runs first for each request; false answers 429 with
	// Retry-After. state is the connection's own slot for the limiter's
	// per-connection state (its request bucket): zero when the connection
	// is accepted, written only by the limiter, never read by the proxy.
	// A plain word rather than the limiter's type, so that the proxy does
	// not import the limiter (and through it the eBPF loader).
	AllowRequest(ip netip.Addr, state *uint64) (ok bool, retryAfter time.Duration)
}

// Request is what warden established about a request; valid during Check.
type Request struct {
	ID              []byte // X-Request-Id
	Path            []byte // normalized, percent-decoded path
	PeerID          string // verified SPIFFE ID of the client
	PeerTrustDomain string
	ClientIP        string
}

// Verdict is a Guard's answer. The zero Verdict allows the request.
type Verdict struct {
	Status int    // 0 allows; otherwise the status the client gets
	Code   string // the "error" of the JSON body; "forbidden" when empty
}

// Server is the inbound proxy.
type Server struct {
	opts    Options
	srv     *fasthttp.Server
	client  *fasthttp.HostClient
	ids     *RequestIDs
	log     zerolog.Logger
	harden  *hardening
	desyncs atomic.Uint64
}

// Headers warden owns on the way to the app.
const (
	headerXFCC    = "X-Forwarded-Client-Cert"
	headerXFF     = "X-Forwarded-For"
	headerXFProto = "X-Forwarded-Proto"
	// HeaderRequestID carries the request id to the app and back.
	HeaderRequestID  = "X-Request-Id"
	headerConnection = "Connection"
	headerExpect     = "Expect"
)

var (
	schemeHTTP       = []byte("http")
	protoHTTP11      = []byte("HTTP/1.1")
	headerRetryAfter = []byte("Retry-After")
	headerAllow      = []byte("Allow")
)

// hopByHop are the headers that describe one connection, not the message
// (RFC 9110 section 7.6.1), plus the non-standard ones proxies also drop.
var hopByHop = []string{
	"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// New builds the proxy; Serve starts it.
func New(opts Options) *Server {
	s := &Server{opts: opts, ids: NewRequestIDs(), log: opts.Log, harden: newHardening(opts.Hardening)}
	s.client = &fasthttp.HostClient{
		Addr: opts.UpstreamAddr,
		// Every pooled connection is checked for unrequested bytes before it
		// carries another request (see upstreamConn).
		Dial:                     func(addr string) (net.Conn, error) { return dialUpstream(addr, s.upstreamDesync) },
		MaxConns:                 opts.UpstreamMaxConns,
		MaxConnWaitTimeout:       opts.UpstreamTimeout,
		MaxIdleConnDuration:      opts.IdleTimeout,
		ReadBufferSize:           opts.MaxHeaderBytes,
		NoDefaultUserAgentHeader: true,
		// The server already normalized the path once; the app must see
		// exactly the path warden decided on.
		DisablePathNormalizing: true,
		// Large downloads flow through instead of being buffered whole.
		StreamResponseBody: true,
		// A request that may have reached the app is never sent twice; one
		// refused before a byte was written (a pooled connection found
		// desynchronized or closed) is tried on another connection.
		RetryIfErr:                func(_ *fasthttp.Request, n int, err error) (bool, bool) { return false, retryUnsent(nil, n, err) },
		MaxIdemponentCallAttempts: maxUnsentAttempts,
		// Errors never quote the bytes of a request or response.
		SecureErrorLogMessage: true,
	}
	s.srv = &fasthttp.Server{
		Handler:               s.handle,
		ErrorHandler:          s.handleParseError,
		Name:                  "",
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		ReadTimeout:           opts.ReadTimeout,
		WriteTimeout:          opts.WriteTimeout,
		IdleTimeout:           opts.IdleTimeout,
		ReadBufferSize:        opts.MaxHeaderBytes,
		MaxRequestBodySize:    opts.MaxRequestBodyBytes,
		Concurrency:           opts.MaxConnections,
		CloseOnShutdown:       true,
		// Parse errors never quote the request: it may carry credentials.
		SecureErrorLogMessage: true,
		// Header names stay case-insensitive (the default normalization):
		// with it off, x-forwarded-client-cert would slip past the Del below.
		Logger: fasthttpLogger{opts.Log},
	}
	return s
}

// Serve accepts connections from ln, which must come from NewListener, until
// Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(ln)
}

// Shutdown stops accepting, lets in-flight requests finish and closes idle
// connections, or gives up when ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.ShutdownWithContext(ctx)
	s.client.CloseIdleConnections()
	return err
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	c, ok := ctx.Conn().(*conn)
	if !ok {
		// Not from NewListener: refuse rather than proxy without identity.
		s.reject(ctx, nil, fasthttp.StatusInternalServerError, "internal_error")
		return
	}
	if !c.resolved {
		c.resolve(s.opts.OwnID().String(), s.opts.AllowPeer)
	}
	// The request was read whole: the next read starts the next one.
	c.firstLine, c.atRequestStart = c.firstLine[:0], true
	c.path = c.path[:0]
	h := &ctx.Request.Header
	// The header block is read first: the request id depends on it (a
	// client's id is kept only when it sent exactly one, and a valid one).
	bad := s.harden.scan(h.RawHeaders(), c)
	c.requestID = c.requestID[:0]
	if id := h.Peek(HeaderRequestID); c.requestIDs == 1 && ValidRequestID(id) {
		c.requestID = append(c.requestID, id...)
	} else {
		c.requestID = s.ids.Append(c.requestID)
	}
	if s.opts.Limiter != nil {
		if ok, wait := s.opts.Limiter.AllowRequest(c.addr, &c.limitState); !ok {
			s.tooManyRequests(ctx, c, wait)
			return
		}
	}

	if !c.allowed {
		s.log.Warn().Str("event", "peer_refused").Str("peer_id", c.peerStr).
			Str("client_ip", c.clientIP).Bytes("request_id", c.requestID).Msg("peer not allowed")
		s.refuse(ctx, c, fasthttp.StatusForbidden, "peer_not_allowed")
		return
	}
	if bad == nil {
		bad = s.harden.checkRequestLine(h)
	}
	if bad == nil {
		bad = s.harden.checkHost(h)
	}
	if bad == nil {
		bad = s.harden.checkBody(h)
	}
	if bad == nil {
		bad = s.harden.dropTrailers(h, h.RawHeaders())
	}
	if bad != nil {
		s.refuseRequest(ctx, c, bad)
		return
	}
	c.scratch = canonicalHost(h, c.scratch)

	uri := ctx.URI()
	var err error
	c.path, c.target, err = NormalizePath(c.path[:0], c.target[:0], uri.PathOriginal(), s.harden.KeepSemicolons)
	if err != nil {
		s.log.Warn().Str("event", "path_refused").Err(err).Bytes("raw_path", redact.Path(uri.PathOriginal())).
			Str("peer_id", c.peerStr).Bytes("request_id", c.requestID).Msg("ambiguous request path")
		s.refuse(ctx, c, fasthttp.StatusBadRequest, "bad_request")
		return
	}
	if q := uri.QueryString(); len(q) > 0 {
		if bad := s.harden.checkQuery(q); bad != nil {
			s.refuseRequest(ctx, c, bad)
			return
		}
		c.target = append(c.target, '?')
		c.target = append(c.target, q...)
	}

	closeAfter := h.ConnectionClose()
	s.prepareRequest(h, c)
	if s.opts.Guard != nil {
		// Kept in conn: a fresh Request passed through the interface would
		// escape to the heap on every request.
		c.req = Request{ID: c.requestID, Path: c.path, PeerID: c.peerStr, PeerTrustDomain: c.peerTD, ClientIP: c.clientIP}
		if v := s.opts.Guard.Check(ctx, &c.req); v.Status != 0 {
			code := v.Code
			if code == "" {
				code = "forbidden"
			}
			s.refuse(ctx, c, v.Status, code)
			return
		}
	}
	// The app receives exactly the path warden normalized (and the policy
	// decided on), over http: the client spoke https to warden.
	ctx.Request.SetRequestURIBytes(c.target)
	u := ctx.Request.URI()
	u.SetSchemeBytes(schemeHTTP)
	// The Host checked above is the one sent, and never a source of
	// credentials: fasthttp would otherwise derive Host from the parsed URI
	// and an Authorization header from its userinfo.
	u.SetUsernameBytes(nil)
	u.SetPasswordBytes(nil)
	ctx.Request.UseHostHeader = true
	if len(h.Host()) == 0 {
		h.Set("Host", s.opts.UpstreamAddr) // HTTP/1.0 without Host; the app gets HTTP/1.1
	}

	err = s.client.DoTimeout(&ctx.Request, &ctx.Response, s.opts.UpstreamTimeout)
	if err != nil {
		status, code := upstreamError(err)
		s.log.Error().Str("event", "upstream_error").Err(err).Str("upstream", s.opts.UpstreamAddr).
			Bytes("request_id", c.requestID).Msg("upstream request failed")
		ctx.Response.Reset()
		s.refuse(ctx, c, status, code)
		return
	}
	RemoveHopByHopResponse(&ctx.Response.Header)
	ctx.Response.Header.SetBytesV(HeaderRequestID, c.requestID)
	if closeAfter {
		ctx.Response.SetConnectionClose()
	}
	s.access(ctx, c)
}

// maxUnsentAttempts bounds how many pooled connections one request may draw
// and find unusable (desynchronized or closed by the app) before warden
// gives up with 502.
const maxUnsentAttempts = 8

// upstreamDesync logs and counts an app connection dropped because it held
// bytes nobody asked for.
func (s *Server) upstreamDesync(pending int) {
	n := s.desyncs.Add(1)
	s.log.Warn().Str("event", "upstream_desync").Str("upstream", s.opts.UpstreamAddr).
		Int("pending_bytes_min", pending).Uint64("upstream_desyncs_total", n).
		Msg("app connection held bytes nobody asked for (a smuggled request's response?): closed, never reused")
}

// UpstreamDesyncs is how many app connections were dropped for holding
// unrequested bytes since the server started.
func (s *Server) UpstreamDesyncs() uint64 { return s.desyncs.Load() }

// refuseRequest answers a request that failed a hardening check, and logs
// why (the reason, the method and the path; never a header value).
func (s *Server) refuseRequest(ctx *fasthttp.RequestCtx, c *conn, r *refusal) {
	s.log.Warn().Str("event", "request_refused").Str("reason", r.reason).Int("status", r.status).
		Bytes("method", ctx.Method()).Bytes("raw_path", redact.Path(ctx.URI().PathOriginal())).
		Str("peer_id", c.peerStr).Bytes("request_id", c.requestID).Msg("request refused before policy")
	s.reject(ctx, c, r.status, r.code)
	if r == refuseMethod && s.harden.allow != "" {
		ctx.Response.Header.SetCanonical(headerAllow, []byte(s.harden.allow))
	}
	// A client that sent a request two parsers could read differently does
	// not get to send more on this connection, whose framing is in doubt.
	ctx.SetConnectionClose()
	s.access(ctx, c)
}

// prepareRequest turns the client's request into the one the app receives.
// Every header warden sets is deleted first, all copies of it: fasthttp's
// Set replaces only the first, and apps differ in which copy they read
// (Express and Werkzeug take the rightmost X-Forwarded-For).
func (s *Server) prepareRequest(h *fasthttp.RequestHeader, c *conn) {
	RemoveHopByHopRequest(h)
	h.ResetConnectionClose()
	for _, name := range c.del {
		h.DelBytes(name)
	}
	// The body was read whole, after warden answered any 100-continue
	// itself: the app must not answer it again.
	h.Del(headerExpect)
	h.SetProtocolBytes(protoHTTP11)

	// X-Forwarded-For: every client value, in order, then this hop's client.
	c.scratch = c.scratch[:0]
	for _, v := range c.xff {
		c.scratch = append(c.scratch, v...)
		c.scratch = append(c.scratch, ", "...)
	}
	c.scratch = append(c.scratch, c.clientIP...)
	h.Del(headerXFF)
	h.SetBytesV(headerXFF, c.scratch)

	h.Del(headerXFProto)
	h.Set(headerXFProto, "https")
	h.Del(HeaderRequestID)
	h.SetBytesV(HeaderRequestID, c.requestID)
	// Whatever identity header the client sent is a forgery: only warden
	// may state who the peer is.
	h.Del(headerXFCC)
	h.SetBytesV(headerXFCC, c.xfcc)
}

// RemoveHopByHopRequest deletes the headers that describe the client's
// connection, including those its Connection header names.
func RemoveHopByHopRequest(h *fasthttp.RequestHeader) {
	if v := h.Peek(headerConnection); len(v) > 0 {
		forEachToken(v, func(name []byte) { h.DelBytes(name) })
		h.Del(headerConnection)
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// RemoveHopByHopResponse does the same for a response on its way back.
func RemoveHopByHopResponse(h *fasthttp.ResponseHeader) {
	if v := h.Peek(headerConnection); len(v) > 0 {
		forEachToken(v, func(name []byte) { h.DelBytes(name) })
	}
	for _, name := range hopByHop {
		if name != "Transfer-Encoding" { // fasthttp frames the body itself
			h.Del(name)
		}
	}
}

// forEachToken calls fn with each comma-separated, trimmed token of v.
func forEachToken(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		var tok []byte
		if i := indexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		for len(tok) > 0 && (tok[0] == ' ' || tok[0] == '\t') {
			tok = tok[1:]
		}
		for len(tok) > 0 && (tok[len(tok)-1] == ' ' || tok[len(tok)-1] == '\t') {
			tok = tok[:len(tok)-1]
		}
		if len(tok) > 0 {
			fn(tok)
		}
	}
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// upstreamError maps a client error to the status and code clients see.
func upstreamError(err error) (int, string) {
	var netErr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return fasthttp.StatusGatewayTimeout, "upstream_timeout"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return fasthttp.StatusServiceUnavailable, "upstream_overloaded"
	default:
		return fasthttp.StatusBadGateway, "upstream_unavailable"
	}
}

// handleParseError answers requests fasthttp could not read.
func (s *Server) handleParseError(ctx *fasthttp.RequestCtx, err error) {
	status, code := fasthttp.StatusBadRequest, "bad_request"
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		status, code = fasthttp.StatusRequestHeaderFieldsTooLarge, "headers_too_large"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, code = fasthttp.StatusRequestEntityTooLarge, "body_too_large"
		if c, ok := ctx.Conn().(*conn); ok {
			c.lingerOnClose = true
		}
	}
	c, _ := ctx.Conn().(*conn)
	if c == nil {
		s.reject(ctx, nil, status, code)
		ctx.SetConnectionClose()
		return
	}
	if !c.ConnectionState().HandshakeComplete {
		// No HTTP was spoken: there is nobody to answer, only a log line.
		s.log.Warn().Str("event", "tls_handshake_failed").Err(err).
			Str("remote_addr", c.RemoteAddr().String()).Msg("inbound TLS handshake failed")
		ctx.SetConnectionClose()
		return
	}
	if !c.resolved {
		c.resolve(s.opts.OwnID().String(), s.opts.AllowPeer)
	}
	c.requestID = s.ids.Append(c.requestID[:0])
	// Only the class of the error, the method and the path: fasthttp's
	// message may quote the raw request, credentials included.
	method, path := c.requestLine()
	s.log.Warn().Str("event", "bad_request").Str("error_class", parseErrorClass(err)).Int("status", status).
		Bytes("method", method).Bytes("raw_path", redact.Path(path)).
		Str("peer_id", c.peerStr).Bytes("request_id", c.requestID).Msg("request refused before proxying")
	s.refuse(ctx, c, status, code)
	ctx.SetConnectionClose()
}

// parseErrorClass names what kind of request fasthttp could not read,
// without a byte of it. fasthttp exports types for few of its errors, so the
// rest are told apart by the fixed part of their messages; an unknown one is
// "malformed_request".
func parseErrorClass(err error) string {
	var small *fasthttp.ErrSmallBuffer
	var chunk fasthttp.ErrBrokenChunk
	switch {
	case errors.As(err, &small):
		return "headers_too_large"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return "body_too_large"
	case errors.As(err, &chunk):
		return "malformed_chunked_body"
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	}
	msg := err.Error()
	for _, c := range parseErrorClasses {
		if strings.Contains(msg, c.text) {
			return c.class
		}
	}
	return "malformed_request"
}

var parseErrorClasses = []struct{ text, class string }{
	{"too many host headers", "duplicate_host"},
	{"missing required host", "missing_host"},
	{"mime header", "malformed_header"},
	{"first line", "malformed_request_line"},
	{"method", "malformed_request_line"},
	{"Content-Length", "malformed_content_length"},
	{"Transfer-Encoding", "malformed_transfer_encoding"},
	{"chunk", "malformed_chunked_body"},
}

// tooManyRequests answers 429 with the seconds until the connection may
// send again (rounded up: Retry-After is whole seconds).
func (s *Server) tooManyRequests(ctx *fasthttp.RequestCtx, c *conn, wait time.Duration) {
	secs := int((wait + time.Second - 1) / time.Second)
	s.reject(ctx, c, fasthttp.StatusTooManyRequests, "rate_limited")
	ctx.Response.Header.SetCanonical(headerRetryAfter, strconv.AppendInt(c.scratch[:0], int64(max(secs, 1)), 10))
	s.access(ctx, c)
}

// refuse answers with an error instead of the app, and logs the access.
func (s *Server) refuse(ctx *fasthttp.RequestCtx, c *conn, status int, code string) {
	s.reject(ctx, c, status, code)
	s.access(ctx, c)
}

// reject writes the small JSON error body clients get; details stay in the log.
func (s *Server) reject(ctx *fasthttp.RequestCtx, c *conn, status int, code string) {
	var id []byte
	if c != nil {
		id = c.requestID
	} else {
		id = s.ids.Append(nil)
	}
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.Header.SetBytesV(HeaderRequestID, id)
	ctx.Response.ResetBody()
	ctx.Response.AppendBodyString(`{"error":"`)
	ctx.Response.AppendBodyString(code)
	ctx.Response.AppendBodyString(`","request_id":"`)
	ctx.Response.AppendBody(id)
	ctx.Response.AppendBodyString("\"}\n")
}

// access writes the one access-log line per request.
func (s *Server) access(ctx *fasthttp.RequestCtx, c *conn) {
	e := s.log.Info()
	if !e.Enabled() {
		return
	}
	// Refused before normalization, a request is logged with its raw path.
	path := c.path
	if len(path) == 0 {
		path = ctx.URI().PathOriginal()
	}
	var dur float64
	if t := ctx.Time(); !t.IsZero() {
		dur = time.Since(t).Seconds()
	}
	e.Str("event", "access").
		Bytes("method", ctx.Method()).
		Bytes("path", redact.Path(path)).
		Int("status", ctx.Response.StatusCode()).
		Str("peer_id", c.peerStr).
		Str("client_ip", c.clientIP).
		Float64("duration_s", dur).
		Int("bytes_in", len(ctx.Request.Body())).
		Int("bytes_out", ctx.Response.Header.ContentLength()).
		Bytes("request_id", c.requestID).
		Send()
}

// fasthttpLogger sends fasthttp's own messages to the component logger at
// debug level: the errors they describe (failed handshakes, bad requests)
// are already logged above with an event name and the request id. Only the
// format is logged: its arguments may hold bytes of a request.
type fasthttpLogger struct{ log zerolog.Logger }

func (l fasthttpLogger) Printf(format string, _ ...any) {
	l.log.Debug().Str("event", "fasthttp").Str("format", format).Send()
}
