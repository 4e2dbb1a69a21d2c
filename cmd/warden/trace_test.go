package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/warden-sidecar/warden/internal/testenv"
)

// otlpReceiver is an OTLP/gRPC trace receiver on loopback, with the
// collector's own protos.
type otlpReceiver struct {
	coltrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (r *otlpReceiver) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			r.spans = append(r.spans, ss.Spans...)
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

// span returns the span whose warden.request_id is id, or nil.
func (r *otlpReceiver) span(id string) *tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.spans {
		for _, a := range s.Attributes {
			if a.Key == "warden.request_id" && a.Value.GetStringValue() == id {
				return s
			}
		}
	}
	return nil
}

func startOTLPReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{}
	srv := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(srv, r)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return r, "http://" + ln.Addr().String()
}

func TestTracingExportsOneSpanPerRequest(t *testing.T) {
	recv, endpoint := startOTLPReceiver(t)
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_OTLP_ENDPOINT="+endpoint, "WARDEN_POLICY_BUNDLE="+policyDir(t, desyncPolicy))

	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	incoming := "00-" + clientTrace + "-" + clientSpan + "-01"
	got := s.send(t, rawGET("/public", "traceparent: "+incoming, "tracestate: vendor=1", "X-Request-Id: traced-1"))
	if got.status != 200 {
		t.Fatalf("traced request: %s", got)
	}
	r := app.last(t)
	if tp := r.values("traceparent"); len(tp) != 1 || tp[0] != incoming {
		t.Errorf("the app got traceparent %q, want the client's unchanged", tp)
	}
	if ts := r.values("tracestate"); len(ts) != 1 || ts[0] != "vendor=1" {
		t.Errorf("the app got tracestate %q", ts)
	}
	if got := s.send(t, rawGET("/public", "X-Request-Id: root-1")); got.status != 200 {
		t.Fatalf("untraced request: %s", got)
	}
	created := app.last(t).values("traceparent")
	if denied := s.send(t, rawGET("/admin", "traceparent: "+incoming, "X-Request-Id: denied-1")); denied.status != 403 {
		t.Fatalf("denied request: %s", denied)
	}

	var traced, root, deny *tracepb.Span
	testenv.Poll(t, "three spans at the collector", 20*time.Second, func() bool {
		traced, root, deny = recv.span("traced-1"), recv.span("root-1"), recv.span("denied-1")
		return traced != nil && root != nil && deny != nil
	})
	if hex.EncodeToString(traced.TraceId) != clientTrace || hex.EncodeToString(traced.ParentSpanId) != clientSpan {
		t.Errorf("span trace %x parent %x, want the client's", traced.TraceId, traced.ParentSpanId)
	}
	want := "00-" + hex.EncodeToString(root.TraceId) + "-" + hex.EncodeToString(root.SpanId) + "-01"
	if len(created) != 1 || created[0] != want {
		t.Errorf("without a client traceparent the app got %q, want warden's span %q", created, want)
	}
	attr := func(s *tracepb.Span, key string) string {
		for _, a := range s.Attributes {
			if a.Key == key {
				// One of them is set, the others are zero.
				return fmt.Sprintf("%s|%d|%t", a.Value.GetStringValue(), a.Value.GetIntValue(), a.Value.GetBoolValue())
			}
		}
		return "<absent>"
	}
	for key, want := range map[string]string{
		"warden.decision": "deny|0|false", "http.response.status_code": "|403|false", "warden.stage": "policy|0|false",
		"warden.peer.spiffe_id": "spiffe://warden.local/ns/default/sa/client|0|false",
	} {
		if got := attr(deny, key); got != want {
			t.Errorf("denied span: %s = %q, want %q", key, got, want)
		}
	}
}

// Off, warden creates no trace context.
func TestTracingOffAddsNothing(t *testing.T) {
	app := startApp(t, appOptions{})
	s := startSidecar(t, app)
	if got := s.send(t, rawGET("/x")); got.status != 200 {
		t.Fatal(got)
	}
	if tp := app.last(t).values("traceparent"); len(tp) != 0 {
		t.Errorf("tracing off, the app got traceparent %q", tp)
	}
}

// An HTTP/2 stream gets its span as an HTTP/1.1 request does: the client's
// trace continued, the app given the client's traceparent, a denial
// recorded with its stage.
func TestTracingHTTP2Streams(t *testing.T) {
	recv, endpoint := startOTLPReceiver(t)
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_OTLP_ENDPOINT="+endpoint, "WARDEN_POLICY_BUNDLE="+policyDir(t, desyncPolicy))
	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	incoming := "00-" + clientTrace + "-" + clientSpan + "-01"
	if r := h2Do(t, s.addr, s.tls, "GET", "/public", nil, "traceparent", incoming, "X-Request-Id", "h2-traced-1"); r.status != 200 {
		t.Fatalf("traced HTTP/2 request: %d", r.status)
	}
	if tp := app.last(t).values("traceparent"); len(tp) != 1 || tp[0] != incoming {
		t.Errorf("the app got traceparent %q, want the client's unchanged", tp)
	}
	if r := h2Do(t, s.addr, s.tls, "GET", "/admin", nil, "X-Request-Id", "h2-denied-1"); r.status != 403 {
		t.Fatalf("denied HTTP/2 request: %d", r.status)
	}
	var traced, deny *tracepb.Span
	testenv.Poll(t, "two spans at the collector", 20*time.Second, func() bool {
		traced, deny = recv.span("h2-traced-1"), recv.span("h2-denied-1")
		return traced != nil && deny != nil
	})
	if hex.EncodeToString(traced.TraceId) != clientTrace || hex.EncodeToString(traced.ParentSpanId) != clientSpan {
		t.Errorf("span trace %x parent %x, want the client's", traced.TraceId, traced.ParentSpanId)
	}
	var stage string
	for _, a := range deny.Attributes {
		if a.Key == "warden.stage" {
			stage = a.Value.GetStringValue()
		}
	}
	if stage != "policy" {
		t.Errorf("denied HTTP/2 span: warden.stage %q, want policy", stage)
	}
}
