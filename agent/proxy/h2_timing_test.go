package proxy

import (
	"io"
	"net/http"
	"testing"

	"golang.org/x/net/http2"
)

// BenchmarkHTTP2Request is one HTTP/2 request on an open connection through
// the whole HTTP/2 path (TLS records, x/net/http2 on both sides, the
// pipeline with a guard, the pooled HTTP/1.1 client to a fasthttp app):
// for comparing the HTTP/2 path with itself over time, not with
// BenchmarkHandle, which leaves out TLS and the client.
func BenchmarkHTTP2Request(b *testing.B) {
	h := startProxy(b, func(o *Options) {
		o.HTTP2 = true
		o.Guard = allowWith{}
	})
	cfg := h.clientTLS(b, clientID)
	cfg.NextProtos = []string{ProtoH2}
	tr := &http2.Transport{TLSClientConfig: cfg}
	b.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	url := h.url("/api/v1/items?id=42")
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
	}
}
