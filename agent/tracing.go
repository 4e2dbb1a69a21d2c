package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/warden-sidecar/warden/agent/proxy"
	"github.com/warden-sidecar/warden/agent/trace"
)

// startTracing builds the span exporter WARDEN_OTLP_ENDPOINT asks for, as
// the proxy's Tracer; nil, and a no-op stop, when tracing is off.
func (a *Agent) startTracing(ctx context.Context) (proxy.Tracer, func(context.Context), error) {
	if a.cfg.OTLPEndpoint == "" {
		return nil, func(context.Context) {}, nil
	}
	t, err := trace.New(ctx, trace.Options{
		Endpoint: a.cfg.OTLPEndpoint, Protocol: a.cfg.OTLPProtocol, Sample: a.cfg.TraceSample,
		Service: "warden", Instance: a.ownID().String(),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("agent: WARDEN_OTLP_ENDPOINT: %w", err)
	}
	a.log.Info().Str("event", "tracing_started").Str("protocol", a.cfg.OTLPProtocol).
		Float64("sample", a.cfg.TraceSample).Send()
	stop := func(ctx context.Context) {
		if err := t.Shutdown(ctx); err != nil {
			a.log.Warn().Str("event", "tracing_flush_failed").Err(err).Msg("spans not exported")
		}
	}
	return tracer{t}, stop, nil
}

// tracer adapts agent/trace to the proxy's Tracer.
type tracer struct{ t *trace.Tracer }

func (t tracer) Start(traceparent, tracestate []byte, start time.Time) (proxy.RequestSpan, []byte) {
	s, app := t.t.Start(traceparent, tracestate, start)
	return span{s}, app
}

type span struct{ s trace.Span }

func (s span) End(o proxy.SpanOutcome) {
	decision := ""
	if o.Decided {
		decision = "deny"
		if o.Allowed {
			decision = "allow"
		}
	}
	s.s.End(trace.Outcome{
		Method: o.Method, Status: o.Status, Decision: decision, Stage: string(o.Stage),
		Revision: o.Revision, Cached: o.Cached, PeerID: o.PeerID, RequestID: o.RequestID, End: o.End,
	})
}
