package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"

	"github.com/valyala/fasthttp"
)

// Upstream protocols (Options.UpstreamProtocol).
const (
	UpstreamHTTP1 = "http1" // HTTP/1.1 (the default, also for "")
	UpstreamH2C   = "h2c"   // HTTP/2 with prior knowledge
	UpstreamAuto  = "auto"  // h2c for gRPC requests, HTTP/1.1 for the rest
)

// Per-stream and per-connection receive windows toward the app: what warden
// buffers of a response its client reads slowly. The app's writes block
// beyond them (HTTP/2 flow control), so a slow reader costs warden at most
// this per stream, never the whole response.
const (
	upstreamStreamWindow = 256 << 10
	upstreamConnWindow   = 4 << 20
)

// upstreams are the net/http clients to the app: pooled keep-alive
// HTTP/1.1 and pooled, multiplexed h2c (Go's own HTTP/2 client, which
// opens another connection when a connection's streams are all in use,
// so that one stream never waits for another). The HTTP/2 path uses them
// for every request; the HTTP/1.1 path only with h2c (its HTTP/1.1 client
// is fasthttp's).
type upstreams struct {
	protocol  string
	http1, h2 *http.Transport
}

func newUpstreams(o Options) upstreams {
	dialer := &net.Dialer{Timeout: upstreamDialTimeout}
	base := func() *http.Transport {
		return &http.Transport{
			Proxy:                  nil, // the app is on loopback: never through a proxy from the environment
			DialContext:            dialer.DialContext,
			MaxConnsPerHost:        o.UpstreamMaxConns,
			MaxIdleConns:           o.UpstreamMaxConns,
			MaxIdleConnsPerHost:    o.UpstreamMaxConns,
			IdleConnTimeout:        o.IdleTimeout,
			MaxResponseHeaderBytes: int64(o.MaxHeaderBytes),
			// The app's encoding goes through as it is.
			DisableCompression: true,
		}
	}
	u := upstreams{protocol: o.UpstreamProtocol, http1: base(), h2: base()}
	u.http1.Protocols = new(http.Protocols)
	u.http1.Protocols.SetHTTP1(true)
	u.h2.Protocols = new(http.Protocols)
	u.h2.Protocols.SetUnencryptedHTTP2(true)
	u.h2.HTTP2 = &http.HTTP2Config{
		MaxReceiveBufferPerStream:     upstreamStreamWindow,
		MaxReceiveBufferPerConnection: upstreamConnWindow,
		MaxDecoderHeaderTableSize:     4096,
	}
	return u
}

// pick is the client for a request: gRPC says whether it is a gRPC call.
func (u *upstreams) pick(grpc bool) http.RoundTripper {
	switch {
	case u.protocol == UpstreamH2C, u.protocol == UpstreamAuto && grpc:
		return u.h2
	}
	return u.http1
}

func (u *upstreams) closeIdle() {
	u.http1.CloseIdleConnections()
	u.h2.CloseIdleConnections()
}

// doH2C sends an HTTP/1.1 client's request (ctx.Request, already
// prepared for the app) over h2c, and sets the app's answer on
// ctx.Response, its body streaming. The deadline covers the whole
// response, as fasthttp's DoTimeout does: it is cancelled when fasthttp
// closes the body stream.
func (s *Server) doH2C(ctx *fasthttp.RequestCtx, c *conn) error {
	rctx, cancel := context.WithTimeout(context.Background(), s.opts.UpstreamTimeout)
	h := &ctx.Request.Header
	path, query := c.target, []byte(nil)
	if i := indexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i+1:]
	}
	out := make(http.Header, h.Len())
	for k, v := range h.All() {
		switch string(k) {
		case "Host", "Content-Length", "Connection", "Transfer-Encoding":
			continue
		}
		key := http.CanonicalHeaderKey(string(k))
		out[key] = append(out[key], string(v))
	}
	body := ctx.Request.Body()
	req := &http.Request{
		Method: string(h.Method()),
		URL:    &url.URL{Scheme: "http", Host: s.opts.UpstreamAddr, Opaque: string(path), RawQuery: string(query)},
		Header: out, Host: string(h.Host()), ContentLength: int64(len(body)),
	}
	if len(body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := s.up.h2.RoundTrip(req.WithContext(rctx))
	if err != nil {
		cancel()
		if rctx.Err() == context.DeadlineExceeded {
			return fasthttp.ErrTimeout
		}
		return err
	}
	ctx.Response.SetStatusCode(resp.StatusCode)
	rh := &ctx.Response.Header
	removeHopByHopHTTP(resp.Header)
	for k, vs := range resp.Header {
		if k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			rh.Add(k, v)
		}
	}
	// Trailers have no place in the HTTP/1.1 answer fasthttp writes: they
	// are dropped (gRPC clients speak HTTP/2).
	ctx.Response.SetBodyStream(&cancelOnClose{ReadCloser: resp.Body, cancel: cancel}, int(resp.ContentLength))
	return nil
}

// cancelOnClose ends a response's deadline when its body is done with.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
