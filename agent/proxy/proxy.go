package proxy

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/internal/secevent"
)

// Options configure the inbound proxy. All durations and sizes must be
// positive; agent/config validates them.
// AccessLog is how requests are accounted for in the logs
// (WARDEN_ACCESS_LOG).
type AccessLog uint8

const (
	// AccessLogCombined: one line per request. A request the policy
	// decided is the decision log line, finished with the response's
	// fields; any other (refused before the policy, or an allowed cached
	// decision that sampling left out of the decision log) gets an access
	// line.
	AccessLogCombined AccessLog = iota
	// AccessLogSeparate: every request gets an access line, beside its
	// decision log line.
	AccessLogSeparate
	// AccessLogOff: no access line.
	AccessLogOff
)

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
	// AllowUpgrade are the lower-case Upgrade protocols tunnelled to the
	// app once their request is allowed (upgrade.go); empty: none.
	AllowUpgrade []string
	// Hardening configures the checks that keep warden and the app reading
	// the same request.
	Hardening Hardening

	// HTTP2 serves connections that negotiate "h2" in ALPN (h2.go); the
	// listener's TLS config must offer it. NoHTTP1 refuses the others.
	HTTP2   bool
	NoHTTP1 bool
	// H2MaxStreams is SETTINGS_MAX_CONCURRENT_STREAMS (with HTTP2).
	H2MaxStreams int
	// UpstreamProtocol is UpstreamHTTP1 (also ""), UpstreamH2C or
	// UpstreamAuto.
	UpstreamProtocol string
	// UpstreamAffinity gives each inbound HTTP/1.1 connection an app
	// connection of its own (affinity.go).
	UpstreamAffinity bool

	// OwnID returns warden's current SPIFFE ID (the By= of the identity header).
	OwnID func() spiffeid.ID
	// AllowPeer says whether a verified peer may send requests at all; it
	// runs once per connection. Refused peers get 403 on every request.
	AllowPeer func(spiffeid.ID) bool
	// Guard, when set, decides each request of an allowed peer that passed
	// the hardening checks: after the path is normalized and warden's own
	// headers are set, before anything is sent to the app.
	Guard pep.Checker
	// Limiter, when set, is the userspace rate limiter: it decides each
	// connection at accept (in NewListener) and each request.
	Limiter Limiter
	// Tracer, when set, gets a span for each request (agent/trace).
	Tracer Tracer
	// Observer, when set, is told about each request and handshake, for
	// metrics.
	Observer Observer
	// Events, when set, gets the security events of the data path
	// (peer_denied, input_refused, rate_limited, tls_handshake_failed);
	// nil: none are written.
	Events *secevent.Log

	Log zerolog.Logger
	// AccessLog says which requests get an access line (the zero value:
	// AccessLogCombined).
	AccessLog AccessLog
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

// Tracer starts a span per request. Start gets the client's traceparent
// and tracestate (nil when absent) and the time the request arrived; it
// returns the span and, when the client sent no traceparent, the one the
// app must receive (nil: the app gets the client's unchanged).
type Tracer interface {
	Start(traceparent, tracestate []byte, start time.Time) (RequestSpan, []byte)
}

// RequestSpan is one request's span: End records how it went.
type RequestSpan interface {
	End(SpanOutcome)
}

// SpanOutcome is what a request's span records.
type SpanOutcome struct {
	Method    string
	Status    int
	Decided   bool // the pipeline decided (Stage, Revision, Cached, Allowed are set)
	Allowed   bool
	Stage     pep.Stage
	Revision  string
	Cached    bool
	PeerID    string
	RequestID string
	End       time.Time
}

// verdict is what the proxy keeps of the pipeline's verdict for the
// request's span.
type verdict struct {
	decided, allowed bool
	stage            pep.Stage
	revision         string
	cached           bool
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
	tunnels tunnelSet
	conns   sources   // open inbound connections by client address
	h2      *h2Server // nil without Options.HTTP2
	up      upstreams // net/http clients to the app (h2c, and the HTTP/2 path's)
	pins    *pinSlots // nil without Options.UpstreamAffinity
	upSlack time.Duration
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
	s.upSlack = deadlineSlack(opts.UpstreamTimeout)
	poolMax := opts.UpstreamMaxConns
	if opts.UpstreamAffinity && opts.UpstreamProtocol != UpstreamH2C {
		var pinMax int
		if pinMax, poolMax = pinnedShare(opts.UpstreamMaxConns); pinMax > 0 {
			s.pins = &pinSlots{max: int64(pinMax)}
		} else {
			poolMax = opts.UpstreamMaxConns
		}
	}
	s.client = &fasthttp.HostClient{
		Addr: opts.UpstreamAddr,
		// Every pooled connection is checked for unrequested bytes before it
		// carries another request (see upstreamConn).
		Dial:                     func(addr string) (net.Conn, error) { return dialUpstream(addr, s.upstreamDesync, s.upSlack) },
		MaxConns:                 poolMax,
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
		// A response goes out in writes of this size, each one TLS record
		// and one system call: fasthttp's 4 KiB default cut a 64 KiB body
		// into 16 records and 16 writes (18 writes a request, strace -c),
		// 16 KiB (a full record) into 4.
		WriteBufferSize:    responseWriteBuffer,
		MaxRequestBodySize: opts.MaxRequestBodyBytes,
		Concurrency:        opts.MaxConnections,
		CloseOnShutdown:    true,
		// Parse errors never quote the request: it may carry credentials.
		SecureErrorLogMessage: true,
		// Header names stay case-insensitive (the default normalization):
		// with it off, x-forwarded-client-cert would slip past the Del below.
		Logger: FasthttpLogger(opts.Log),
	}
	s.up = newUpstreams(opts)
	if opts.HTTP2 {
		s.h2 = newH2Server(s)
	}
	return s
}

// Serve accepts connections from ln, which must come from NewListener, until
// Shutdown. Its connections report their handshakes to Options.Observer.
func (s *Server) Serve(ln net.Listener) error {
	if l, ok := ln.(*listener); ok {
		l.obs, l.events = s.opts.Observer, s.opts.Events
		l.sources = &s.conns
		l.slack = deadlineSlack(s.opts.ReadTimeout, s.opts.WriteTimeout, s.opts.IdleTimeout)
	}
	if s.h2 != nil {
		return s.h2.serve(ln)
	}
	return s.srv.Serve(ln)
}

// Shutdown stops accepting, lets in-flight requests finish and closes idle
// connections, or gives up when ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	var h2err error
	if s.h2 != nil {
		h2err = s.h2.shutdown(ctx)
	}
	err := s.srv.ShutdownWithContext(ctx)
	s.client.CloseIdleConnections()
	s.tunnels.drain(ctx)
	s.up.closeIdle()
	if err == nil {
		err = h2err
	}
	return err
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	c, ok := ctx.Conn().(*conn)
	if !ok {
		// Not from NewListener: refuse rather than proxy without identity.
		s.reject(ctx, nil, fasthttp.StatusInternalServerError, "internal_error")
		if s.opts.Observer != nil {
			s.opts.Observer.Request(RequestStats{Outcome: OutcomeError, Status: fasthttp.StatusInternalServerError})
		}
		return
	}
	if !c.resolved {
		c.resolve(s.opts.OwnID().String(), s.opts.AllowPeer)
		// fasthttp serves the connection from here on: its deadlines are
		// coalesced (deadline.go).
		c.lazy = c.slack > 0
	}
	// The request was read whole: the next read starts the next one.
	c.firstLine, c.atRequestStart = c.firstLine[:0], true
	c.path = c.path[:0]
	c.verdict = verdict{}
	c.stage, c.forwarded, c.upstream, c.untimed = "", false, 0, false
	c.line.Flush() // a line the last request held and did not finish
	h := &ctx.Request.Header
	var appTraceparent []byte
	if s.opts.Tracer != nil {
		c.span, appTraceparent = s.opts.Tracer.Start(h.Peek("traceparent"), h.Peek("tracestate"), ctx.Time())
	}
	// The header block is read first: the request id depends on it (a
	// client's id is kept only when it sent exactly one, and a valid one).
	bad := s.harden.scan(h.RawHeaders(), &c.reqState)
	s.pickRequestID(&c.reqState, h.Peek(HeaderRequestID))
	if s.opts.Limiter != nil {
		if ok, wait := s.opts.Limiter.AllowRequest(c.addr, &c.limitState); !ok {
			s.tooManyRequests(ctx, c, wait)
			return
		}
	}

	if !c.allowed {
		s.logPeerRefused(&c.peer, &c.reqState, h.Method(), ctx.URI().PathOriginal())
		s.refuse(ctx, c, OutcomeDeny, fasthttp.StatusForbidden, "peer_not_allowed")
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
		s.logPathRefused(&c.peer, &c.reqState, h.Method(), uri.PathOriginal(), err)
		s.refuse(ctx, c, OutcomeInvalid, fasthttp.StatusBadRequest, "bad_request")
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

	if !s.checkUpgrade(ctx, c) {
		return
	}
	closeAfter := h.ConnectionClose()
	s.prepareRequest(h, c)
	if len(c.upgrade) > 0 {
		restoreUpgrade(h, c)
	}
	if appTraceparent != nil {
		h.SetBytesV("traceparent", appTraceparent)
	}
	if s.opts.Guard != nil {
		if !s.guard(ctx, c) {
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

	if len(c.upgrade) > 0 {
		s.upgrade(ctx, c)
		return
	}

	var sent time.Time
	if s.opts.Observer != nil {
		sent = time.Now() // two clock reads a request, only for metrics
	}
	if s.opts.UpstreamProtocol == UpstreamH2C {
		err = s.doH2C(ctx, c)
	} else {
		err = s.roundTrip(ctx, c)
	}
	if s.opts.Observer != nil {
		c.forwarded, c.upstream = true, time.Since(sent)
	}
	if err != nil {
		status, code := upstreamError(err)
		s.log.Error().Str("event", "upstream_error").Err(err).Str("upstream", s.opts.UpstreamAddr).
			Bytes("request_id", c.requestID).Msg("upstream request failed")
		ctx.Response.Reset()
		s.refuse(ctx, c, OutcomeError, status, code)
		return
	}
	RemoveHopByHopResponse(&ctx.Response.Header)
	ctx.Response.Header.SetBytesV(HeaderRequestID, c.requestID)
	if closeAfter {
		ctx.Response.SetConnectionClose()
	}
	s.finish(ctx, c, OutcomeAllow)
}

// guard asks the decision pipeline, and applies its verdict: a refusal with
// its headers for the client, or the headers it sets for the app. It
// reports whether the request goes on to the app.
func (s *Server) guard(ctx *fasthttp.RequestCtx, c *conn) bool {
	h := &ctx.Request.Header
	c.fields = c.fields[:0]
	for k, v := range h.All() {
		c.fields = append(c.fields, pep.Field{Name: k, Value: v})
	}
	uri := ctx.URI()
	v := s.decide(&c.reqState, &c.peer, h.Method(), uri.PathOriginal(), uri.QueryString(), ctx.Request.Body(), nil)
	if v.Status != 0 {
		s.reject(ctx, c, v.Status, refusalCode(v))
		for _, hd := range v.ClientHeaders {
			ctx.Response.Header.Set(hd.Name, hd.Value)
		}
		s.finish(ctx, c, OutcomeDeny)
		return false
	}
	for _, hd := range v.AppHeaders {
		if !ownHeader(hd.Name) {
			// Every copy the client sent goes: fasthttp's Set replaces only
			// the first, and the app might read another.
			h.Del(hd.Name)
			h.Set(hd.Name, hd.Value)
		}
	}
	return true
}

// ownHeaders stay warden's: a verdict's headers never replace them.
var ownHeaders = []string{
	headerXFCC, headerXFF, headerXFProto, HeaderRequestID,
	"Host", "Content-Length", "Transfer-Encoding", headerConnection,
}

func ownHeader(name string) bool {
	for _, o := range ownHeaders {
		if strings.EqualFold(name, o) {
			return true
		}
	}
	return false
}

// responseWriteBuffer is the inbound connections' write buffer: the most
// plaintext one TLS record carries.
const responseWriteBuffer = 16 << 10

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
