package load

import (
	"context"
	"crypto/tls"
	"maps"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/warden-sidecar/warden/internal/grpctest"
)

// testMethod is the one method of the gRPC test server below.
const testMethod = "/load.test.Echo/Unary"

type unaryFunc func(ctx context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error)

// startGRPCServer serves h as testMethod with a real gRPC server on
// 127.0.0.1:0: over mTLS with ALPN h2 (tls.RequireAndVerifyClientCert
// against p's CA) when p is not nil, in plaintext HTTP/2 (h2c) otherwise.
// It counts what it sees as startServer does; url is the -url to give.
func startGRPCServer(t testing.TB, p *testPKI, h unaryFunc) *testServer {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{}
	var ln net.Listener = countingListener{tcp, &s.accepted}
	scheme := "http"
	if p != nil {
		scheme = "https"
		ln = tls.NewListener(ln, &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{p.serverCert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    p.caPool,
			NextProtos:   []string{"h2"},
			VerifyConnection: func(cs tls.ConnectionState) error {
				s.handshakes.Add(1)
				for _, u := range cs.PeerCertificates[0].URIs {
					if u.String() == clientSPIFFEID {
						s.spiffePeer.Add(1)
					}
				}
				return nil
			},
		})
	}
	s.url = scheme + "://" + tcp.Addr().String() + "/"
	// The TLS listener terminates TLS: the gRPC server sees plaintext
	// HTTP/2 on each connection either way.
	srv := grpc.NewServer()
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "load.test.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Unary", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			s.requests.Add(1)
			return h(ctx, in)
		}}},
	}, nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return s
}

func echo(_ context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	return in, nil
}

// grpcConfig is a short bounded run of testMethod against s, with p's
// client certificate when p is not nil.
func grpcConfig(p *testPKI, s *testServer) Config {
	c := DefaultConfig()
	c.URL = s.url
	if p != nil {
		c.CertFile, c.KeyFile, c.CAFile = p.certFile, p.keyFile, p.caFile
	}
	c.GRPCMethod = testMethod
	c.Connections = 4
	c.Duration = 300 * time.Millisecond
	c.Warmup = 0
	return c
}

func TestGRPCClosedLoopCountsEveryCallOnItsOwnConnections(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		name string
		pki  *testPKI
	}{{"mTLS with the client SVID", p}, {"plaintext h2c", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			s := startGRPCServer(t, tc.pki, echo)
			r := run(t, grpcConfig(tc.pki, s))

			if r.Requests == 0 || r.Errors != 0 || len(r.ErrorsByKind) != 0 {
				t.Fatalf("requests %d, errors %d %v: want >0 requests and no error", r.Requests, r.Errors, r.ErrorsByKind)
			}
			if got := s.requests.Load(); got != r.Requests {
				t.Errorf("server counted %d calls, generator %d", got, r.Requests)
			}
			// One gRPC client connection per worker, kept for the run.
			if got := s.accepted.Load(); got != 4 || r.ConnsOpened != 4 {
				t.Errorf("server accepted %d connections, generator opened %d: want 4, one per worker", got, r.ConnsOpened)
			}
			if tc.pki != nil && (s.handshakes.Load() != 4 || s.spiffePeer.Load() != 4) {
				t.Errorf("%d handshakes, %d with the client SPIFFE ID: want 4 and 4", s.handshakes.Load(), s.spiffePeer.Load())
			}
			if r.Dropped != 0 || r.DurationS < 0.3 || r.DurationS > 2 || r.RPS <= 0 {
				t.Errorf("dropped %d, duration %vs, rps %v", r.Dropped, r.DurationS, r.RPS)
			}
			checkMonotone(t, r)
		})
	}
}

func TestGRPCCallShape(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name      string
		pki       *testPKI
		headers   []string
		authority string
	}{
		{"mTLS: the authority is the TLS server name", p, nil, "localhost"},
		{"h2c: the authority is the Host header", nil, []string{"Host: app.local"}, "app.local"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var bad []string
			s := startGRPCServer(t, tt.pki, func(ctx context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
				md, _ := metadata.FromIncomingContext(ctx)
				get := func(k string) string { return strings.Join(md.Get(k), ",") }
				var why string
				switch {
				case len(in.Value) != 1000:
					why = "message length"
				case get("x-test") != "a: b":
					why = "x-test " + get("x-test")
				case get("authorization") != "Bearer t0k":
					why = "authorization"
				case get(":authority") != tt.authority:
					why = "authority " + get(":authority")
				case !strings.HasPrefix(get("user-agent"), "warden-loadgen"):
					why = "user-agent " + get("user-agent")
				default:
					return in, nil
				}
				mu.Lock()
				bad = append(bad, why)
				mu.Unlock()
				return nil, status.Error(codes.InvalidArgument, why)
			})
			c := grpcConfig(tt.pki, s)
			c.Duration = 100 * time.Millisecond
			c.BodySize = 1000
			c.Headers = append([]string{"X-Test: a: b", "Authorization: Bearer t0k"}, tt.headers...)
			if tt.pki != nil {
				c.ServerName = "localhost"
			}
			r := run(t, c)
			mu.Lock()
			defer mu.Unlock()
			if r.Requests == 0 || r.Errors != 0 || len(bad) != 0 {
				t.Errorf("requests %d errors %v, server saw: %v", r.Requests, r.ErrorsByKind, bad)
			}
		})
	}
}

func TestGRPCStatusIsCountedByCode(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name   string
		code   codes.Code
		expect int
		want   string // error kind, "" for success
		sample string // the first message kept for it
	}{
		{"PERMISSION_DENIED is an error by default", codes.PermissionDenied, 0, "grpc_status_7", "rpc error: code = PermissionDenied desc = refused"},
		{"OK is success by default", codes.OK, 0, "", ""},
		{"UNAUTHENTICATED is success when expected", codes.Unauthenticated, 16, "", ""},
		{"OK is an error when UNAUTHENTICATED is expected", codes.OK, 16, "grpc_status_0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startGRPCServer(t, p, func(_ context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
				if tt.code != codes.OK {
					return nil, status.Error(tt.code, "refused")
				}
				return in, nil
			})
			c := grpcConfig(p, s)
			c.Duration = 150 * time.Millisecond
			c.ExpectGRPCCode = tt.expect
			r := run(t, c)
			if r.Requests == 0 || s.requests.Load() != r.Requests {
				t.Fatalf("generator %d calls, server %d", r.Requests, s.requests.Load())
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
			if got := r.ErrorSamples[tt.want]; got != tt.sample {
				t.Errorf("first message %q, want %q", got, tt.sample)
			}
			if r.P50Ms != 0 || r.MaxMs != 0 {
				t.Errorf("latency p50 %v max %v without a successful call", r.P50Ms, r.MaxMs)
			}
		})
	}
}

func TestGRPCFailuresAreCounted(t *testing.T) {
	p := newPKI(t)
	other := newPKI(t) // a CA that trusts neither side
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedURL := "https://" + closed.Addr().String() + "/"
	closed.Close()
	slow := startGRPCServer(t, p, func(ctx context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		<-ctx.Done() // the client's deadline ends the call
		return nil, ctx.Err()
	})
	mtls := startGRPCServer(t, p, echo)

	tests := []struct {
		name     string
		config   func() Config
		want     string // the only error kind
		inSample string
	}{
		{"refused connection is 14 UNAVAILABLE", func() Config {
			c := grpcConfig(p, mtls)
			c.URL = refusedURL
			return c
		}, "grpc_status_14", "connection refused"},
		{"untrusted server certificate is 14 UNAVAILABLE", func() Config {
			c := grpcConfig(other, mtls)
			return c
		}, "grpc_status_14", "certificate signed by unknown authority"},
		{"a call past -timeout is a timeout", func() Config {
			c := grpcConfig(p, slow)
			c.Timeout = 50 * time.Millisecond
			return c
		}, "timeout", "DeadlineExceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.config()
			c.Connections = 2
			c.Duration = 200 * time.Millisecond
			c.MaxRequests = 20
			r := run(t, c)
			if r.Requests == 0 || r.Errors != r.Requests {
				t.Fatalf("requests %d errors %d: want every call to fail", r.Requests, r.Errors)
			}
			if want := map[string]int64{tt.want: r.Requests}; !maps.Equal(r.ErrorsByKind, want) {
				t.Errorf("errors %v, want %v", r.ErrorsByKind, want)
			}
			if s := r.ErrorSamples[tt.want]; !strings.Contains(s, tt.inSample) {
				t.Errorf("first message %q, want it to contain %q", s, tt.inSample)
			}
		})
	}
	if got := mtls.requests.Load(); got != 0 {
		t.Errorf("the server behind an untrusted certificate answered %d calls", got)
	}
}

func TestGRPCOpenLoopMeasuresFromIntendedSendTime(t *testing.T) {
	// As TestOpenLoopMeasuresFromIntendedSendTime: 100 calls/s intended on
	// one connection to a method that takes 20ms, so half are sent, and
	// latency grows with the backlog.
	const delay = 20 * time.Millisecond
	s := startGRPCServer(t, nil, func(_ context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		time.Sleep(delay)
		return in, nil
	})
	c := grpcConfig(nil, s)
	c.Connections = 1
	c.Rate = 100
	c.Duration = 600 * time.Millisecond
	r := run(t, c)

	if r.Errors != 0 || r.Requests == 0 {
		t.Fatalf("requests %d errors %v", r.Requests, r.ErrorsByKind)
	}
	if got := s.requests.Load(); got != r.Requests {
		t.Errorf("server counted %d calls, generator %d", got, r.Requests)
	}
	const scheduled = 60
	if r.Requests+r.Dropped != scheduled || r.Dropped < scheduled/4 {
		t.Errorf("requests %d + dropped %d: want %d scheduled, a large part dropped", r.Requests, r.Dropped, scheduled)
	}
	delayMs := float64(delay) / float64(time.Millisecond)
	if r.P50Ms < delayMs || r.MaxMs < 10*delayMs || r.P99Ms < 1.5*r.P50Ms {
		t.Errorf("p50 %vms p99 %vms max %vms: want latency growing with the backlog", r.P50Ms, r.P99Ms, r.MaxMs)
	}
	checkMonotone(t, r)
}

// The bench's gRPC app (bench/upstream -grpc) is internal/grpctest's
// service: the generator's call is one it answers.
func TestGRPCAgainstTheBenchApp(t *testing.T) {
	app := grpctest.Start(t)
	c := DefaultConfig()
	c.URL = "http://" + app.Addr + "/"
	c.GRPCMethod = grpctest.Method("Unary")
	c.BodySize = 5
	c.Connections = 2
	c.Warmup = 0
	c.Duration = 100 * time.Millisecond
	c.Rate = 200
	r := run(t, c)
	if r.Requests == 0 || r.Errors != 0 || app.Calls.Load() != r.Requests {
		t.Errorf("requests %d errors %v, the app counted %d calls", r.Requests, r.ErrorsByKind, app.Calls.Load())
	}
}
