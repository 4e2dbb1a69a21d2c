package load

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// maxGRPCCode is the highest gRPC status code (16, UNAUTHENTICATED).
const maxGRPCCode = int(codes.Unauthenticated)

// grpcCall is one worker's unary call, prepared once: its own client
// connection (one HTTP/2 connection, one call on it at a time, as an HTTP
// worker holds one keep-alive connection), the context carrying the request
// metadata, and the request and response messages, reused for every call.
// The messages are google.protobuf.BytesValue: the request holds -body-size
// bytes, the response is whatever the method answers (internal/grpctest's
// Echo.Unary echoes the request).
type grpcCall struct {
	cc      *grpc.ClientConn
	method  string
	md      context.Context
	in, out *wrapperspb.BytesValue
}

// newGRPCCalls opens (lazily: the first call dials) one client connection
// per worker. closeAll closes them all.
func (g *generator) newGRPCCalls(c Config, t target, n int) (calls []*grpcCall, closeAll func(), err error) {
	creds := insecure.NewCredentials()
	if g.tls != nil {
		// credentials.NewTLS clones the configuration and offers ALPN h2.
		creds = credentials.NewTLS(g.tls)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(g.dialGRPC),
		// A retry, transparent or not, would hide an error and send the
		// server an extra call.
		grpc.WithDisableRetry(),
		grpc.WithUserAgent("warden-loadgen"),
	}
	md := metadata.MD{}
	for _, h := range c.Headers {
		name, value, _ := splitHeader(h)
		if strings.EqualFold(name, "Host") {
			opts = append(opts, grpc.WithAuthority(value))
			continue
		}
		md.Append(strings.ToLower(name), value)
	}
	body := wrapperspb.Bytes([]byte(strings.Repeat("x", c.BodySize)))
	ctx := metadata.NewOutgoingContext(context.Background(), md)

	closeAll = func() {
		for _, call := range calls {
			_ = call.cc.Close()
		}
	}
	for range n {
		// passthrough: the address is dialed as given, no resolver.
		cc, err := grpc.NewClient("passthrough:///"+t.addr, opts...)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("load: -grpc: %w", err)
		}
		calls = append(calls, &grpcCall{cc: cc, method: c.GRPCMethod, md: ctx, in: body, out: new(wrapperspb.BytesValue)})
	}
	return calls, closeAll, nil
}

// dialGRPC is the gRPC connections' dialer: loopback only, and counted.
// The TLS handshake, if any, is gRPC's, on the connection returned.
func (g *generator) dialGRPC(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Control: loopbackOnly}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &dialError{err}
	}
	g.conns.Add(1)
	return conn, nil
}

// deadlineSlack is how early before the generator's own deadline a
// DEADLINE_EXCEEDED still counts as that deadline: the server learns it
// from grpc-timeout, which is rounded down to whole units, so its timer can
// fire a little before the client's.
const deadlineSlack = time.Millisecond

// call makes one unary call and returns its gRPC status code. A call that
// ran out of the generator's own timeout is an error (a timeout, as for
// HTTP), whichever side's timer ended it; every other failure is a status,
// with its message: gRPC reports a refused connection or a failed TLS
// handshake as 14 UNAVAILABLE, with the cause in the message.
func (r *grpcCall) call(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(r.md, deadline)
	err := r.cc.Invoke(ctx, r.method, r.in, r.out)
	cancel()
	if err == nil {
		return int(codes.OK), nil
	}
	code := status.Code(err)
	if code == codes.DeadlineExceeded && !time.Now().Before(deadline.Add(-deadlineSlack)) {
		return noStatus, fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return int(code), err
}
