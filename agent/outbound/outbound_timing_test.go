package outbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/spiffe"
	"github.com/warden-sidecar/warden/spiffe/spiffetest"
)

// benchOutbound is the outbound proxy with one HTTP/1.1 route to a TLS
// destination on loopback; it returns the listener's address.
func benchOutbound(b *testing.B) string {
	b.Helper()
	ca := spiffetest.NewCA(b, td)
	bundles := x509bundle.NewSet(ca.Bundle())
	dst := benchDestination(b, ca, bundles)
	s := New(Options{
		Routes: []Route{{Host: "orders", Addr: dst, ID: ordersID}},
		SVID:   ca.SVID(ownID, time.Hour), Bundles: bundles,
		Timeout: 5 * time.Second, MaxConnsPerRoute: 64,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
		MaxHeaderBytes: 8192, MaxRequestBodyBytes: 1 << 20, MaxConnections: 1024,
		Log: zerolog.New(io.Discard),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// benchDestination is a minimal mTLS fasthttp destination.
func benchDestination(b *testing.B, ca *spiffetest.CA, bundles x509bundle.Source) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("order 7") }}
	go func() {
		_ = srv.Serve(tls.NewListener(ln, spiffe.ServerTLSConfig(ca.SVID(ordersID, time.Hour), bundles)))
	}()
	b.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

var benchRequest = []byte("GET /orders/7 HTTP/1.1\r\nHost: orders\r\nUser-Agent: bench\r\n\r\n")

// BenchmarkOutboundKeepAlive is one request of an HTTP/1.1 app over a kept
// connection, to a destination over a pooled mTLS connection.
func BenchmarkOutboundKeepAlive(b *testing.B) {
	addr := benchOutbound(b)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		benchRoundTrip(b, c, br)
	}
}

// BenchmarkOutboundNewConnection opens a connection per request: what the
// listener does once per connection (sorting HTTP/1.1 from h2c) shows here.
func BenchmarkOutboundNewConnection(b *testing.B) {
	addr := benchOutbound(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		benchRoundTrip(b, c, bufio.NewReader(c))
		c.Close()
	}
}

func benchRoundTrip(b *testing.B, c net.Conn, br *bufio.Reader) {
	if _, err := c.Write(benchRequest); err != nil {
		b.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}
