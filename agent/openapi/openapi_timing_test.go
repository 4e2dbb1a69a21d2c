package openapi

import "testing"

// BenchmarkValidate is match + validation on the hot path. no_params is
// GET /accounts/me/... without parameters: a route lookup and a shared
// Operation. three_params_small_body is POST /accounts/9/payments with a
// path, a query and a header parameter and a 70-byte JSON body, the
// decoded body returned.
func BenchmarkValidate(b *testing.B) {
	s := testSpec(b, "payments.yaml")
	for _, bc := range []struct {
		name string
		req  req
	}{
		{"no_params", req{method: "POST", path: "/payments/search"}},
		{"one_path_param", req{path: "/accounts/42"}},
		{"three_params_small_body", req{method: "POST", path: "/accounts/9/payments", query: "dry_run=true",
			headers: []string{"Accept: application/json", "X-Idempotency-Key: " + uuid, "User-Agent: bench"}, ct: "application/json", body: goodPayment}},
		{"three_params_no_body", req{path: "/accounts/9/payments", query: "limit=20&status=settled",
			headers: []string{"Accept: application/json", "X-Trace-Sampled: true", "User-Agent: bench"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := bc.req.build()
			if _, _, v := s.Validate(r); v != nil {
				b.Fatal(v)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, _, v := s.Validate(r); v != nil {
					b.Fatal(v)
				}
			}
		})
	}
}

// BenchmarkDecodeJSON compares the body decoder with encoding/json's
// (Decoder with UseNumber), on the benchmark's body.
func BenchmarkDecodeJSON(b *testing.B) {
	body := []byte(goodPayment)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeJSON(body); err != nil {
			b.Fatal(err)
		}
	}
}
