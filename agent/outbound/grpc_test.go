package outbound

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/spiffe"
	"github.com/warden-sidecar/warden/spiffe/spiffetest"
)

// A real gRPC client speaking h2c to the outbound listener calls a real
// gRPC server behind mTLS (grpc-go insists on ALPN h2): a unary call, a
// status carried only in trailers, and a server stream that delivers an
// update while it is open.
func TestGRPCThroughOutbound(t *testing.T) {
	ca := spiffetest.NewCA(t, td)
	bundles := x509bundle.NewSet(ca.Bundle())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	hs.SetServingStatus("shop.Orders", healthpb.HealthCheckResponse_SERVING)
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(spiffe.ServerTLSConfig(ca.SVID(grpcID, time.Hour), bundles))))
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)

	s := New(Options{
		Routes: []Route{{Host: "orders.grpc", Addr: ln.Addr().String(), ID: grpcID, HTTP2: true}},
		SVID:   ca.SVID(ownID, time.Hour), Bundles: bundles,
		Timeout: 10 * time.Second, MaxConnsPerRoute: 8,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
		MaxHeaderBytes: 8192, MaxRequestBodyBytes: 1 << 20, MaxConnections: 64,
		Log: zerolog.Nop(),
	})
	oln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(oln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})

	cc, err := grpc.NewClient("passthrough:///"+oln.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("orders.grpc"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "shop.Orders"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("unary Check: %v %v", resp, err)
	}
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "shop.Unknown"}); status.Code(err) != codes.NotFound {
		t.Errorf("Check of an unknown service: %v, want NotFound from the trailers", err)
	}
	w, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "shop.Orders"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch message: %v %v", m, err)
	}
	hs.SetServingStatus("shop.Orders", healthpb.HealthCheckResponse_NOT_SERVING)
	if m, err := w.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch update while the stream is open: %v %v", m, err)
	}
}

// warden's own refusals reach a gRPC client as gRPC statuses (the inbound
// path's table), with the error code as the message.
func TestGRPCClientGetsRefusalsAsStatuses(t *testing.T) {
	ca := spiffetest.NewCA(t, td)
	bundles := x509bundle.NewSet(ca.Bundle())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(spiffe.ServerTLSConfig(ca.SVID(grpcID, time.Hour), bundles))))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	s := New(Options{
		Routes: []Route{
			{Host: "impostor.grpc", Addr: ln.Addr().String(), ID: ordersID, HTTP2: true},
			{Host: "down.grpc", Addr: closedAddr, ID: grpcID, HTTP2: true},
		},
		SVID: ca.SVID(ownID, time.Hour), Bundles: bundles,
		Timeout: 10 * time.Second, MaxConnsPerRoute: 8,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
		MaxHeaderBytes: 8192, MaxRequestBodyBytes: 1 << 20, MaxConnections: 64,
		Log: zerolog.Nop(),
	})
	oln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(oln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	for _, tt := range []struct {
		authority string
		code      codes.Code
		message   string
	}{
		{"unknown.grpc", codes.PermissionDenied, "unknown_destination"},
		{"impostor.grpc", codes.Unavailable, "destination_unverified"},
		{"down.grpc", codes.Unavailable, "destination_unavailable"},
	} {
		cc, err := grpc.NewClient("passthrough:///"+oln.Addr().String(),
			grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(tt.authority))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		cc.Close()
		if st, _ := status.FromError(err); st.Code() != tt.code || st.Message() != tt.message {
			t.Errorf("%s: %v, want %s %q", tt.authority, err, tt.code, tt.message)
		}
	}
}
