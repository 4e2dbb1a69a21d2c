package load

import (
	"context"
	"errors"
	"maps"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func run(t *testing.T, c Config) *Result {
	t.Helper()
	r, err := Run(context.Background(), c)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("requests=%d errors=%d %v dropped=%d conns=%d p50=%.3f p90=%.3f p99=%.3f max=%.3f ms, samples %v",
		r.Requests, r.Errors, r.ErrorsByKind, r.Dropped, r.ConnsOpened, r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs, r.ErrorSamples)
	return r
}

func checkMonotone(t *testing.T, r *Result) {
	t.Helper()
	if !(0 < r.P50Ms && r.P50Ms <= r.P90Ms && r.P90Ms <= r.P99Ms && r.P99Ms <= r.P999Ms && r.P999Ms <= r.MaxMs) {
		t.Errorf("percentiles not monotone: p50 %v p90 %v p99 %v p99.9 %v max %v", r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms, r.MaxMs)
	}
}

func TestClosedLoopOverMTLSCountsEveryRequest(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p, hello)
	r := run(t, mtlsConfig(p, s))

	if r.Requests == 0 || r.Errors != 0 || len(r.ErrorsByKind) != 0 {
		t.Fatalf("requests %d, errors %d %v: want >0 requests and no error", r.Requests, r.Errors, r.ErrorsByKind)
	}
	if got := s.requests.Load(); got != r.Requests {
		t.Errorf("server counted %d requests, generator %d", got, r.Requests)
	}
	if got := s.spiffePeer.Load(); got != r.Requests {
		t.Errorf("%d of %d requests came with the client SPIFFE ID", got, r.Requests)
	}
	if got := s.accepted.Load(); got < 1 || got > 4 || got != r.ConnsOpened {
		t.Errorf("server accepted %d connections, generator opened %d: want the same, 1..4 (keep-alive)", got, r.ConnsOpened)
	}
	if r.Dropped != 0 {
		t.Errorf("dropped %d in a closed loop", r.Dropped)
	}
	if r.DurationS < 0.3 || r.DurationS > 2 || r.RPS <= 0 {
		t.Errorf("duration %vs, rps %v", r.DurationS, r.RPS)
	}
	checkMonotone(t, r)
}

func TestUnexpectedStatusIsCountedByCode(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name   string
		status int
		expect int
		want   string // error kind, "" for success
	}{
		{"500 is an error by default", 500, 0, "status_500"},
		{"204 is success by default", 204, 0, ""},
		{"204 is an error when 200 is expected", 204, 200, "status_204"},
		{"404 is success when expected", 404, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, p, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(tt.status) })
			c := mtlsConfig(p, s)
			c.Duration = 150 * time.Millisecond
			c.ExpectStatus = tt.expect
			r := run(t, c)
			if r.Requests == 0 || s.requests.Load() != r.Requests {
				t.Fatalf("generator %d requests, server %d", r.Requests, s.requests.Load())
			}
			if tt.want == "" {
				if r.Errors != 0 {
					t.Errorf("errors %v, want none", r.ErrorsByKind)
				}
				checkMonotone(t, r)
				return
			}
			if want := map[string]int64{tt.want: r.Requests}; r.Errors != r.Requests || !maps.Equal(r.ErrorsByKind, want) {
				t.Errorf("errors %d %v, want %v", r.Errors, r.ErrorsByKind, want)
			}
			if r.P50Ms != 0 || r.MaxMs != 0 {
				t.Errorf("latency p50 %v max %v without a successful request", r.P50Ms, r.MaxMs)
			}
		})
	}
}

func TestOpenLoopMeasuresFromIntendedSendTime(t *testing.T) {
	// 100 req/s intended, one connection to a server that takes 20ms: the
	// generator can send 50/s, so the backlog grows by one request every
	// 20ms and so does latency measured from the intended time.
	const delay = 20 * time.Millisecond
	p := newPKI(t)
	s := startServer(t, p, func(ctx *fasthttp.RequestCtx) { time.Sleep(delay) })
	c := mtlsConfig(p, s)
	c.Connections = 1
	c.Rate = 100
	c.Duration = 600 * time.Millisecond
	r := run(t, c)

	if r.Errors != 0 || r.Requests == 0 {
		t.Fatalf("requests %d errors %v", r.Requests, r.ErrorsByKind)
	}
	if got := s.requests.Load(); got != r.Requests {
		t.Errorf("server counted %d requests, generator %d", got, r.Requests)
	}
	const scheduled = 60 // 600ms at 100/s
	if r.Requests+r.Dropped != scheduled || r.Dropped < scheduled/4 {
		t.Errorf("requests %d + dropped %d: want %d scheduled, a large part dropped", r.Requests, r.Dropped, scheduled)
	}
	delayMs := float64(delay) / float64(time.Millisecond)
	if r.P50Ms < delayMs || r.P99Ms < delayMs {
		t.Errorf("p50 %vms p99 %vms: want at least the %vms service time", r.P50Ms, r.P99Ms, delayMs)
	}
	// The last requests waited for most of the run: a closed loop would
	// report about 20ms here.
	if r.MaxMs < 10*delayMs || r.P99Ms < 1.5*r.P50Ms {
		t.Errorf("max %vms p50 %vms p99 %vms: want latency growing with the backlog", r.MaxMs, r.P50Ms, r.P99Ms)
	}
	checkMonotone(t, r)
}

func TestOpenLoopAccountsForEveryScheduledRequest(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p, hello)
	c := mtlsConfig(p, s)
	c.Rate = 200
	c.Duration = 300 * time.Millisecond
	c.Warmup = 100 * time.Millisecond
	r := run(t, c)

	// 300ms at 200/s after a 100ms warmup: slots 20..79. How many get sent
	// depends on the scheduler (CI runs test packages side by side on two
	// cores), so what is checked is the accounting: every scheduled slot is
	// either sent or counted as dropped, and most are sent.
	if r.Requests+r.Dropped != 60 || r.Requests < 30 || r.Errors != 0 {
		t.Errorf("requests %d dropped %d errors %v: want 60 scheduled, each sent or dropped, no error", r.Requests, r.Dropped, r.ErrorsByKind)
	}
	if got := s.requests.Load(); got != 20+r.Requests {
		t.Errorf("server counted %d requests: want 20 warmup + %d measured", got, r.Requests)
	}
	checkMonotone(t, r)
}

func TestMaxRequestsBoundsTheRun(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p, hello)
	for _, rate := range []float64{0, 1000} {
		c := mtlsConfig(p, s)
		c.Duration = 10 * time.Second
		c.MaxRequests = 25
		c.Rate = rate
		before := s.requests.Load()
		r := run(t, c)
		if r.Requests != 25 || r.Dropped != 0 || s.requests.Load()-before != 25 {
			t.Errorf("rate %v: requests %d dropped %d server %d: want 25, 0, 25", rate, r.Requests, r.Dropped, s.requests.Load()-before)
		}
	}
}

func TestSentCountsTheWarmupToo(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p, hello)
	for _, rate := range []float64{0, 2000} {
		c := mtlsConfig(p, s)
		c.Warmup, c.Duration, c.Rate = 150*time.Millisecond, 150*time.Millisecond, rate
		before := s.requests.Load()
		r := run(t, c)
		got := s.requests.Load() - before
		if r.Sent != got || r.Sent <= r.Requests || r.Requests == 0 {
			t.Errorf("rate %v: sent %d, measured %d, the server saw %d: want sent = the server's count, more than measured (the warmup)",
				rate, r.Sent, r.Requests, got)
		}
	}
}

func TestNewConnDialsPerRequest(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p, hello)
	c := mtlsConfig(p, s)
	c.Connections = 2
	c.Duration = 200 * time.Millisecond
	c.NewConn = true
	r := run(t, c)

	if r.Requests == 0 || r.Errors != 0 {
		t.Fatalf("requests %d errors %v", r.Requests, r.ErrorsByKind)
	}
	acc, hs, req := s.accepted.Load(), s.handshakes.Load(), s.requests.Load()
	if acc != r.Requests || hs != r.Requests || req != r.Requests || r.ConnsOpened != r.Requests {
		t.Errorf("server accepted %d connections, %d handshakes, %d requests; generator sent %d, opened %d: want all equal",
			acc, hs, req, r.Requests, r.ConnsOpened)
	}
}

func TestRequestShape(t *testing.T) {
	p := newPKI(t)
	var bad []string
	s := startServer(t, p, func(ctx *fasthttp.RequestCtx) {
		switch {
		case string(ctx.Method()) != "POST":
			bad = append(bad, "method "+string(ctx.Method()))
		case len(ctx.PostBody()) != 1000:
			bad = append(bad, "body length")
		case string(ctx.Request.Header.Peek("X-Test")) != "a: b":
			bad = append(bad, "X-Test "+string(ctx.Request.Header.Peek("X-Test")))
		case string(ctx.Host()) != "app.local":
			bad = append(bad, "host "+string(ctx.Host()))
		}
	})
	c := mtlsConfig(p, s)
	c.Connections = 1 // the handler appends without a lock
	c.Duration = 100 * time.Millisecond
	c.Method = "POST"
	c.BodySize = 1000
	c.Headers = []string{"X-Test: a: b", "Host: app.local"}
	r := run(t, c)
	if r.Requests == 0 || r.Errors != 0 || len(bad) != 0 {
		t.Errorf("requests %d errors %v, server saw: %v", r.Requests, r.ErrorsByKind, bad)
	}
}

func TestFailuresAreCountedByKind(t *testing.T) {
	p := newPKI(t)
	other := newPKI(t) // a CA that trusts neither side
	mtls := startServer(t, p, hello)
	plain := startServer(t, nil, hello)
	slow := startServer(t, p, func(*fasthttp.RequestCtx) { time.Sleep(300 * time.Millisecond) })
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedURL := "https://" + closed.Addr().String() + "/"
	closed.Close()
	hangup, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hangup.Close() })
	go func() { // closes every connection without answering, until closed
		for {
			c, err := hangup.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	tests := []struct {
		name   string
		config func(c *Config)
		want   string
	}{
		{"no client certificate is a tls_handshake error", func(c *Config) { c.CertFile, c.KeyFile = "", "" }, "tls_handshake"},
		{"client certificate from another CA is a tls_handshake error", func(c *Config) { c.CertFile, c.KeyFile = other.certFile, other.keyFile }, "tls_handshake"},
		{"server certificate from an untrusted CA is a tls_handshake error", func(c *Config) { c.CAFile = other.caFile }, "tls_handshake"},
		{"server name not in the certificate is a tls_handshake error", func(c *Config) { c.ServerName = "elsewhere.local" }, "tls_handshake"},
		{"https to a plaintext server is a tls_handshake error", func(c *Config) { c.URL = "https" + strings.TrimPrefix(plain.url, "http") }, "tls_handshake"},
		{"closed port is conn_refused", func(c *Config) { c.URL = refusedURL }, "conn_refused"},
		{"server hanging up without a response is conn_reset", func(c *Config) {
			c.URL = "http://" + hangup.Addr().String() + "/"
			c.CertFile, c.KeyFile, c.CAFile = "", "", ""
		}, "conn_reset"},
		{"slow response is a timeout", func(c *Config) {
			c.URL = slow.url
			c.Timeout = 50 * time.Millisecond
			c.Connections = 1
			c.MaxRequests = 2
		}, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mtlsConfig(p, mtls)
			c.Connections = 2
			c.Duration = 150 * time.Millisecond
			c.MaxRequests = 50
			tt.config(&c)
			r := run(t, c)
			if want := map[string]int64{tt.want: r.Requests}; r.Requests == 0 || r.Errors != r.Requests || !maps.Equal(r.ErrorsByKind, want) {
				t.Errorf("requests %d errors %d %v: want all %s", r.Requests, r.Errors, r.ErrorsByKind, tt.want)
			}
			if r.ErrorSamples[tt.want] == "" {
				t.Errorf("no sample message for %s", tt.want)
			}
		})
	}
	if got := mtls.requests.Load(); got != 0 {
		t.Errorf("the mTLS server answered %d requests to clients it must refuse", got)
	}
}

func TestInterruptStopsEarlyAndKeepsResults(t *testing.T) {
	p := newPKI(t)
	for _, rate := range []float64{0, 500} {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var served atomic.Int64
		s := startServer(t, p, func(*fasthttp.RequestCtx) {
			// Stands in for SIGINT, which main turns into this cancellation.
			if served.Add(1) == 50 {
				cancel()
			}
		})
		c := mtlsConfig(p, s)
		c.Connections = 1
		c.Duration = time.Minute
		c.Rate = rate
		start := time.Now()
		r, err := Run(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Interrupted || r.Requests < 50 || r.Errors != 0 || time.Since(start) > 20*time.Second {
			t.Errorf("rate %v: interrupted %v requests %d errors %v after %s", rate, r.Interrupted, r.Requests, r.ErrorsByKind, time.Since(start))
		}
	}
}

func TestConfigIsRefusedBeforeAnyDial(t *testing.T) {
	valid := DefaultConfig()
	valid.URL = "https://127.0.0.1:1/"
	tests := []struct {
		name   string
		config func(c *Config)
		want   string
	}{
		{"non-loopback IP", func(c *Config) { c.URL = "https://10.0.0.1/" },
			`load: -url "https://10.0.0.1/": host "10.0.0.1": not a loopback address (want 127.0.0.0/8, ::1 or localhost)`},
		{"non-loopback name", func(c *Config) { c.URL = "http://example.com:8080/x" },
			`load: -url "http://example.com:8080/x": host "example.com": not a loopback address (want 127.0.0.0/8, ::1 or localhost)`},
		{"unspecified address", func(c *Config) { c.URL = "http://0.0.0.0:80/" },
			`load: -url "http://0.0.0.0:80/": host "0.0.0.0": not a loopback address (want 127.0.0.0/8, ::1 or localhost)`},
		{"other scheme", func(c *Config) { c.URL = "ftp://127.0.0.1/" },
			`load: -url "ftp://127.0.0.1/": scheme "ftp": want http or https`},
		{"duration above 5m", func(c *Config) { c.Duration = 5*time.Minute + time.Second },
			`load: -d 5m1s: want more than 0 and at most 5m0s`},
		{"zero connections", func(c *Config) { c.Connections = 0 }, `load: -c 0: want 1..1024`},
		{"negative rate", func(c *Config) { c.Rate = -1 }, `load: -rate -1: want 0 (closed loop) or up to 10000000 requests/s`},
		{"cert without key", func(c *Config) { c.CertFile = "c.pem" }, `load: -cert "c.pem" and -key "": give both or neither`},
		{"client cert over plaintext", func(c *Config) { c.URL = "http://127.0.0.1:1/"; c.CertFile, c.KeyFile = "c", "k" },
			`load: -url "http://127.0.0.1:1/" is plaintext http: -cert, -key, -cacert and -server-name need https`},
		{"malformed header", func(c *Config) { c.Headers = []string{"NoColon"} }, `load: -H "NoColon": want 'Name: value'`},
		{"bad method", func(c *Config) { c.Method = "GE T" }, `load: -method "GE T": not an HTTP method token`},
		{"gRPC method without service", func(c *Config) { c.GRPCMethod = "/Unary" },
			`load: -grpc "/Unary": want a full method name /package.Service/Method`},
		{"gRPC method without slash", func(c *Config) { c.GRPCMethod = "pkg.Svc/Unary" },
			`load: -grpc "pkg.Svc/Unary": want a full method name /package.Service/Method`},
		{"gRPC code out of range", func(c *Config) { c.GRPCMethod = "/pkg.Svc/M"; c.ExpectGRPCCode = 17 },
			`load: -expect-grpc-code 17: want 0 (OK) to 16`},
		{"gRPC code without gRPC", func(c *Config) { c.ExpectGRPCCode = 7 }, `load: -expect-grpc-code 7: only with -grpc`},
		{"gRPC with a new connection per request", func(c *Config) { c.GRPCMethod = "/pkg.Svc/M"; c.NewConn = true },
			`load: -newconn: not with -grpc (each worker keeps one gRPC connection)`},
		{"gRPC with an HTTP status", func(c *Config) { c.GRPCMethod = "/pkg.Svc/M"; c.ExpectStatus = 200 },
			`load: -expect-status 200: not with -grpc, use -expect-grpc-code`},
		{"gRPC over TLS with a Host header", func(c *Config) { c.GRPCMethod = "/pkg.Svc/M"; c.Headers = []string{"Host: a"} },
			`load: -H "Host: a": not with -grpc over https, where the authority is the TLS server name (-server-name)`},
		{"gRPC with another method", func(c *Config) { c.GRPCMethod = "/pkg.Svc/M"; c.Method = "PUT" },
			`load: -method "PUT": not with -grpc (gRPC calls are POST)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.config(&c)
			r, err := Run(context.Background(), c)
			if err == nil || err.Error() != tt.want || r != nil {
				t.Errorf("Run = %v, %v\nwant error %s", r, err, tt.want)
			}
		})
	}
	if err := valid.Validate(); err != nil {
		t.Errorf("the base config is refused: %v", err)
	}
}

func TestDialGuardRefusesNonLoopbackAddresses(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:443": true, "127.3.4.5:1": true, "[::1]:80": true,
		"10.0.0.1:443": false, "[2001:db8::1]:443": false, "0.0.0.0:80": false, "localhost:80": false,
	} {
		err := loopbackOnly("tcp", addr, nil)
		if (err == nil) != ok || !ok && !errors.Is(err, ErrNotLoopback) {
			t.Errorf("loopbackOnly(%s) = %v", addr, err)
		}
	}
}

func TestCertificateFileErrorsArePrecise(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	writeFile(t, garbage, []byte("not PEM\n"))
	other := newPKI(t)
	tests := []struct {
		name                string
		cert, key, ca, want string
	}{
		{"missing certificate file", missing, p.keyFile, p.caFile,
			"load: -cert: open " + missing + ": no such file or directory"},
		{"missing key file", p.certFile, missing, p.caFile,
			"load: -key: open " + missing + ": no such file or directory"},
		{"certificate file without PEM", garbage, p.keyFile, p.caFile,
			"load: -cert " + garbage + " with -key " + p.keyFile + ": tls: failed to find any PEM data in certificate input"},
		{"key file without PEM", p.certFile, garbage, p.caFile,
			"load: -cert " + p.certFile + " with -key " + garbage + ": tls: failed to find any PEM data in key input"},
		{"key of another certificate", p.certFile, other.keyFile, p.caFile,
			"load: -cert " + p.certFile + " with -key " + other.keyFile + ": tls: private key does not match public key"},
		{"missing CA file", p.certFile, p.keyFile, missing,
			"load: -cacert: open " + missing + ": no such file or directory"},
		{"CA file without PEM", p.certFile, p.keyFile, garbage,
			"load: -cacert " + garbage + ": no PEM certificate found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.URL = "https://127.0.0.1:1/"
			c.CertFile, c.KeyFile, c.CAFile = tt.cert, tt.key, tt.ca
			_, err := Run(context.Background(), c)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Run error\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestSlotsBefore(t *testing.T) {
	g := &generator{period: 1e9 / 3.0} // 3/s: slots at 0, 333.33ms, 666.67ms, 1s, ...
	for off, want := range map[time.Duration]int64{
		0: 0, 1: 1, 333 * time.Millisecond: 1, 334 * time.Millisecond: 2,
		time.Second: 3, time.Second + 1: 4, -time.Second: 0,
	} {
		if got := g.slotsBefore(off); got != want {
			t.Errorf("slotsBefore(%s) = %d, want %d", off, got, want)
		}
	}
}
