package secevent

import (
	"io"
	"testing"
)

// BenchmarkEvent is one event with the fields of a refused request.
func BenchmarkEvent(b *testing.B) {
	l := New(io.Discard, func() string { return "spiffe://example.org/ns/shop/sa/orders" })
	b.ReportAllocs()
	for b.Loop() {
		l.Event(PolicyDenied, Medium).Str(FieldSourceIP, "10.0.3.9").Str(FieldPeerID, "spiffe://example.org/ns/shop/sa/frontend").
			Str(FieldRequestID, "9f416f7b97b16bf3-2").Str(FieldMethod, "GET").Str(FieldPath, "/orders").
			Str(FieldReason, "default_deny").Msg("request denied by the policy")
	}
}

// BenchmarkSampledSuppressed is what each refusal of a flood costs once
// its second's event is written: a lookup under a lock.
func BenchmarkSampledSuppressed(b *testing.B) {
	l := New(io.Discard, nil)
	b.ReportAllocs()
	for b.Loop() {
		if e := l.Sampled(RateLimited, Low, "10.0.3.9"); e != nil {
			e.Send()
		}
	}
}
