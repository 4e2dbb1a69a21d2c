package trace

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	oteltrace "go.opentelemetry.io/otel/trace"
)

// Protocols of WARDEN_OTLP_PROTOCOL.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Options configure the exporter.
type Options struct {
	// Endpoint is the collector's URL: http://host:port (plaintext) or
	// https://host:port. For OTLP/HTTP a URL without a path gets
	// /v1/traces.
	Endpoint string
	Protocol string  // ProtocolGRPC or ProtocolHTTP
	Sample   float64 // ratio of new traces sampled, 0 to 1
	Service  string  // service.name of the spans
	// Instance is service.instance.id: warden's SPIFFE ID.
	Instance string
}

// Tracer starts and ends request spans and exports them in batches.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   oteltrace.Tracer
}

// New builds the exporter and the tracer provider. Nothing is sent until
// a span ends; a collector that is down costs dropped spans, never a
// request.
func New(ctx context.Context, o Options) (*Tracer, error) {
	u, err := url.Parse(o.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("trace: endpoint %q: want http://host:port or https://host:port", o.Endpoint)
	}
	if o.Sample < 0 || o.Sample > 1 {
		return nil, fmt.Errorf("trace: sample ratio %v: want 0 to 1", o.Sample)
	}
	var exp sdktrace.SpanExporter
	switch o.Protocol {
	case ProtocolGRPC:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(u.Host)}
		if u.Scheme == "http" {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	case ProtocolHTTP:
		path := u.Path
		if path == "" || path == "/" {
			path = "/v1/traces"
		}
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host), otlptracehttp.WithURLPath(path)}
		if u.Scheme == "http" {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("trace: protocol %q: want %s or %s", o.Protocol, ProtocolGRPC, ProtocolHTTP)
	}
	if err != nil {
		return nil, fmt.Errorf("trace: exporter: %w", err)
	}
	res := resource.NewSchemaless(semconv.ServiceName(o.Service), semconv.ServiceInstanceID(o.Instance))
	p := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		// A client's sampling decision is kept, so a trace is whole or
		// absent; the ratio decides traces that start here.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.Sample))),
	)
	return &Tracer{provider: p, tracer: p.Tracer("github.com/warden-sidecar/warden/agent/trace")}, nil
}

// Shutdown exports what is buffered and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error {
	return t.provider.Shutdown(ctx)
}

// Span is one request's span.
type Span struct{ span oteltrace.Span }

// carrier reads the client's trace context without copying it into a map.
type carrier struct{ traceparent, tracestate string }

func (c carrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.traceparent
	case "tracestate":
		return c.tracestate
	}
	return ""
}
func (carrier) Set(string, string) {}
func (carrier) Keys() []string     { return []string{"traceparent", "tracestate"} }

var w3c = propagation.TraceContext{}

// Start begins the span of a request that arrived at start with the given
// traceparent and tracestate (nil when absent). app is the traceparent the
// app must receive when the client sent none: warden's span, so that the
// app's spans join the trace; nil when the client sent one, which the app
// then receives unchanged.
func (t *Tracer) Start(traceparent, tracestate []byte, start time.Time) (s Span, app []byte) {
	ctx := context.Background()
	if len(traceparent) > 0 {
		ctx = w3c.Extract(ctx, carrier{string(traceparent), string(tracestate)})
	}
	_, span := t.tracer.Start(ctx, "inbound", oteltrace.WithTimestamp(start), oteltrace.WithSpanKind(oteltrace.SpanKindServer))
	if len(traceparent) == 0 {
		sc := span.SpanContext()
		app = []byte(fmt.Sprintf("00-%s-%s-%s", sc.TraceID(), sc.SpanID(), sc.TraceFlags()))
	}
	return Span{span}, app
}

// Outcome is what a request's span records.
type Outcome struct {
	Method    string
	Status    int    // the status the client got
	Decision  string // "allow" or "deny"; "" when the pipeline did not decide
	Stage     string // which stage decided (pep.Stage); "" for the proxy's own checks
	Revision  string // the policy revision that decided
	Cached    bool
	PeerID    string
	RequestID string
	End       time.Time
}

// End records o on the span and ends it.
func (s Span) End(o Outcome) {
	sp := s.span
	if sp == nil || !sp.IsRecording() {
		return
	}
	sp.SetName(o.Method)
	sp.SetAttributes(
		semconv.HTTPRequestMethodKey.String(o.Method),
		semconv.HTTPResponseStatusCode(o.Status),
		attribute.String("warden.decision", o.Decision),
		attribute.String("warden.stage", o.Stage),
		attribute.String("warden.policy.revision", o.Revision),
		attribute.Bool("warden.policy.cached", o.Cached),
		attribute.String("warden.peer.spiffe_id", o.PeerID),
		attribute.String("warden.request_id", o.RequestID),
	)
	if o.Status >= 500 {
		sp.SetStatus(codes.Error, "")
	}
	sp.End(oteltrace.WithTimestamp(o.End))
}

// ParseProtocol checks a WARDEN_OTLP_PROTOCOL value.
func ParseProtocol(s string) (string, error) {
	switch p := strings.ToLower(strings.TrimSpace(s)); p {
	case ProtocolGRPC, ProtocolHTTP:
		return p, nil
	}
	return "", errors.New("want grpc or http/protobuf")
}
