package authz_test

import (
	"testing"

	"github.com/warden-sidecar/warden/agent/authz"
	"github.com/warden-sidecar/warden/agent/metrics"
)

// BenchmarkCheckCachedMetrics is BenchmarkCheckCached with warden's
// registry counting the decision, as the agent runs it: no allocation more.
func BenchmarkCheckCachedMetrics(b *testing.B) {
	authz.BenchCheckCached(b, metrics.New(metrics.Sources{}))
}
