package agent

import (
	"time"

	"github.com/warden-sidecar/warden/agent/metrics"
	"github.com/warden-sidecar/warden/agent/ratelimit"
)

// Option configures an Agent.
type Option func(*Agent)

// WithLogWriter names the root logger's writer, whose dropped lines
// /metrics counts (warden_log_lines_dropped_total{sink="log"}).
func WithLogWriter(w *BatchWriter) Option {
	return func(a *Agent) { a.logOut = w }
}

// newMetrics builds the registry over the agent's parts. Each source reads
// what the parts publish atomically, so a scrape during startup finds the
// parts not yet started empty rather than racing them.
func (a *Agent) newMetrics() *metrics.Metrics {
	dropped := func(w func() *BatchWriter) func() uint64 {
		return func() uint64 {
			if b := w(); b != nil {
				return b.Dropped()
			}
			return 0
		}
	}
	return metrics.New(metrics.Sources{
		PolicyRevision: func() string {
			if e := a.engine.Load(); e != nil {
				return e.Status().Revision
			}
			return ""
		},
		RateLimit: func() (ratelimit.Totals, error) {
			if rl := a.limiter.Load(); rl != nil {
				return rl.Totals()
			}
			return ratelimit.Totals{}, nil
		},
		RateLimitKeys: a.rateKeys.Stats,
		FastPath:      a.fastPathTotals,
		SVIDExpiry: func() time.Time {
			if !a.identityLoaded.Load() {
				return time.Time{}
			}
			svid, err := a.source.GetX509SVID()
			if err != nil {
				return time.Time{}
			}
			return svid.Certificates[0].NotAfter
		},
		InboundConns: func() int {
			if p := a.proxy.Load(); p != nil {
				return p.InboundConns()
			}
			return 0
		},
		UpgradedConns: func() int {
			if p := a.proxy.Load(); p != nil {
				return p.Tunnels()
			}
			return 0
		},
		UpstreamConns: func() (int, int) {
			if p := a.proxy.Load(); p != nil {
				return p.UpstreamConns()
			}
			return 0, 0
		},
		UpstreamDesyncs: func() uint64 {
			if p := a.proxy.Load(); p != nil {
				return p.UpstreamDesyncs()
			}
			return 0
		},
		// The decision log's own sink when it has one (stdout, a file);
		// written to stderr, its lines go through the root logger's, and
		// their drops count as the log's.
		LogSinks: []metrics.LogSink{
			{Name: "log", Dropped: dropped(func() *BatchWriter { return a.logOut })},
			{Name: "decision", Dropped: dropped(a.decisionOut.Load)},
			{Name: "security", Dropped: func() uint64 { return securityDroppedTotal(&a.securityDropped) }},
		},
	})
}
