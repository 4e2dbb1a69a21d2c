package load

import (
	"context"
	"testing"
	"time"
)

// BenchmarkClosedLoop measures the generator and an in-process fasthttp
// server together, per request, the per-run setup amortized over b.N.
// allocs/op: 0 in plaintext; 3 with mTLS, none in this package: one per
// TLS record read on each side inside crypto/tls (readFromUntil), and the
// test server's TLSConnectionState copy for its SPIFFE ID check.
func BenchmarkClosedLoop(b *testing.B) {
	p := newPKI(b)
	for _, bc := range []struct {
		name string
		pki  *testPKI
	}{{"plaintext", nil}, {"mtls", p}} {
		b.Run(bc.name, func(b *testing.B) {
			s := startServer(b, bc.pki, hello)
			c := DefaultConfig()
			c.URL = s.url
			if bc.pki != nil {
				c.CertFile, c.KeyFile, c.CAFile = p.certFile, p.keyFile, p.caFile
			}
			c.Connections = 4
			c.Warmup = 0
			c.Duration = MaxDuration
			c.MaxRequests = int64(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			r, err := Run(context.Background(), c)
			if err != nil {
				b.Fatal(err)
			}
			if r.Errors != 0 || r.Requests != int64(b.N) {
				b.Fatalf("requests %d errors %v", r.Requests, r.ErrorsByKind)
			}
			b.ReportMetric(r.P99Ms*float64(time.Millisecond/time.Microsecond), "p99-µs")
		})
	}
}

// BenchmarkGRPCClosedLoop is BenchmarkClosedLoop for -grpc: the generator
// and an in-process gRPC server together, per unary call of a 5-byte
// message. The allocations are google.golang.org/grpc's, both sides.
func BenchmarkGRPCClosedLoop(b *testing.B) {
	p := newPKI(b)
	for _, bc := range []struct {
		name string
		pki  *testPKI
	}{{"h2c", nil}, {"mtls", p}} {
		b.Run(bc.name, func(b *testing.B) {
			s := startGRPCServer(b, bc.pki, echo)
			c := grpcConfig(bc.pki, s)
			c.BodySize = 5
			c.Duration = MaxDuration
			c.MaxRequests = int64(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			r, err := Run(context.Background(), c)
			if err != nil {
				b.Fatal(err)
			}
			if r.Errors != 0 || r.Requests != int64(b.N) {
				b.Fatalf("requests %d errors %v", r.Requests, r.ErrorsByKind)
			}
			b.ReportMetric(r.P99Ms*float64(time.Millisecond/time.Microsecond), "p99-µs")
		})
	}
}
