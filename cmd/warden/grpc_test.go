package main

// gRPC through the real binary: a real gRPC server (internal/grpctest)
// behind warden, called by a real gRPC client presenting a client SVID
// over mTLS with ALPN h2.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/warden-sidecar/warden/agent/token/tokentest"
	"github.com/warden-sidecar/warden/internal/grpctest"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// grpcPolicy allows the Echo service but its Admin method, by input.grpc.
const grpcPolicy = `package warden.authz

default allow := false

allow if {
	input.grpc.service == "warden.test.Echo"
	input.grpc.method != "Admin"
}
`

// grpcSidecar is warden in front of a gRPC app, with what a client needs.
type grpcSidecar struct {
	*process
	app     *grpctest.Server
	addr    string
	admin   string
	dir     string // the client's SVID
	ownID   string
	clients []*grpc.ClientConn
}

func startGRPCSidecar(t *testing.T, env ...string) *grpcSidecar {
	t.Helper()
	devDir := t.TempDir()
	clientDir := filepath.Join(t.TempDir(), "client")
	if out, err := devIssueCmd(t, devDir, "spiffe://warden.local/ns/default/sa/client", clientDir); err != nil {
		t.Fatalf("dev issue: %v\n%s", err, out)
	}
	app := grpctest.Start(t)
	p := startWarden(t, append([]string{
		"WARDEN_IDENTITY=dev", "WARDEN_DEV_DIR=" + devDir,
		"WARDEN_INBOUND_ADDR=127.0.0.1:0", "WARDEN_ADMIN_ADDR=127.0.0.1:0", "WARDEN_UPSTREAM_ADDR=" + app.Addr,
		"WARDEN_POLICY_BUNDLE=" + policyDir(t, grpcPolicy),
	}, env...)...)
	s := &grpcSidecar{process: p, app: app, addr: p.listenAddr(t, "inbound"), admin: "http://" + p.listenAddr(t, "admin"),
		dir: clientDir, ownID: "spiffe://warden.local/ns/default/sa/app"}
	testenv.Poll(t, "readiness", 15*time.Second, func() bool { code, _ := get(t, s.admin+"/readyz"); return code == 200 })
	return s
}

// client is a new gRPC connection to warden with the client's SVID; opts
// add to the defaults.
func (s *grpcSidecar) client(t *testing.T, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(s.addr, append([]grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(t, s.dir))),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func unary(ctx context.Context, cc *grpc.ClientConn, method, value string, opts ...grpc.CallOption) (*wrapperspb.BytesValue, error) {
	out := new(wrapperspb.BytesValue)
	err := cc.Invoke(ctx, grpctest.Method(method), wrapperspb.Bytes([]byte(value)), out, opts...)
	return out, err
}

// wantStatus checks a call's gRPC status code and message.
func wantStatus(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := grpcstatus.FromError(err)
	if st.Code() != code || (msg != "" && st.Message() != msg) {
		t.Errorf("%s: got %v %q, want %v %q", what, st.Code(), st.Message(), code, msg)
	}
}

func withToken(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// The contract of issue 17 for each upstream protocol that speaks gRPC to
// the app: identity, token, policy by method, decision log and metrics as
// for HTTP/1.1, refusals as gRPC statuses, streams of every kind with
// back-pressure, the deadline, the app down.
func TestGRPCThroughWarden(t *testing.T) {
	for _, mode := range []string{"h2c", "auto"} {
		t.Run(mode, func(t *testing.T) { testGRPCThroughWarden(t, mode) })
	}
}

func testGRPCThroughWarden(t *testing.T, mode string) {
	key := tokentest.NewKey(t, "ES256", "sts")
	decisions := filepath.Join(t.TempDir(), "decisions.log")
	s := startGRPCSidecar(t, "WARDEN_UPSTREAM_PROTOCOL="+mode, "WARDEN_DECISION_LOG="+decisions,
		"WARDEN_JWT_JWKS="+writeJWKS(t, key), "WARDEN_JWT_ISSUERS="+jwtIssuer, "WARDEN_JWT_AUDIENCES="+jwtAudience)
	tok := secret(t, "bearer token", key.Mint(t, userClaims("alice")))
	// Fixed flow-control windows (no BDP probing), so that the slow reader
	// below holds a known amount in flight on the client's side.
	cc := s.client(t, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	authed := withToken(ctx, tok)

	t.Run("allowed unary call reaches the app with warden's identity headers", func(t *testing.T) {
		var header metadata.MD
		out, err := unary(authed, cc, "Unary", "hello", grpc.Header(&header))
		if err != nil || string(out.Value) != "hello" {
			t.Fatalf("Unary: %v %q", err, out.Value)
		}
		wantXFCC := "By=" + s.ownID + ";URI=spiffe://warden.local/ns/default/sa/client"
		if got := header.Get("seen-xfcc"); len(got) != 1 || got[0] != wantXFCC {
			t.Errorf("the app saw XFCC %q, want %q", got, wantXFCC)
		}
		if seen, back := header.Get("seen-request-id"), header.Get("x-request-id"); len(seen) != 1 || seen[0] == "" || len(back) != 1 || back[0] != seen[0] {
			t.Errorf("request id: the app saw %q, the client got %q", seen, back)
		}
		if got := header.Get("seen-authorization"); len(got) != 1 || got[0] != "1" {
			t.Errorf("the app saw %v Authorization headers, want the client's one", got)
		}
	})

	t.Run("a method the policy denies gets PERMISSION_DENIED and never reaches the app", func(t *testing.T) {
		before := s.app.Calls.Load()
		_, err := unary(authed, cc, "Admin", "x")
		wantStatus(t, "Admin", err, codes.PermissionDenied, "forbidden")
		if n := s.app.Calls.Load(); n != before {
			t.Errorf("the app got %d calls for a denied method", n-before)
		}
	})

	t.Run("no token gets UNAUTHENTICATED", func(t *testing.T) {
		before := s.app.Calls.Load()
		_, err := unary(ctx, cc, "Unary", "x")
		wantStatus(t, "no token", err, codes.Unauthenticated, "unauthorized")
		if n := s.app.Calls.Load(); n != before {
			t.Errorf("the app got a call without a token")
		}
	})

	t.Run("a path that is no gRPC method gets INVALID_ARGUMENT from warden", func(t *testing.T) {
		// The app would answer 12 UNIMPLEMENTED ("malformed method name")
		// before any handler ran, so its call count cannot tell; warden's
		// own 3 with its error code is what proves the app was not asked.
		err := cc.Invoke(authed, "/warden.test.Echo", wrapperspb.Bytes(nil), new(wrapperspb.BytesValue))
		wantStatus(t, "path without a method", err, codes.InvalidArgument, "bad_request")
	})

	t.Run("server, client and bidirectional streams carry 1000 messages each", func(t *testing.T) {
		const n = 1000
		st, err := cc.NewStream(authed, grpctest.ServerStreamDesc, grpctest.Method("ServerStream"))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SendMsg(wrapperspb.Bytes([]byte(strconv.Itoa(n)))); err != nil {
			t.Fatal(err)
		}
		_ = st.CloseSend()
		got := 0
		for {
			m := new(wrapperspb.BytesValue)
			err := st.RecvMsg(m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("server stream after %d: %v", got, err)
			}
			if want := strconv.Itoa(got) + " "; !strings.HasPrefix(string(m.Value), want) {
				t.Fatalf("server stream message %d starts %.8q", got, m.Value)
			}
			got++
		}
		if got != n {
			t.Errorf("server stream: %d messages, want %d", got, n)
		}

		cs, err := cc.NewStream(authed, grpctest.ClientStreamDesc, grpctest.Method("ClientStream"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := cs.SendMsg(wrapperspb.Bytes([]byte(strconv.Itoa(i)))); err != nil {
				t.Fatalf("client stream send %d: %v", i, err)
			}
		}
		_ = cs.CloseSend()
		count := new(wrapperspb.BytesValue)
		if err := cs.RecvMsg(count); err != nil || string(count.Value) != strconv.Itoa(n) {
			t.Errorf("client stream: the app counted %q (%v), want %d", count.Value, err, n)
		}

		bs, err := cc.NewStream(authed, grpctest.BidiDesc, grpctest.Method("Bidi"))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if err := bs.SendMsg(wrapperspb.Bytes([]byte(fmt.Sprint("m", i)))); err != nil {
					t.Errorf("bidi send %d: %v", i, err)
					return
				}
			}
			_ = bs.CloseSend()
		}()
		for i := range n {
			m := new(wrapperspb.BytesValue)
			if err := bs.RecvMsg(m); err != nil || string(m.Value) != fmt.Sprint("m", i) {
				t.Fatalf("bidi receive %d: %q %v", i, m.Value, err)
			}
		}
		if err := bs.RecvMsg(new(wrapperspb.BytesValue)); !errors.Is(err, io.EOF) {
			t.Errorf("bidi end: %v, want EOF", err)
		}
		wg.Wait()
	})

	t.Run("a slow reader holds the app back: flow control, not warden's memory", func(t *testing.T) {
		const total = 20000 // 20 MiB of messages
		sentBefore := s.app.Sent.Load()
		rssBefore := vmRSS(t, s.cmd.Process.Pid)
		sctx, scancel := context.WithCancel(authed)
		defer scancel()
		st, err := cc.NewStream(sctx, grpctest.ServerStreamDesc, grpctest.Method("ServerStream"))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SendMsg(wrapperspb.Bytes([]byte(strconv.Itoa(total)))); err != nil {
			t.Fatal(err)
		}
		_ = st.CloseSend()
		read := 0
		for ; read < 10; read++ {
			if err := st.RecvMsg(new(wrapperspb.BytesValue)); err != nil {
				t.Fatal(err)
			}
		}
		// The reader stops. The app sends until every window on the way
		// is full, then blocks: wait until its count stops moving.
		var sent int64
		stable := 0
		testenv.Poll(t, "the app to block on flow control", 20*time.Second, func() bool {
			n := s.app.Sent.Load() - sentBefore
			if n == sent {
				stable++
			} else {
				sent, stable = n, 0
			}
			return stable >= 10 || n >= total
		})
		// Windows on the way: the client's 64 KiB, warden's upstream
		// stream window (256 KiB) and what the HTTP/2 writers buffer on
		// each side; 4 MiB is far above them and far below 20 MiB.
		if ahead := sent - int64(read); ahead*grpctest.MessageSize > 4<<20 || sent >= total {
			t.Errorf("the app got %d messages (%d KiB) ahead of a reader that stopped: warden buffers without bound", ahead, ahead*grpctest.MessageSize>>10)
		}
		if grew := vmRSS(t, s.cmd.Process.Pid) - rssBefore; grew > 16<<20 {
			t.Errorf("warden's RSS grew by %d MiB while the reader stalled", grew>>20)
		}
		// Reading on drains the rest.
		for {
			err := st.RecvMsg(new(wrapperspb.BytesValue))
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("after %d messages: %v", read, err)
			}
			read++
		}
		if read != total {
			t.Errorf("read %d messages, want %d", read, total)
		}
	})

	t.Run("grpc-timeout is warden's deadline for the app: DEADLINE_EXCEEDED from warden", func(t *testing.T) {
		// Written by hand: a gRPC client would also give up at its own
		// deadline, and the test could not tell who answered. This client
		// waits 20s; grpc-timeout says 300ms.
		resp := h2Do(t, s.addr, clientTLS(t, s.dir), "POST", "/warden.test.Echo/Slow", grpcFrame(nil),
			"content-type", "application/grpc", "te", "trailers", "grpc-timeout", "300m", "authorization", "Bearer "+tok)
		if resp.status != 200 || resp.header.Get("Grpc-Status") != "4" || resp.header.Get("Grpc-Message") != "upstream_timeout" {
			t.Errorf("Slow with grpc-timeout 300m: %d %v", resp.status, resp.header)
		}
	})

	t.Run("decision log and metrics count gRPC calls as HTTP/1.1 requests", func(t *testing.T) {
		m := scrape(t, s.admin)
		// A refused call counts with the HTTP status warden would have
		// answered (the client got 200 and the grpc-status), as an
		// HTTP/1.1 refusal does.
		if m[`warden_requests_total{code_class="4xx",decision="deny"}`] != 2 || m[`warden_denials_total{stage="policy"}`] != 1 ||
			m[`warden_denials_total{stage="token"}`] != 1 || m[`warden_requests_total{code_class="4xx",decision="invalid"}`] != 1 ||
			m[`warden_requests_total{code_class="2xx",decision="allow"}`] != 5 || m[`warden_requests_total{code_class="5xx",decision="error"}`] != 1 {
			t.Errorf("metrics: %v", filterSeries(m, "warden_requests_total", "warden_denials_total"))
		}
		testenv.Poll(t, "the decision log's Admin denial", 10*time.Second, func() bool {
			b, _ := os.ReadFile(decisions)
			return strings.Contains(string(b), `"grpc":{"service":"warden.test.Echo","method":"Admin"}`)
		})
	})

	t.Run("the app down gets UNAVAILABLE", func(t *testing.T) {
		s.app.Stop()
		_, err := unary(authed, cc, "Unary", "x")
		wantStatus(t, "app down", err, codes.Unavailable, "upstream_unavailable")
	})
}

func filterSeries(m map[string]float64, prefixes ...string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				out[k] = v
			}
		}
	}
	return out
}

// The userspace limiter's per-connection budget applies to a connection's
// streams together, and its refusal is RESOURCE_EXHAUSTED; a deadline the
// client leaves longer than WARDEN_UPSTREAM_TIMEOUT is capped by it.
func TestGRPCRateLimitAndDeadlineCap(t *testing.T) {
	s := startGRPCSidecar(t, "WARDEN_UPSTREAM_PROTOCOL=h2c", "WARDEN_PACKET_RATE_LIMIT=1", "WARDEN_PACKET_BURST=2",
		"WARDEN_UPSTREAM_TIMEOUT=1s")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cc := s.client(t)
	var codesSeen []codes.Code
	for range 4 {
		_, err := unary(ctx, cc, "Unary", "x")
		codesSeen = append(codesSeen, grpcstatus.Code(err))
	}
	if codesSeen[0] != codes.OK || codesSeen[1] != codes.OK || codesSeen[3] != codes.ResourceExhausted {
		t.Errorf("four calls at once with a burst of 2: %v, want OK OK ... RESOURCE_EXHAUSTED", codesSeen)
	}
	_, err := unary(ctx, cc, "Unary", "x")
	wantStatus(t, "over the rate", err, codes.ResourceExhausted, "rate_limited")

	// A new connection has a budget of its own.
	// Warden's message says it answered, not the client's own deadline.
	cc2 := s.client(t)
	_, err = unary(ctx, cc2, "Slow", "x")
	wantStatus(t, "Slow with a 30s deadline", err, codes.DeadlineExceeded, "upstream_timeout")
}

// h2Response is what a hand-written HTTP/2 request got.
type h2Response struct {
	status  int
	header  http.Header // trailers of a body-less (trailers-only) answer are here
	trailer http.Header
	body    []byte
}

// h2Do sends one request over a new HTTP/2 connection (ALPN h2) with Go's
// HTTP/2 client, header fields as name, value pairs.
func h2Do(t *testing.T, addr string, cfg *tls.Config, method, path string, body []byte, fields ...string) h2Response {
	t.Helper()
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	tr := &http2.Transport{TLSClientConfig: cfg}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, "https://"+addr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = nil
	}
	for i := 0; i+1 < len(fields); i += 2 {
		req.Header.Add(fields[i], fields[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := tr.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s over HTTP/2: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s over HTTP/2: body: %v", method, path, err)
	}
	return h2Response{status: resp.StatusCode, header: resp.Header, trailer: resp.Trailer, body: b}
}

// grpcFrame is one length-prefixed, uncompressed gRPC message.
func grpcFrame(msg []byte) []byte {
	b := []byte{0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// A peer WARDEN_ALLOWED_PEERS does not admit is refused on every stream
// of its HTTP/2 connection, by the same per-connection check as HTTP/1.1:
// PERMISSION_DENIED for a gRPC call, 403 for a plain request.
func TestGRPCPeerNotAllowed(t *testing.T) {
	s := startGRPCSidecar(t, "WARDEN_UPSTREAM_PROTOCOL=h2c", "WARDEN_ALLOWED_PEERS=spiffe://warden.local/ns/default/sa/client")
	devDir := s.cmd.Env[slices.IndexFunc(s.cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, "WARDEN_DEV_DIR=") })]
	stranger := filepath.Join(t.TempDir(), "stranger")
	if out, err := devIssueCmd(t, strings.TrimPrefix(devDir, "WARDEN_DEV_DIR="), "spiffe://warden.local/ns/default/sa/stranger", stranger); err != nil {
		t.Fatalf("dev issue: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := unary(ctx, s.client(t), "Unary", "x"); err != nil {
		t.Fatalf("the allowed peer: %v", err)
	}
	calls := s.app.Calls.Load()
	s.dir = stranger
	cc := s.client(t)
	for range 2 { // every stream of the connection
		_, err := unary(ctx, cc, "Unary", "x")
		wantStatus(t, "a peer outside WARDEN_ALLOWED_PEERS", err, codes.PermissionDenied, "peer_not_allowed")
	}
	r := h2Do(t, s.addr, clientTLS(t, stranger), "GET", "/plain", nil)
	if a := (answer{status: r.status, body: string(r.body)}); a.status != 403 || a.code() != "peer_not_allowed" {
		t.Errorf("plain HTTP/2 request of a refused peer: %s", a)
	}
	if n := s.app.Calls.Load(); n != calls {
		t.Errorf("the app got %d calls of a refused peer", n-calls)
	}
	s.find(t, func(l map[string]any) bool {
		return l["event"] == "peer_denied" && l["event_type"] == "security" && l["peer_id"] == "spiffe://warden.local/ns/default/sa/stranger"
	})
}
