package outbound

// HTTP/2 on both sides of the outbound proxy.
//
// The app side: the listener reads the first bytes of each connection; the
// HTTP/2 client preface (prior knowledge h2c, what gRPC clients speak in
// plaintext) sends the connection to a net/http server with unencrypted
// HTTP/2 only, anything else to fasthttp as before. The preface is a
// request line no HTTP/1.1 client sends, so the two never overlap.
//
// The destination side: a route with ";proto=h2" is reached over mTLS with
// ALPN h2 through a net/http transport of its own (pooled, multiplexed
// connections; trailers pass), whatever the app spoke. A route without it
// is reached over HTTP/1.1: by fasthttp for HTTP/1.1 apps, as before, and by
// an HTTP/1.1 net/http transport for h2c apps.
//
// Go's own HTTP/2 (net/http since 1.24) rather than golang.org/x/net/http2,
// whose server and transport it deprecates in favour of these.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/proxy"
	"github.com/warden-sidecar/warden/agent/signature"
	"github.com/warden-sidecar/warden/internal/redact"
	"github.com/warden-sidecar/warden/spiffe"
)

// clientPreface opens every HTTP/2 connection (RFC 9113 section 3.4).
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// errNoH2 marks a destination of an h2 route that did not choose h2 in ALPN.
var errNoH2 = errors.New("outbound: destination did not negotiate h2 (ALPN)")

// transport is a route's net/http transport: HTTP/2 only (ALPN h2, checked)
// for an h2 route, HTTP/1.1 only otherwise. It always dials the route's
// address, whatever the request's authority, and verifies the route's
// SPIFFE ID.
func (s *Server) transport(r Route) *http.Transport {
	cfg := spiffe.ClientTLSConfig(s.opts.SVID, s.opts.Bundles, authorizeExactly(r.ID))
	var p http.Protocols
	if r.HTTP2 {
		cfg.NextProtos = []string{"h2"}
		p.SetHTTP2(true)
	} else {
		cfg.NextProtos = []string{"http/1.1"}
		p.SetHTTP1(true)
	}
	dialer := &net.Dialer{Timeout: s.opts.Timeout}
	addr := r.Addr
	return &http.Transport{
		Protocols: &p,
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			raw, err := dialer.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(raw, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				_ = raw.Close()
				return nil, err
			}
			if r.HTTP2 && tc.ConnectionState().NegotiatedProtocol != "h2" {
				_ = tc.Close()
				return nil, errNoH2
			}
			return tc, nil
		},
		MaxConnsPerHost:        s.opts.MaxConnsPerRoute,
		MaxIdleConnsPerHost:    s.opts.MaxConnsPerRoute,
		IdleConnTimeout:        s.opts.IdleTimeout,
		MaxResponseHeaderBytes: int64(s.opts.MaxHeaderBytes),
		ResponseHeaderTimeout:  s.opts.Timeout,
		// A proxy relays the encoding it was sent; it neither asks for gzip
		// nor inflates.
		DisableCompression: true,
	}
}

// h2Listener sorts the app's connections by their first bytes: HTTP/2
// prior knowledge to h2, the rest to h1 (fasthttp). It owns the accept
// loop and the sniffing goroutines (each bounded by the read timeout).
type h2Listener struct {
	inner   net.Listener
	sniff   time.Duration
	h1, h2  *chanListener
	h2Conns atomic.Int64 // open HTTP/2 connections, for the connection limit
	limit   int64
	closing sync.Once
	failed  atomic.Pointer[error] // why the accept loop stopped, if not Close
}

func newH2Listener(inner net.Listener, sniffTimeout time.Duration, limit int) *h2Listener {
	l := &h2Listener{inner: inner, sniff: sniffTimeout, limit: int64(limit)}
	done := make(chan struct{})
	l.h1 = &chanListener{addr: inner.Addr(), conns: make(chan net.Conn), done: done, close: l.Close}
	l.h2 = &chanListener{addr: inner.Addr(), conns: make(chan net.Conn), done: done, close: l.Close}
	go l.accept()
	return l
}

func (l *h2Listener) accept() {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if !errors.Is(err, net.ErrClosed) {
				l.failed.Store(&err)
			}
			l.Close()
			return
		}
		go l.route(c)
	}
}

// route reads as much of the preface as the connection's first bytes
// allow: a byte that differs makes it HTTP/1.x, with what was read put
// back in front; all 24 make it HTTP/2.
func (l *h2Listener) route(c net.Conn) {
	var buf [len(clientPreface)]byte
	n := 0
	_ = c.SetReadDeadline(time.Now().Add(l.sniff))
	for n < len(buf) {
		k, err := c.Read(buf[n:])
		n += k
		if string(buf[:n]) != clientPreface[:n] {
			break
		}
		if err != nil {
			_ = c.Close()
			return
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	pc := &prefixConn{Conn: c, prefix: append([]byte(nil), buf[:n]...)}
	dst := l.h1
	if n == len(buf) && string(buf[:]) == clientPreface {
		dst = l.h2
	}
	select {
	case dst.conns <- pc:
	case <-dst.done:
		_ = c.Close()
	}
}

// Close stops accepting; both servers close it, the second call is a no-op.
func (l *h2Listener) Close() error {
	var err error
	l.closing.Do(func() {
		close(l.h1.done)
		err = l.inner.Close()
	})
	return err
}

// chanListener hands out the connections its h2Listener sorted to it.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	close func() error
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { return l.close() }
func (l *chanListener) Addr() net.Addr { return l.addr }

// prefixConn is a connection whose first bytes were read already.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// newH2Server is the app side's HTTP/2 server: prior knowledge h2c only,
// the outbound limits, and the HTTP/2 defaults of net/http for the rest
// (stream concurrency, flow control windows, frame and HPACK table sizes).
func (s *Server) newH2Server(ln *h2Listener) *http.Server {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           http.HandlerFunc(s.serveH2),
		Protocols:         &p,
		ReadHeaderTimeout: s.opts.ReadTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    s.opts.MaxHeaderBytes,
		ErrorLog:          log.New(debugWriter{s}, "", 0),
		ConnState: func(c net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				if ln.h2Conns.Add(1) > ln.limit && ln.limit > 0 {
					// Over WARDEN_MAX_CONNECTIONS, as fasthttp refuses HTTP/1.1.
					_ = c.Close()
				}
			case http.StateClosed, http.StateHijacked:
				ln.h2Conns.Add(-1)
			}
		},
	}
}

// debugWriter sends net/http's own messages to the debug log: they
// describe connections (a bad preface, a reset), never a request's bytes.
type debugWriter struct{ s *Server }

func (d debugWriter) Write(p []byte) (int, error) {
	d.s.log.Debug().Str("event", "http2_server").Str("message", strings.TrimSpace(string(p))).Send()
	return len(p), nil
}

// hopByHopH2 are the connection-specific fields HTTP/2 forbids and HTTP/1.1
// proxies drop (TE is kept when it is "trailers", which gRPC requires).
var hopByHopH2 = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Transfer-Encoding", "Upgrade", "Trailer"}

func dropHopByHop(h http.Header, request bool) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHopH2 {
		h.Del(name)
	}
	if te := h.Values("Te"); len(te) > 0 {
		h.Del("Te")
		if request && len(te) == 1 && strings.EqualFold(strings.TrimSpace(te[0]), "trailers") {
			h.Set("Te", "trailers")
		}
	}
}

// serveH2 relays one request of an h2c app: routed by :authority, sent
// to the route's destination over mTLS (h2 or HTTP/1.1, as the route
// says), the response streamed back with its trailers.
func (s *Server) serveH2(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	a := &h2Access{s: s, r: r, start: start}
	if id := r.Header.Get(proxy.HeaderRequestID); proxy.ValidRequestID([]byte(id)) {
		a.id = id
	} else {
		a.id = string(s.ids.Append(nil))
	}
	if r.Method == http.MethodConnect {
		a.refuse(w, nil, fasthttp.StatusMethodNotAllowed, codeConnect)
		return
	}
	c := &conn{}
	rt := s.route(c, []byte(r.Host))
	a.host = string(c.host)
	if rt == nil {
		s.log.Warn().Str("event", "outbound_refused").Str("host", r.Host).Str("protocol", "h2c").
			Str("request_id", a.id).Msg("no route for this host")
		a.refuse(w, nil, fasthttp.StatusForbidden, codeUnknownDestination)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.Timeout)
	defer cancel()
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = "https", r.Host
	out.Host = r.Host
	dropHopByHop(out.Header, true)
	out.Header.Set(proxy.HeaderRequestID, a.id)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // net/http would add its own
	}
	if r.ContentLength == 0 {
		out.Body = http.NoBody
	}
	if s.opts.Signer != nil {
		if status, code, err := s.signH2(out, r); err != nil {
			s.log.Error().Str("event", "outbound_sign_failed").Err(err).Str("destination_id", rt.id).
				Str("request_id", a.id).Msg("request not signed: not sent")
			a.refuse(w, rt, status, code)
			return
		}
	}
	resp, err := rt.rt.RoundTrip(out)
	if err != nil {
		status, code := destinationError(err)
		s.logDestinationError(err, rt, code, a.id)
		a.refuse(w, rt, status, code)
		return
	}
	defer resp.Body.Close()
	dropHopByHop(resp.Header, false)
	late := trailersOnly(resp.Header)
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	h.Set(proxy.HeaderRequestID, a.id)
	a.status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	for {
		n, err := resp.Body.Read(*bp)
		if n > 0 {
			if _, werr := w.Write((*bp)[:n]); werr != nil {
				a.aborted = "app_gone"
				a.log(rt)
				panic(http.ErrAbortHandler) // resets the app's stream
			}
			a.out += int64(n)
			// Each chunk goes at once: gRPC streams and server-sent events
			// must not wait for a buffer to fill.
			_ = rc.Flush()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			// The destination failed mid-body: the app must not take the
			// truncated body for a whole one, so its stream is reset.
			a.aborted = "destination_failed"
			s.logDestinationError(err, rt, codeUnavailable, a.id)
			a.log(rt)
			panic(http.ErrAbortHandler)
		}
	}
	for k, vs := range late {
		h[http.TrailerPrefix+k] = vs
	}
	for k, vs := range resp.Trailer {
		h[http.TrailerPrefix+k] = vs
	}
	a.log(rt)
}

// gRPC's status fields, which a trailers-only response (RFC 9113's single
// HEADERS frame ending the stream: how gRPC servers answer a call that
// fails before its first message) carries in what net/http reports as the
// header.
var grpcStatusFields = []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"}

// trailersOnly takes the gRPC status fields out of a gRPC response's
// header, to be sent as trailers: net/http's server cannot end a stream
// with its first HEADERS frame, and gRPC clients look for the status in
// the trailers of a response that has a header block of its own.
func trailersOnly(h http.Header) http.Header {
	if !strings.HasPrefix(h.Get("Content-Type"), "application/grpc") || h.Get("Grpc-Status") == "" {
		return nil
	}
	late := http.Header{}
	for _, k := range grpcStatusFields {
		if vs, ok := h[k]; ok {
			late[k] = vs
			delete(h, k)
		}
	}
	return late
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (s *Server) logDestinationError(err error, rt *route, code, id string) {
	e := s.log.Error()
	if code == codeIdentityMismatch {
		e = s.log.Warn() // a security event, not a fault of warden's
	}
	e.Str("event", "outbound_error").Err(err).Str("destination", rt.Addr).Str("destination_id", rt.id).
		Str("error_code", code).Str("request_id", id).Msg("outbound request failed")
}

// signH2 signs an h2c app's request, whose body it reads whole first (up
// to the body limit): the signature covers its digest. Streaming calls
// (gRPC client or bidirectional streams) therefore do not stream through
// a signing warden.
func (s *Server) signH2(out, in *http.Request) (int, string, error) {
	signer, err := s.opts.Signer()
	if err != nil {
		return fasthttp.StatusInternalServerError, "internal_error", err
	}
	body, err := io.ReadAll(io.LimitReader(in.Body, int64(s.opts.MaxRequestBodyBytes)+1))
	if err != nil {
		return fasthttp.StatusBadRequest, "bad_request", err
	}
	if len(body) > s.opts.MaxRequestBodyBytes {
		return fasthttp.StatusRequestEntityTooLarge, "body_too_large", errors.New("outbound: body over the limit")
	}
	out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	out.GetBody = nil
	// The fields as HTTP/2 sends them: the authority is :authority, not a
	// Host field.
	var fields []pep.Field
	for k, vs := range out.Header {
		for _, v := range vs {
			fields = append(fields, pep.Field{Name: []byte(k), Value: []byte(v)})
		}
	}
	hs, err := signer.Sign(&signature.Request{
		Method: []byte(in.Method), Scheme: "https", Authority: []byte(in.Host), RawTarget: []byte(in.URL.RequestURI()),
		Headers: fields, Body: body,
	})
	if err != nil {
		return fasthttp.StatusInternalServerError, "internal_error", err
	}
	for _, f := range hs {
		out.Header.Set(f.Name, f.Value)
	}
	return 0, "", nil
}

// h2Access is what the access line of an h2c request reports.
type h2Access struct {
	s       *Server
	r       *http.Request
	start   time.Time
	id      string
	host    string
	status  int
	out     int64
	aborted string
}

// refuse answers with the JSON error body of the HTTP/1.1 path, or, to a
// gRPC call, with HTTP 200 and the gRPC status in the trailers
// (grpc-message is the error code).
func (a *h2Access) refuse(w http.ResponseWriter, rt *route, status int, code string) {
	if strings.HasPrefix(a.r.Header.Get("Content-Type"), "application/grpc") {
		h := w.Header()
		h.Set("Content-Type", "application/grpc")
		h.Set(proxy.HeaderRequestID, a.id)
		w.WriteHeader(http.StatusOK)
		// One mapping for both directions (issue 17's table).
		h.Set(http.TrailerPrefix+"Grpc-Status", strconv.Itoa(proxy.GRPCStatus(status)))
		h.Set(http.TrailerPrefix+"Grpc-Message", code)
		a.status = status
		a.log(rt)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set(proxy.HeaderRequestID, a.id)
	w.WriteHeader(status)
	body := `{"error":"` + code + `","request_id":"` + a.id + "\"}\n"
	_, _ = io.WriteString(w, body)
	a.status, a.out = status, int64(len(body))
	a.log(rt)
}

// log writes the request's access line, when its response ended: for a
// stream, duration_s is the whole exchange.
func (a *h2Access) log(rt *route) {
	e := a.s.log.Info()
	if !e.Enabled() {
		return
	}
	e = e.Str("event", "access").Str("protocol", "h2c").
		Str("method", a.r.Method).
		Str("host", a.host).
		Bytes("path", redact.Path([]byte(a.r.URL.EscapedPath()))).
		Int("status", a.status)
	if rt != nil {
		e = e.Str("destination", rt.Addr).Str("destination_id", rt.id)
	}
	if a.aborted != "" {
		e = e.Str("aborted", a.aborted)
	}
	e.Float64("duration_s", time.Since(a.start).Seconds()).
		Int64("bytes_in", a.r.ContentLength).
		Int64("bytes_out", a.out).
		Str("request_id", a.id).
		Send()
}

// doH2 sends an HTTP/1.1 app's request, read whole and already prepared
// by handle (hop-by-hop headers gone, X-Request-Id set, signed), to an h2
// route, and streams the response back through fasthttp.
func (s *Server) doH2(ctx *fasthttp.RequestCtx, r *route) error {
	h := &ctx.Request.Header
	u := ctx.Request.URI()
	u.DisablePathNormalizing = true // the destination decides on the path the app sent
	host := string(ctx.Host())
	tctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	body := bytes.Clone(ctx.Request.Body())
	out, err := http.NewRequestWithContext(tctx, string(h.Method()), "https://"+host+string(u.RequestURI()), bytes.NewReader(body))
	if err != nil {
		cancel()
		return err
	}
	out.Host, out.ContentLength = host, int64(len(body))
	if len(body) == 0 {
		out.Body = http.NoBody
	}
	out.Header["User-Agent"] = []string{""}
	for k, v := range h.All() {
		switch {
		case equalFoldString(k, "Host"), equalFoldString(k, "Content-Length"), equalFoldString(k, "Connection"):
			continue
		}
		out.Header.Add(string(k), string(v))
	}
	resp, err := r.rt.RoundTrip(out)
	if err != nil {
		cancel()
		return err
	}
	dropHopByHop(resp.Header, false)
	ctx.Response.SetStatusCode(resp.StatusCode)
	for k, vs := range resp.Header {
		if k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			ctx.Response.Header.Add(k, v)
		}
	}
	// fasthttp closes the stream when it has written it, or when the
	// client went away: the timeout's context goes with it.
	ctx.Response.SetBodyStream(&cancelOnClose{ReadCloser: resp.Body, cancel: cancel}, int(resp.ContentLength))
	return nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

func equalFoldString(b []byte, s string) bool {
	return len(b) == len(s) && strings.EqualFold(string(b), s)
}
