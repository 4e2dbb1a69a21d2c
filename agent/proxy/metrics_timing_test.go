package proxy_test

import (
	"testing"

	"github.com/warden-sidecar/warden/agent/metrics"
	"github.com/warden-sidecar/warden/agent/proxy"
)

// BenchmarkHandleMetrics is BenchmarkHandle with warden's registry told
// about each request, as the agent runs it: a counter and three native
// histograms (total, upstream, overhead) per request must add no
// allocation.
func BenchmarkHandleMetrics(b *testing.B) {
	proxy.BenchHandle(b, metrics.New(metrics.Sources{}))
}
