package outbound

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/proxy"
	"github.com/warden-sidecar/warden/agent/signature"
	"github.com/warden-sidecar/warden/internal/redact"
	"github.com/warden-sidecar/warden/spiffe"
)

// Route sends requests whose Host is Host to Addr, which must present ID.
type Route struct {
	Host string // lower case; "name" matches any port, "name:port" only that port
	Addr string // host:port of the destination's warden
	ID   spiffeid.ID
	// HTTP2: the destination is spoken to in HTTP/2 (ALPN h2, required);
	// otherwise HTTP/1.1.
	HTTP2 bool
}

// Options configure the outbound proxy. Durations and sizes must be
// positive; agent/config validates them.
type Options struct {
	Routes []Route
	// SVID is presented to destinations; Bundles verifies them (own and
	// federated trust domains). Both are read at each new handshake.
	SVID    x509svid.Source
	Bundles x509bundle.Source

	Timeout             time.Duration // whole exchange with the destination
	MaxConnsPerRoute    int
	ReadTimeout         time.Duration // the app sending a request
	WriteTimeout        time.Duration
	IdleTimeout         time.Duration
	MaxHeaderBytes      int
	MaxRequestBodyBytes int
	MaxConnections      int

	// Signer, when set, signs each request before it is sent (RFC 9421):
	// WARDEN_OUTBOUND_SIGNING_KEY.
	Signer func() (*signature.Signer, error)

	Log zerolog.Logger
}

// Server is the outbound proxy.
type Server struct {
	opts   Options
	srv    *fasthttp.Server
	h2     atomic.Pointer[http.Server] // the h2c side, set by Serve (h2.go)
	routes map[string]*route
	ids    *proxy.RequestIDs
	log    zerolog.Logger
}

type route struct {
	Route
	id     string
	client *fasthttp.HostClient // HTTP/1.1 apps to HTTP/1.1 routes
	// rt carries the rest: h2c apps' requests, and every request of an h2
	// route (h2.go).
	rt *http.Transport
}

// Status codes and error codes the app gets instead of a destination's answer.
const (
	codeUnknownDestination = "unknown_destination"     // 403: Host has no route
	codeConnect            = "connect_not_supported"   // 405: CONNECT tunnels are not relayed
	codeIdentityMismatch   = "destination_unverified"  // 502: the server is not the route's SPIFFE ID
	codeUnavailable        = "destination_unavailable" // 502: connect, TLS or protocol failure
	codeOverloaded         = "destination_overloaded"  // 503: MaxConnsPerRoute busy
	codeTimeout            = "destination_timeout"     // 504: no whole answer within Timeout
)

var schemeHTTPS = []byte("https")

// errUnexpectedPeer marks a destination that proved an identity other than
// its route's; the TLS handshake fails with it.
var errUnexpectedPeer = errors.New("outbound: destination presented an unexpected SPIFFE ID")

// New builds the proxy; Serve starts it.
func New(opts Options) *Server {
	s := &Server{opts: opts, routes: make(map[string]*route, len(opts.Routes)), ids: proxy.NewRequestIDs(), log: opts.Log}
	for _, r := range opts.Routes {
		rt := &route{Route: r, id: r.ID.String()}
		rt.client = &fasthttp.HostClient{
			Addr:                     r.Addr,
			IsTLS:                    true,
			TLSConfig:                spiffe.ClientTLSConfig(opts.SVID, opts.Bundles, authorizeExactly(r.ID)),
			MaxConns:                 opts.MaxConnsPerRoute,
			MaxConnWaitTimeout:       opts.Timeout,
			MaxIdleConnDuration:      opts.IdleTimeout,
			ReadBufferSize:           opts.MaxHeaderBytes,
			WriteTimeout:             opts.Timeout, // bounds the TLS handshake too
			NoDefaultUserAgentHeader: true,
			// The destination's warden normalizes and decides on the path
			// the app sent, not on one rewritten here.
			DisablePathNormalizing: true,
			StreamResponseBody:     true,
			// A request that may have reached the destination is never sent twice.
			RetryIfErr:            func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
			SecureErrorLogMessage: true,
		}
		rt.rt = s.transport(r)
		s.routes[r.Host] = rt
	}
	s.srv = &fasthttp.Server{
		Handler:               s.handle,
		ErrorHandler:          s.handleParseError,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		ReadTimeout:           opts.ReadTimeout,
		WriteTimeout:          opts.WriteTimeout,
		IdleTimeout:           opts.IdleTimeout,
		ReadBufferSize:        opts.MaxHeaderBytes,
		MaxRequestBodySize:    opts.MaxRequestBodyBytes,
		Concurrency:           opts.MaxConnections,
		CloseOnShutdown:       true,
		// Neither parse errors nor fasthttp's own messages may quote the
		// app's request: it carries the app's credentials for the
		// destination.
		SecureErrorLogMessage: true,
		Logger:                proxy.FasthttpLogger(opts.Log),
	}
	return s
}

// authorizeExactly is tlsconfig.AuthorizeID with an error callers can
// recognise through fasthttp's error chain.
func authorizeExactly(want spiffeid.ID) func(spiffeid.ID, [][]*x509.Certificate) error {
	return func(got spiffeid.ID, _ [][]*x509.Certificate) error {
		if got != want {
			return fmt.Errorf("%w: got %q, want %q", errUnexpectedPeer, got, want)
		}
		return nil
	}
}

// Serve accepts the app's plaintext connections from ln until Shutdown:
// HTTP/1.x, and HTTP/2 with prior knowledge (h2c, see h2.go).
func (s *Server) Serve(ln net.Listener) error {
	sl := newH2Listener(ln, s.opts.ReadTimeout, s.opts.MaxConnections)
	h2 := s.newH2Server(sl)
	s.h2.Store(h2)
	errc := make(chan error, 1)
	go func() { errc <- h2.Serve(sl.h2) }()
	err := s.srv.Serve(listener{sl.h1})
	_ = sl.Close()
	if failed := sl.failed.Load(); failed != nil && err == nil {
		// fasthttp reads a closed listener as a clean stop: the reason the
		// accept loop stopped is the error.
		err = fmt.Errorf("outbound: accept: %w", *failed)
	}
	if h2err := <-errc; err == nil && !errors.Is(h2err, http.ErrServerClosed) && !errors.Is(h2err, net.ErrClosed) {
		err = h2err
	}
	return err
}

// Shutdown stops accepting, lets in-flight requests finish and closes idle
// connections, or gives up when ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.ShutdownWithContext(ctx)
	if h2 := s.h2.Load(); h2 != nil {
		// GOAWAY, then the streams in flight get what is left of ctx.
		if h2err := h2.Shutdown(ctx); h2err != nil {
			_ = h2.Close()
			if err == nil {
				err = h2err
			}
		}
	}
	for _, r := range s.routes {
		r.client.CloseIdleConnections()
		r.rt.CloseIdleConnections()
	}
	return err
}

// conn carries per-connection scratch space, so that a request costs no
// allocation for its id or host; fasthttp serves one request at a time per
// connection.
type conn struct {
	net.Conn
	requestID []byte
	host      []byte
	fields    []pep.Field // the headers to sign, reused
}

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c}, nil
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	c, ok := ctx.Conn().(*conn)
	if !ok {
		c = &conn{} // not from Serve (fasthttp test helpers): no reuse
	}
	c.requestID, c.host = c.requestID[:0], c.host[:0]
	if id := ctx.Request.Header.Peek(proxy.HeaderRequestID); proxy.ValidRequestID(id) {
		c.requestID = append(c.requestID, id...)
	} else {
		c.requestID = s.ids.Append(c.requestID)
	}
	if ctx.IsConnect() {
		s.refuse(ctx, c, nil, fasthttp.StatusMethodNotAllowed, codeConnect)
		return
	}
	r := s.route(c, ctx.Host())
	if r == nil {
		s.log.Warn().Str("event", "outbound_refused").Bytes("host", ctx.Host()).
			Bytes("request_id", c.requestID).Msg("no route for this host")
		s.refuse(ctx, c, nil, fasthttp.StatusForbidden, codeUnknownDestination)
		return
	}

	closeAfter := ctx.Request.Header.ConnectionClose()
	h := &ctx.Request.Header
	proxy.RemoveHopByHopRequest(h)
	h.ResetConnectionClose()
	h.SetBytesV(proxy.HeaderRequestID, c.requestID)
	// The app spoke http to warden (origin-form or, as to an HTTP proxy,
	// absolute-form); the destination gets https and the app's Host.
	ctx.Request.URI().SetSchemeBytes(schemeHTTPS)
	if s.opts.Signer != nil {
		if err := s.sign(ctx, c); err != nil {
			s.log.Error().Str("event", "outbound_sign_failed").Err(err).Str("destination_id", r.id).
				Bytes("request_id", c.requestID).Msg("request not signed: not sent")
			s.refuse(ctx, c, r, fasthttp.StatusInternalServerError, "internal_error")
			return
		}
	}

	var err error
	if r.HTTP2 {
		err = s.doH2(ctx, r)
	} else {
		err = r.client.DoTimeout(&ctx.Request, &ctx.Response, s.opts.Timeout)
	}
	if err != nil {
		status, code := destinationError(err)
		e := s.log.Error()
		if code == codeIdentityMismatch {
			e = s.log.Warn() // a security event, not a fault of warden's
		}
		e.Str("event", "outbound_error").Err(err).Str("destination", r.Addr).Str("destination_id", r.id).
			Str("error_code", code).Bytes("request_id", c.requestID).Msg("outbound request failed")
		ctx.Response.Reset()
		s.refuse(ctx, c, r, status, code)
		return
	}
	proxy.RemoveHopByHopResponse(&ctx.Response.Header)
	ctx.Response.Header.SetBytesV(proxy.HeaderRequestID, c.requestID)
	if closeAfter {
		ctx.Response.SetConnectionClose()
	}
	s.access(ctx, c, r)
}

// route finds the route of host: first as sent ("name:port" or "name"),
// then without its port. Hosts compare case-insensitively.
func (s *Server) route(c *conn, host []byte) *route {
	c.host = append(c.host[:0], host...)
	for i, b := range c.host {
		if 'A' <= b && b <= 'Z' {
			c.host[i] = b + ('a' - 'A')
		}
	}
	if r := s.routes[string(c.host)]; r != nil {
		return r
	}
	for i := len(c.host) - 1; i >= 0; i-- {
		switch b := c.host[i]; {
		case b == ':':
			return s.routes[string(c.host[:i])]
		case b < '0' || b > '9':
			return nil // no port (or an IPv6 address without one)
		}
	}
	return nil
}

// destinationError maps a client error to the status and code the app sees.
func destinationError(err error) (int, string) {
	var netErr net.Error
	switch {
	case errors.Is(err, errUnexpectedPeer):
		return fasthttp.StatusBadGateway, codeIdentityMismatch
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, fasthttp.ErrTLSHandshakeTimeout), errors.As(err, &netErr) && netErr.Timeout():
		return fasthttp.StatusGatewayTimeout, codeTimeout
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return fasthttp.StatusServiceUnavailable, codeOverloaded
	default:
		return fasthttp.StatusBadGateway, codeUnavailable
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
	}
	c, ok := ctx.Conn().(*conn)
	if !ok {
		c = &conn{}
	}
	c.requestID, c.host = s.ids.Append(c.requestID[:0]), c.host[:0]
	// The class of the error only: fasthttp's message may quote the request.
	s.log.Warn().Str("event", "bad_request").Str("error_class", proxy.ParseErrorClass(err)).Int("status", status).
		Bytes("request_id", c.requestID).Msg("outbound request refused before proxying")
	s.refuse(ctx, c, nil, status, code)
	ctx.SetConnectionClose()
}

// refuse answers with the small JSON error body agent/proxy also uses
// ({"error":"...","request_id":"..."}); details stay in the log.
func (s *Server) refuse(ctx *fasthttp.RequestCtx, c *conn, r *route, status int, code string) {
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.Header.SetBytesV(proxy.HeaderRequestID, c.requestID)
	ctx.Response.ResetBody()
	ctx.Response.AppendBodyString(`{"error":"`)
	ctx.Response.AppendBodyString(code)
	ctx.Response.AppendBodyString(`","request_id":"`)
	ctx.Response.AppendBody(c.requestID)
	ctx.Response.AppendBodyString("\"}\n")
	s.access(ctx, c, r)
}

// access writes the one access-log line per request.
func (s *Server) access(ctx *fasthttp.RequestCtx, c *conn, r *route) {
	e := s.log.Info()
	if !e.Enabled() {
		return
	}
	var dur float64
	if t := ctx.Time(); !t.IsZero() {
		dur = time.Since(t).Seconds()
	}
	e = e.Str("event", "access").
		Bytes("method", ctx.Method()).
		Bytes("host", c.host).
		Bytes("path", redact.Path(ctx.Path())).
		Int("status", ctx.Response.StatusCode())
	if r != nil {
		e = e.Str("destination", r.Addr).Str("destination_id", r.id)
	}
	e.Float64("duration_s", dur).
		Int("bytes_in", len(ctx.Request.Body())).
		Int("bytes_out", ctx.Response.Header.ContentLength()).
		Bytes("request_id", c.requestID).
		Send()
}

// sign adds the request's signature headers (and Content-Digest) for the
// request exactly as it will be written: method, the origin-form target,
// Host, the headers and the body.
func (s *Server) sign(ctx *fasthttp.RequestCtx, c *conn) error {
	signer, err := s.opts.Signer()
	if err != nil {
		return err
	}
	h := &ctx.Request.Header
	c.fields = c.fields[:0]
	for k, v := range h.All() {
		c.fields = append(c.fields, pep.Field{Name: k, Value: v})
	}
	hs, err := signer.Sign(&signature.Request{
		Method: h.Method(), Scheme: "https", Authority: ctx.Host(), RawTarget: ctx.Request.URI().RequestURI(),
		Headers: c.fields, Body: ctx.Request.Body(),
	})
	c.fields = c.fields[:0]
	if err != nil {
		return err
	}
	for _, f := range hs {
		h.Set(f.Name, f.Value)
	}
	return nil
}
