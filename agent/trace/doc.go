// Package trace exports one OpenTelemetry span per inbound request over
// OTLP (gRPC or HTTP) when WARDEN_OTLP_ENDPOINT is set. The span is
// parented on the client's W3C trace context, which the app receives
// unchanged; a request without one gets warden's span as its parent, and
// the app a traceparent naming it. Off, nothing of it runs: the proxy holds
// no tracer.
package trace
