// Package grpctest is a small gRPC service for warden's end-to-end tests:
// the service of echo.proto, written by hand as a grpc.ServiceDesc over
// google.protobuf.BytesValue (no generated code, no protoc), a server on
// loopback and the client calls the tests make.
package grpctest

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Service is the fully qualified service name of echo.proto.
const Service = "warden.test.Echo"

// Method is the full path of one of the service's methods.
func Method(name string) string { return "/" + Service + "/" + name }

// Server is the running service, counting the calls that reached it.
type Server struct {
	Addr  string
	Calls atomic.Int64
	// Sent counts the messages ServerStream handed to gRPC's transport:
	// how far it got ahead of a slow reader.
	Sent    atomic.Int64
	srv     *grpc.Server
	stopped chan struct{}
	stop    sync.Once
}

// Start serves the service in plaintext HTTP/2 (h2c, what gRPC servers
// speak behind a sidecar) on 127.0.0.1 until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New()
	s.Addr = ln.Addr().String()
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return s
}

// New returns the service on a gRPC server that does not serve yet: Start
// serves it for a test, bench/upstream -grpc for the benchmarks.
func New() *Server {
	s := &Server{srv: grpc.NewServer(), stopped: make(chan struct{})}
	s.srv.RegisterService(&serviceDesc, s)
	return s
}

// Serve serves the service on ln in plaintext HTTP/2 (h2c) until Stop.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Stop stops the server at once (the app is down).
func (s *Server) Stop() {
	s.stop.Do(func() { close(s.stopped) })
	s.srv.Stop()
}

type bytesValue = wrapperspb.BytesValue

func (s *Server) unary(ctx context.Context, in *bytesValue) (*bytesValue, error) {
	s.Calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs(
		"seen-xfcc", first(md, "x-forwarded-client-cert"),
		"seen-request-id", first(md, "x-request-id"),
		"seen-authorization", strconv.Itoa(len(md.Get("authorization"))),
	))
	return in, nil
}

// slow is an app that ignores its deadline (grpc-timeout): only the
// caller, or warden, can end the call before SlowFor.
func (s *Server) slow(_ context.Context, in *bytesValue) (*bytesValue, error) {
	s.Calls.Add(1)
	select {
	case <-time.After(SlowFor):
	case <-s.stopped:
	}
	return in, nil
}

// SlowFor is how long Slow takes to answer.
const SlowFor = 10 * time.Second

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: Service,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Unary", Handler: unaryHandler((*Server).unary)},
		{MethodName: "Admin", Handler: unaryHandler((*Server).unary)},
		{MethodName: "Slow", Handler: unaryHandler((*Server).slow)},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "ServerStream", ServerStreams: true, Handler: serverStream},
		{StreamName: "ClientStream", ClientStreams: true, Handler: clientStream},
		{StreamName: "Bidi", ServerStreams: true, ClientStreams: true, Handler: bidi},
	},
	Metadata: "echo.proto",
}

func unaryHandler(fn func(*Server, context.Context, *bytesValue) (*bytesValue, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		in := new(bytesValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		return fn(srv.(*Server), ctx, in)
	}
}

// MessageSize is the size of each message ServerStream sends.
const MessageSize = 1 << 10

func serverStream(srv any, stream grpc.ServerStream) error {
	s := srv.(*Server)
	s.Calls.Add(1)
	in := new(bytesValue)
	if err := stream.RecvMsg(in); err != nil {
		return err
	}
	n, err := strconv.Atoi(string(in.Value))
	if err != nil {
		return err
	}
	msg := make([]byte, MessageSize)
	for i := range n {
		copy(msg, strconv.Itoa(i)+" ")
		if err := stream.SendMsg(wrapperspb.Bytes(msg)); err != nil {
			return err
		}
		s.Sent.Add(1)
	}
	return nil
}

func clientStream(srv any, stream grpc.ServerStream) error {
	srv.(*Server).Calls.Add(1)
	n := 0
	for {
		in := new(bytesValue)
		err := stream.RecvMsg(in)
		if errors.Is(err, io.EOF) {
			return stream.SendMsg(wrapperspb.Bytes([]byte(strconv.Itoa(n))))
		}
		if err != nil {
			return err
		}
		n++
	}
}

func bidi(srv any, stream grpc.ServerStream) error {
	srv.(*Server).Calls.Add(1)
	for {
		in := new(bytesValue)
		err := stream.RecvMsg(in)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.SendMsg(in); err != nil {
			return err
		}
	}
}

// Stream descriptions for grpc.ClientConn.NewStream.
var (
	ServerStreamDesc = &grpc.StreamDesc{StreamName: "ServerStream", ServerStreams: true}
	ClientStreamDesc = &grpc.StreamDesc{StreamName: "ClientStream", ClientStreams: true}
	BidiDesc         = &grpc.StreamDesc{StreamName: "Bidi", ServerStreams: true, ClientStreams: true}
)
