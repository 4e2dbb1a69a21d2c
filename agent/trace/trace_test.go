package trace

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP receiver on loopback, gRPC and HTTP: it keeps
// every span it is sent.
type collector struct {
	coltrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (c *collector) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	c.keep(req)
	return &coltrace.ExportTraceServiceResponse{}, nil
}

func (c *collector) keep(req *coltrace.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			c.spans = append(c.spans, ss.Spans...)
		}
	}
}

func (c *collector) received() []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*tracepb.Span(nil), c.spans...)
}

func startGRPC(t *testing.T) (*collector, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	srv := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return c, "http://" + ln.Addr().String()
}

func startHTTP(t *testing.T) (*collector, string) {
	t.Helper()
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "not OTLP/HTTP", http.StatusBadRequest)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.keep(&req)
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL
}

func attr(s *tracepb.Span, key string) string {
	for _, a := range s.Attributes {
		if a.Key == key {
			// One of the three is set; the others are zero.
			return fmt.Sprintf("%s|%d|%t", a.Value.GetStringValue(), a.Value.GetIntValue(), a.Value.GetBoolValue())
		}
	}
	return "<absent>"
}

const (
	clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpan  = "00f067aa0ba902b7"
)

func TestSpansReachTheCollector(t *testing.T) {
	for _, tc := range []struct {
		protocol string
		start    func(*testing.T) (*collector, string)
	}{{ProtocolGRPC, startGRPC}, {ProtocolHTTP, startHTTP}} {
		t.Run(tc.protocol, func(t *testing.T) {
			col, endpoint := tc.start(t)
			tr, err := New(context.Background(), Options{Endpoint: endpoint, Protocol: tc.protocol, Sample: 1, Service: "warden", Instance: "spiffe://td/app"})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			// A client's trace: the span is its child, the app gets nothing new.
			s, app := tr.Start([]byte("00-"+clientTrace+"-"+clientSpan+"-01"), []byte("vendor=x"), start)
			if app != nil {
				t.Errorf("a client's traceparent would be replaced by %s", app)
			}
			s.End(Outcome{Method: "GET", Status: 403, Decision: "deny", Stage: "policy", Revision: "r7", Cached: true,
				PeerID: "spiffe://td/client", RequestID: "req-1", End: start.Add(time.Millisecond)})
			// No trace context: warden's span is the root and the app's parent.
			s, app = tr.Start(nil, nil, start)
			s.End(Outcome{Method: "POST", Status: 200, Decision: "allow", Stage: "policy", End: start.Add(time.Millisecond)})
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			spans := col.received()
			if len(spans) != 2 {
				t.Fatalf("collector received %d spans, want 2", len(spans))
			}
			child := spans[0]
			if hex.EncodeToString(child.TraceId) != clientTrace || hex.EncodeToString(child.ParentSpanId) != clientSpan {
				t.Errorf("span trace %x parent %x, want the client's %s %s", child.TraceId, child.ParentSpanId, clientTrace, clientSpan)
			}
			for key, want := range map[string]string{
				"http.request.method": "GET|0|false", "http.response.status_code": "|403|false", "warden.decision": "deny|0|false",
				"warden.policy.revision": "r7|0|false", "warden.policy.cached": "|0|true",
				"warden.peer.spiffe_id": "spiffe://td/client|0|false", "warden.request_id": "req-1|0|false",
			} {
				if got := attr(child, key); got != want {
					t.Errorf("attribute %s = %q, want %q", key, got, want)
				}
			}
			if child.Name != "GET" || child.Kind != tracepb.Span_SPAN_KIND_SERVER {
				t.Errorf("span %q kind %v", child.Name, child.Kind)
			}
			root := spans[1]
			if len(root.ParentSpanId) != 0 {
				t.Errorf("root span has parent %x", root.ParentSpanId)
			}
			want := "00-" + hex.EncodeToString(root.TraceId) + "-" + hex.EncodeToString(root.SpanId) + "-01"
			if string(app) != want {
				t.Errorf("the app would get traceparent %q, want warden's span %q", app, want)
			}
		})
	}
}

// The client's decision not to sample is kept, and the ratio decides
// traces that start at warden.
func TestSampling(t *testing.T) {
	col, endpoint := startGRPC(t)
	tr, err := New(context.Background(), Options{Endpoint: endpoint, Protocol: ProtocolGRPC, Sample: 0, Service: "warden"})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := tr.Start(nil, nil, time.Now())
	s.End(Outcome{Method: "GET", Status: 200, End: time.Now()})
	s, _ = tr.Start([]byte("00-"+clientTrace+"-"+clientSpan+"-00"), nil, time.Now())
	s.End(Outcome{Method: "GET", Status: 200, End: time.Now()})
	s, _ = tr.Start([]byte("00-"+clientTrace+"-"+clientSpan+"-01"), nil, time.Now())
	s.End(Outcome{Method: "GET", Status: 200, End: time.Now()})
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(col.received()); n != 1 {
		t.Errorf("%d spans exported with ratio 0, want only the client-sampled one", n)
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Endpoint: "collector:4317", Protocol: ProtocolGRPC, Sample: 1},
		{Endpoint: "http://127.0.0.1:4317", Protocol: "thrift", Sample: 1},
		{Endpoint: "http://127.0.0.1:4317", Protocol: ProtocolGRPC, Sample: 2},
	} {
		if _, err := New(context.Background(), o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}
