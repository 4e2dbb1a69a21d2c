package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/agent/ratelimit"
)

// The metrics read at scrape time, from Sources: nothing polls them.

func (m *Metrics) registerSources(src Sources) {
	if src.PolicyRevision != nil {
		m.reg.MustRegister(&revisionCollector{revision: src.PolicyRevision, desc: prometheus.NewDesc(
			"warden_policy_revision_info",
			"The active policy bundle's revision, as a label of a series of value 1; no series before one is active.",
			[]string{"revision"}, nil)})
	}
	if src.RateLimit != nil {
		m.reg.MustRegister(&rateLimitCollector{
			totals: src.RateLimit,
			counts: prometheus.NewDesc("warden_ratelimit_total",
				"What the rate limiter decided, read from its counters (the kernel's maps with eBPF): "+
					"packets with ebpf; connections at accept and requests with userspace.",
				[]string{"mode", "result", "reason"}, nil),
			blocked: prometheus.NewDesc("warden_blocked_sources", "Sources blocked now.", nil, nil),
			overflows: prometheus.NewDesc("warden_block_overflows_total",
				"Blocks refused because the blocklist held WARDEN_BPF_MAX_SOURCES live blocks.", nil, nil),
		})
	}
	if src.RateLimitKeys != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "warden_ratelimit_keys",
			Help: "Buckets kept for the policy's rate_limit keys and the peers' WARDEN_PEER_RATE_LIMIT (at most WARDEN_RATE_LIMIT_KEYS).",
		}, func() float64 { return float64(src.RateLimitKeys().Keys) }))
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "warden_ratelimit_key_overflows_total",
			Help: "Rate limit keys forgotten (least recently used) to make room for another; a forgotten key starts again with a full bucket.",
		}, func() float64 { return float64(src.RateLimitKeys().Overflow) }))
	}
	if src.FastPath != nil {
		m.reg.MustRegister(&fastPathCollector{
			read: src.FastPath,
			sockets: prometheus.NewDesc("warden_fastpath_sockets",
				"Sockets in the fast path's sockhash now (both ends of each warden-to-app connection).", nil, nil),
			messages: prometheus.NewDesc("warden_fastpath_messages_redirected_total",
				"Sends between warden and the app redirected to the peer socket, skipping loopback TCP.", nil, nil),
			bytes: prometheus.NewDesc("warden_fastpath_bytes_redirected_total",
				"Bytes of the redirected sends.", nil, nil),
			fallbacks: prometheus.NewDesc("warden_fastpath_fallbacks_total",
				"Sends of an accelerated socket whose peer was not in the sockhash: they went through loopback TCP.", nil, nil),
		})
	}
	if src.SVIDExpiry != nil {
		m.reg.MustRegister(&expiryCollector{expiry: src.SVIDExpiry, desc: prometheus.NewDesc(
			"warden_svid_expiry_timestamp_seconds",
			"When the own X.509-SVID expires, in seconds since the Unix epoch; no series before there is one.", nil, nil)})
	}
	if src.InboundConns != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "warden_inbound_connections",
			Help: "Open inbound (mTLS) connections.",
		}, func() float64 { return float64(src.InboundConns()) }))
	}
	if src.UpgradedConns != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "warden_upgraded_connections",
			Help: "Open upgraded inbound connections (WebSocket tunnels to the app).",
		}, func() float64 { return float64(src.UpgradedConns()) }))
	}
	if src.UpstreamConns != nil {
		for _, state := range []string{"active", "idle"} {
			m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "warden_upstream_connections",
				Help:        "Open connections to the app: carrying a request (active) or waiting for one (idle: pooled, or pinned to an inbound connection).",
				ConstLabels: prometheus.Labels{"state": state},
			}, func() float64 {
				active, idle := src.UpstreamConns()
				if state == "active" {
					return float64(active)
				}
				return float64(idle)
			}))
		}
	}
	if src.UpstreamDesyncs != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "warden_upstream_desyncs_total",
			Help: "App connections closed because they held bytes nobody asked for (upstream_desync).",
		}, func() float64 { return float64(src.UpstreamDesyncs()) }))
	}
	for _, s := range src.LogSinks {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "warden_log_lines_dropped_total",
			Help:        "Log lines dropped because the sink's batch was full (a sink slower than the lines it gets).",
			ConstLabels: prometheus.Labels{"sink": s.Name},
		}, func() float64 { return float64(s.Dropped()) }))
	}
}

// revisionCollector exposes the active revision, and only it: reading it
// at each scrape, rather than setting a gauge per revision on activation,
// leaves no series of a revision that is gone.
type revisionCollector struct {
	revision func() string
	desc     *prometheus.Desc
}

func (c *revisionCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *revisionCollector) Collect(ch chan<- prometheus.Metric) {
	if rev := c.revision(); rev != "" {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, rev)
	}
}

// rateLimitCollector reads the limiter's counters at each scrape: with
// eBPF, the per-CPU counters of the kernel's map, summed.
type rateLimitCollector struct {
	totals                     func() (ratelimit.Totals, error)
	counts, blocked, overflows *prometheus.Desc
}

func (c *rateLimitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.counts
	ch <- c.blocked
	ch <- c.overflows
}

func (c *rateLimitCollector) Collect(ch chan<- prometheus.Metric) {
	t, err := c.totals()
	if err != nil {
		// The scrape reports it (promhttp logs it and serves the rest):
		// counters of a kernel fast path that stopped answering are no
		// zeroes.
		ch <- prometheus.NewInvalidMetric(c.counts, err)
		return
	}
	if t.Mode == "" {
		return // not started yet
	}
	ch <- prometheus.MustNewConstMetric(c.blocked, prometheus.GaugeValue, float64(t.Blocked))
	ch <- prometheus.MustNewConstMetric(c.overflows, prometheus.CounterValue, float64(t.BlockOverflows))
	if t.Mode == config.RateLimitOff {
		return // nothing counted
	}
	count := func(result, reason string, n uint64) {
		ch <- prometheus.MustNewConstMetric(c.counts, prometheus.CounterValue, float64(n), t.Mode, result, reason)
	}
	cs := t.Counters
	count("passed", "within_limits", cs.Passed)
	if t.Mode == config.RateLimitEBPF {
		count("passed", "unparsed", cs.Unparsed)
	}
	count("dropped", "blocked", cs.Dropped.Blocked)
	count("dropped", "conn_rate", cs.Dropped.ConnRate)
	count("dropped", "packet_rate", cs.Dropped.PacketRate)
}

// expiryCollector is a gauge that is absent while its value is unknown,
// rather than 0 (an expiry in 1970 would fire every expiry alert).
type expiryCollector struct {
	expiry func() time.Time
	desc   *prometheus.Desc
}

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	if t := c.expiry(); !t.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(t.UnixNano())/1e9)
	}
}

// fastPathCollector reads the fast path's counters at scrape time; no
// series while it is not active.
type fastPathCollector struct {
	read                                func() (FastPathTotals, bool)
	sockets, messages, bytes, fallbacks *prometheus.Desc
}

func (c *fastPathCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sockets
	ch <- c.messages
	ch <- c.bytes
	ch <- c.fallbacks
}

func (c *fastPathCollector) Collect(ch chan<- prometheus.Metric) {
	t, ok := c.read()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.sockets, prometheus.GaugeValue, float64(t.Sockets))
	ch <- prometheus.MustNewConstMetric(c.messages, prometheus.CounterValue, float64(t.Messages))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(t.Bytes))
	ch <- prometheus.MustNewConstMetric(c.fallbacks, prometheus.CounterValue, float64(t.Fallbacks))
}
