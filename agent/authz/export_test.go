package authz

import "testing"

// BenchCheckCached runs BenchmarkCheckCached's loop with obs told each
// stage's outcome: for metrics_timing_test.go, whose external test package
// may import agent/metrics (which imports this package).
func BenchCheckCached(b *testing.B, obs Observer) { benchmarkCheckCached(b, WithObserver(obs)) }
