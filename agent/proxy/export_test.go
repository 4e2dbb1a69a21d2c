package proxy

import "testing"

// BenchHandle runs BenchmarkHandle's loop with obs told about each request:
// for metrics_timing_test.go, whose external test package may import
// agent/metrics (which imports this package).
func BenchHandle(b *testing.B, obs Observer) { benchmarkHandle(b, nil, nil, obs) }
