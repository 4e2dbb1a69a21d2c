package openapi

import "testing"

// BenchmarkValidate is match + validation on the hot path. no_params is
// POST /payments/search without parameters or its optional body: a route
// lookup and a shared Operation. three_params_small_body is POST
// /accounts/9/payments with a path, a query and a header parameter and a
// 70-byte JSON body, the decoded body returned.
//
// Measured on the 2-core development machine while other builds ran
// (load 6-8, so figures vary by 2x; best of 3-4 runs, -cpu 1):
//
//	no_params                 ~90 ns     0 B   0 allocs
//	one_path_param           ~610 ns   448 B   4 allocs (Operation, PathParams, boxed int64, Key)
//	three_params_no_body     ~480 ns   464 B   4 allocs
//	three_params_small_body  ~3.2 µs  1248 B  23 allocs (kin-openapi's VisitJSON on the body
//	                                                    is half, decoding it a quarter)
//
// The alternatives, measured on the same request in a scratch module at
// the same time (best of 3):
//
//	kin-openapi gorillamux FindRoute + openapi3filter.ValidateRequest  ~14 µs   4056 B   61 allocs
//	  (and that without format checks, which it leaves off by default)
//	libopenapi-validator ValidateHttpRequestSync (3.0 and 3.1 docs)     ~60 µs  18000 B  277 allocs
//	santhosh-tekuri/jsonschema, schemas compiled once from the 3.1
//	  document (libopenapi-validator's engine), values only             ~13 µs   4610 B   87 allocs
//	kin-openapi VisitJSON on the values, encoding/json for the body      ~8 µs   2114 B   32 allocs
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
