package bundle

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// benchPolicy is a typical small service policy.
const benchPolicy = `package warden.authz
default allow := false
allow if {
	input.peer.trust_domain == "example.org"
	input.method in {"GET", "HEAD"}
	startswith(input.path, "/api/")
}
allow if {
	input.method == "POST"
	input.peer.spiffe_id == "spiffe://example.org/ns/default/sa/writer"
}
`

func benchInput() *Input {
	return &Input{
		Method: "GET", Path: "/api/v1/items/42", RawPath: "/api/v1/items/42", RawQuery: "expand=owner&limit=10",
		Headers: []Header{
			{Name: "host", Value: "app.default.svc"}, {Name: "user-agent", Value: "Go-http-client/1.1"}, {Name: "accept", Value: "application/json"},
			{Name: "accept-encoding", Value: "gzip"}, {Name: "content-type", Value: "application/json"}, {Name: "x-tenant", Value: "blue"},
			{Name: "traceparent", Value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, {Name: "x-forwarded-proto", Value: "https"},
		},
		Transaction: "5f0c6a2e-9d7b-4c1e-8a55-0e6f3c2d1b7a", Sender: "10.244.1.17",
		PeerID: "spiffe://example.org/ns/default/sa/reader", PeerTrustDomain: "example.org",
		DestinationID: "spiffe://example.org/ns/default/sa/app",
	}
}

func benchEngine(b *testing.B, cacheSize int) *Engine {
	return benchEngineWith(b, Options{CacheSize: cacheSize, CacheTTL: time.Minute})
}

func benchEngineWith(b *testing.B, opts Options) *Engine {
	path := filepath.Join(b.TempDir(), "b.tar.gz")
	writeTarball(b, path, build(b, "bench", policy(benchPolicy), nil))
	opts.Source = path
	e, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	return e
}

func BenchmarkDecideCached(b *testing.B) {
	e := benchEngine(b, 10000)
	in := benchInput()
	ctx := context.Background()
	if d, err := e.Decide(ctx, in); err != nil || !d.Allow {
		b.Fatalf("%+v %v", d, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if d, _ := e.Decide(ctx, in); !d.Cached {
			b.Fatal("miss")
		}
	}
}

func BenchmarkDecideCachedParallel(b *testing.B) {
	e := benchEngine(b, 10000)
	ctx := context.Background()
	if _, err := e.Decide(ctx, benchInput()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		in := benchInput()
		for pb.Next() {
			if d, _ := e.Decide(ctx, in); !d.Cached {
				b.Fatal("miss")
			}
		}
	})
}

func BenchmarkDecideUncached(b *testing.B) {
	e := benchEngine(b, 0)
	in := benchInput()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d, err := e.Decide(ctx, in); err != nil || !d.Allow || d.Cached {
			b.Fatalf("%+v %v", d, err)
		}
	}
}

// BenchmarkDecideUncachedWithDeadline is BenchmarkDecideUncached with
// warden's default EvalTimeout: what the timer and Cancel per evaluation
// cost.
func BenchmarkDecideUncachedWithDeadline(b *testing.B) {
	e := benchEngineWith(b, Options{EvalTimeout: 100 * time.Millisecond})
	in := benchInput()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d, err := e.Decide(ctx, in); err != nil || !d.Allow || d.Cached {
			b.Fatalf("%+v %v", d, err)
		}
	}
}

// BenchmarkInputRepeatedHeaders builds the input of the benchmark request,
// then of the same request with one header repeated 100 and 1000 times: the
// cost must grow with the bytes, not with their square.
func BenchmarkInputRepeatedHeaders(b *testing.B) {
	for _, n := range []int{0, 100, 1000} {
		in := benchInput()
		for range n {
			in.Headers = append(in.Headers, Header{Name: "x-forwarded-for", Value: "10.244.1.17"})
		}
		b.Run(fmt.Sprintf("repeated=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := inputValue(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecideUncachedDefaultBundle evaluates the embedded default
// bundle (allowed peers, segregation matrix) for every request: what
// WARDEN_POLICY_CACHE_SIZE=0 costs with the bundle warden ships.
func BenchmarkDecideUncachedDefaultBundle(b *testing.B) {
	e, err := New(Options{CacheSize: 0})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	in := benchInput()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d, err := e.Decide(ctx, in); err != nil || d.Cached {
			b.Fatalf("%+v %v", d, err)
		}
	}
}
