package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/ratelimit"
)

// helloApp is a minimal fasthttp app for benchmarks (no recording).
func helloApp(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("hello") }}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// BenchmarkHandle measures warden's per-request work on an established,
// authorized connection: header rewriting, the upstream round trip on a
// pooled keep-alive connection, and the access log line (JSON to a discarding
// writer). TLS record work and the client's side are not in it.
func BenchmarkHandle(b *testing.B) { benchmarkHandle(b, nil, nil, nil) }

// BenchmarkHandleLimited is BenchmarkHandle with the userspace limiter
// deciding each request against the connection's bucket (a rate it never
// reaches): the limiter must add no allocation.
func BenchmarkHandleLimited(b *testing.B) {
	benchmarkHandle(b, ratelimit.NewUserspace(0, ratelimit.Limits{PacketRate: 1_000_000_000}, 1024), nil, nil)
}

// BenchmarkHandleGuarded adds the hand-off to the decision pipeline: the
// pep.Request built from the request and a verdict setting one header for
// the app (a Checker that decides nothing, so that only the proxy's side
// is measured; agent/authz's BenchmarkCheckCached measures the other).
func BenchmarkHandleGuarded(b *testing.B) {
	benchmarkHandle(b, nil, allowWith{pep.Verdict{AppHeaders: []pep.Header{{Name: "X-User", Value: "alice"}}}}, nil)
}

type allowWith struct{ v pep.Verdict }

func (a allowWith) Check(*pep.Request) pep.Verdict { return a.v }

// BenchmarkHandleMetrics (metrics_timing_test.go) is BenchmarkHandle with
// agent/metrics counting each request.

func benchmarkHandle(b *testing.B, lim Limiter, guard pep.Checker, obs Observer) {
	benchmarkHandleWith(b, lim, guard, obs, AccessLogCombined)
}

// BenchmarkHandleGuardedLine is BenchmarkHandleGuarded with a Checker
// that writes a decision line as agent/authz does: held and finished with
// the response (WARDEN_ACCESS_LOG=combined), one line per request.
func BenchmarkHandleGuardedLine(b *testing.B) {
	benchmarkHandleWith(b, nil, holdLine{zerolog.New(io.Discard)}, nil, AccessLogCombined)
}

// BenchmarkHandleGuardedLineSeparate is BenchmarkHandleGuardedLine with
// WARDEN_ACCESS_LOG=separate: the decision line, then the access line.
func BenchmarkHandleGuardedLineSeparate(b *testing.B) {
	benchmarkHandleWith(b, nil, holdLine{zerolog.New(io.Discard)}, nil, AccessLogSeparate)
}

// BenchmarkHandleGuardedLineSharedPool is BenchmarkHandleGuardedLine with
// WARDEN_UPSTREAM_AFFINITY=off: every request draws its app connection from
// the shared pool.
func BenchmarkHandleGuardedLineSharedPool(b *testing.B) {
	benchmarkHandleTweaked(b, nil, holdLine{zerolog.New(io.Discard)}, nil, AccessLogCombined, func(o *Options) { o.UpstreamAffinity = false })
}

func benchmarkHandleWith(b *testing.B, lim Limiter, guard pep.Checker, obs Observer, mode AccessLog) {
	benchmarkHandleTweaked(b, lim, guard, obs, mode, nil)
}

func benchmarkHandleTweaked(b *testing.B, lim Limiter, guard pep.Checker, obs Observer, mode AccessLog, tweak func(*Options)) {
	opts := defaultOptions(helloApp(b))
	opts.AllowPeer = func(spiffeid.ID) bool { return true }
	opts.Log = zerolog.New(io.Discard)
	opts.Limiter = lim
	opts.Guard = guard
	opts.Observer = obs
	opts.AccessLog = mode
	if tweak != nil {
		tweak(&opts)
	}
	s := New(opts)
	c := &conn{peer: peer{resolved: true, allowed: true, clientIP: "127.0.0.1", peerStr: clientID.String()}}
	c.xfcc = []byte("By=" + ownID.String() + ";URI=" + clientID.String())

	var ctx fasthttp.RequestCtx
	ctx.Init2(c, nil, false)
	// Parsed from the wire each time, as the server does, so that the raw
	// header block the hardening checks read is there.
	raw := []byte("GET /api/v1/items?id=42 HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: 203.0.113.7\r\n" +
		"User-Agent: bench\r\nAccept: */*\r\nX-Request-Id: bench-request-1\r\n\r\n")
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	defer func() { b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op") }()
	for b.Loop() {
		rd.Reset(raw)
		br.Reset(rd)
		// Stamps the request's time, as fasthttp's server does for each
		// request (the upstream deadline starts there).
		ctx.Init2(c, nil, false)
		if err := ctx.Request.Read(br); err != nil {
			b.Fatal(err)
		}
		s.handle(&ctx)
		if ctx.Response.StatusCode() != 200 || len(ctx.Response.Body()) != 5 {
			b.Fatalf("status %d body %q", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		ctx.Request.Reset()
		ctx.Response.Reset()
	}
}

// processCPU is the process's user and system CPU time so far, in
// nanoseconds: the benchmarks report it per request (cpu-ns/op) beside the
// wall time, which on a shared machine measures the waiting as well. It
// counts the in-process app's CPU too, the same in every variant.
func processCPU() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkHardeningScan measures the request checks alone on a typical
// header block, without the upstream round trip that dominates
// BenchmarkHandle: the header scan (one hardening.field per line since
// the checks became protocol-neutral), the request line, Host and body
// checks, and the request id.
func BenchmarkHardeningScan(b *testing.B) {
	s := New(defaultOptions("127.0.0.1:1"))
	c := &conn{}
	var req fasthttp.Request
	raw := "GET /api/v1/items?id=42 HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: 203.0.113.7\r\n" +
		"User-Agent: bench\r\nAccept: */*\r\nX-Request-Id: bench-request-1\r\nX_Underscore: 1\r\n" +
		"Content-Type: text/plain\r\nX-Original-URL: /admin\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"
	if err := req.Read(bufio.NewReader(bytes.NewReader([]byte(raw)))); err != nil {
		b.Fatal(err)
	}
	h := &req.Header
	b.ReportAllocs()
	for b.Loop() {
		if bad := s.harden.scan(h.RawHeaders(), &c.reqState); bad != nil {
			b.Fatal(bad.reason)
		}
		s.pickRequestID(&c.reqState, h.Peek(HeaderRequestID))
		if s.harden.checkRequestLine(h) != nil || s.harden.checkHost(h) != nil || s.harden.checkBody(h) != nil {
			b.Fatal("refused")
		}
	}
}

// BenchmarkAccessLine is the separate access line alone (to io.Discard:
// without its write to stderr), what WARDEN_ACCESS_LOG=combined saves on a
// request the policy decided; agent/authz's BenchmarkCheckCachedCombined
// less BenchmarkCheckCached is what the combined line's fields cost.
func BenchmarkAccessLine(b *testing.B) {
	opts := defaultOptions("127.0.0.1:1")
	opts.Log = zerolog.New(io.Discard)
	opts.AccessLog = AccessLogSeparate
	s := New(opts)
	p := &peer{clientIP: "127.0.0.1", peerStr: clientID.String()}
	st := &reqState{requestID: []byte("bench-request-1")}
	method, path := []byte("GET"), []byte("/api/v1/items")
	b.ReportAllocs()
	for b.Loop() {
		s.accessLine(p, st, method, path, 200, 123*time.Microsecond, 0, 5)
	}
}
