package metrics

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/warden-sidecar/warden/agent/authz"
	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/proxy"
	"github.com/warden-sidecar/warden/agent/ratelimit"
	"github.com/warden-sidecar/warden/agent/signature"
	"github.com/warden-sidecar/warden/agent/token"
	"github.com/warden-sidecar/warden/internal/ratekeys"
)

var (
	_ proxy.Observer = (*Metrics)(nil)
	_ authz.Observer = (*Metrics)(nil)
)

// Metrics is warden's registry and what the request path counts in it. Its
// methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	// The request path: every series resolved in New.
	requests    [proxy.NumOutcomes][len(codeClasses)]prometheus.Counter
	denials     [len(denialStages)]prometheus.Counter
	requestDur  prometheus.Histogram
	upstreamDur prometheus.Histogram
	overheadDur prometheus.Histogram
	handshakes  [proxy.NumHandshakeResults]prometheus.Counter

	decisions    [len(decisionResults)][2]prometheus.Counter // [result][cached]
	evalDur      prometheus.Histogram
	tokens       credentialChecks[token.Reason]
	signatures   credentialChecks[string]
	openapiRules map[string]prometheus.Counter
	bodyRules    map[string]prometheus.Counter

	// Events of the policy engine and the identity.
	bundleActivated prometheus.Counter
	bundleRejected  prometheus.Counter
	svidRotations   prometheus.Counter
}

// Sources are what the collectors read at scrape time. A nil function
// leaves its metrics out.
type Sources struct {
	// PolicyRevision is the active bundle's revision; "" before one is.
	PolicyRevision func() string
	// RateLimit reads the running limiter's counters; a zero Totals (no
	// Mode) before it started.
	RateLimit func() (ratelimit.Totals, error)
	// RateLimitKeys reads the layer-7 limits' table (the policy's
	// rate_limit keys and the peers' budgets).
	RateLimitKeys func() ratekeys.KeysStats
	// SVIDExpiry is the own SVID's NotAfter; zero before there is one.
	SVIDExpiry func() time.Time
	// InboundConns and UpstreamConns count open connections, 0 before the
	// inbound proxy runs; UpstreamDesyncs counts app connections dropped
	// for holding unrequested bytes.
	InboundConns    func() int
	UpstreamConns   func() (active, idle int)
	UpstreamDesyncs func() uint64
	// UpgradedConns counts the open upgrade tunnels (WebSocket), which
	// InboundConns no longer counts.
	UpgradedConns func() int
	// LogSinks are the batched log writers whose dropped lines are counted.
	LogSinks []LogSink
	// FastPath reads the sockmap fast path's counters; false when it is
	// not active (no series then).
	FastPath func() (FastPathTotals, bool)
}

// FastPathTotals are the fast path's counters since warden started.
type FastPathTotals struct {
	Sockets   uint64 // in the sockhash now
	Messages  uint64 // sends redirected to the peer socket
	Bytes     uint64 // their bytes
	Fallbacks uint64 // sends whose peer was not in the sockhash
}

// LogSink is a batched log writer (agent.BatchWriter) by name.
type LogSink struct {
	Name    string // the sink label: "log", "decision"
	Dropped func() uint64
}

// Buckets of the classic histograms, for scrapers without native
// histograms: 1-2.5-5 steps from 25µs, fine below a millisecond, where
// warden's own time per request is (Envoy's millisecond buckets would put
// it all in the first). Native histograms (factor 1.1) resolve any range.
var (
	overheadBuckets = []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1}
	// A request may wait for the app up to WARDEN_UPSTREAM_TIMEOUT (30s).
	requestBuckets = slices.Concat(overheadBuckets, []float64{2.5, 5, 10, 30})
	// A cache miss's evaluation takes tens of microseconds for a small
	// policy, at most WARDEN_POLICY_EVAL_TIMEOUT (100ms).
	evalBuckets = []float64{5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3}
)

func histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:                            name,
		Help:                            help,
		Buckets:                         buckets,
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  160,
		NativeHistogramMinResetDuration: time.Hour,
	})
}

// New builds the registry: warden's metrics, the Go runtime's and the
// process's.
func New(src Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warden_requests_total",
		Help: "Inbound requests answered, by status class and by what became of them " +
			"(allow: the app answered; deny: refused by a decision; invalid: refused by the request checks; " +
			"ratelimit: refused by the userspace limiter; error: the app failed).",
	}, []string{"code_class", "decision"})
	for o := range proxy.NumOutcomes {
		for c, class := range codeClasses {
			m.requests[o][c] = requests.WithLabelValues(class, proxy.Outcome(o).String())
		}
	}
	denials := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warden_denials_total",
		Help: "Inbound requests refused by a decision, by the stage that refused them.",
	}, []string{"stage"})
	for i, s := range denialStages {
		m.denials[i] = denials.WithLabelValues(string(s))
	}
	m.requestDur = histogram("warden_request_duration_seconds",
		"Time from an inbound request read whole to its response head, for requests warden could read.", requestBuckets)
	m.upstreamDur = histogram("warden_upstream_duration_seconds",
		"Time waiting for the app (request written, response head read), for requests sent to it.", requestBuckets)
	m.overheadDur = histogram("warden_overhead_duration_seconds",
		"warden's own time for requests sent to the app: request duration minus upstream duration.", overheadBuckets)
	handshakes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warden_tls_handshakes_total",
		Help: "Inbound TLS handshakes, by result (ok, error: refused or abandoned, timeout).",
	}, []string{"result"})
	for r := range proxy.NumHandshakeResults {
		m.handshakes[r] = handshakes.WithLabelValues(proxy.HandshakeResult(r).String())
	}

	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warden_decisions_total",
		Help: "Policy decisions, by result (allow, deny, error: no decision, denied) and whether the decision cache answered.",
	}, []string{"result", "cached"})
	for r, result := range decisionResults {
		m.decisions[r][0] = decisions.WithLabelValues(result, "false")
		if r != resultError {
			m.decisions[r][1] = decisions.WithLabelValues(result, "true")
		}
	}
	m.evalDur = histogram("warden_policy_eval_duration_seconds",
		"Time of policy evaluations (decision cache misses), timeouts included.", evalBuckets)
	tokens := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warden_token_verifications_total",
		Help: "Request tokens checked, by result (valid; absent: none sent where none is required; refused) and the refusal's reason.",
	}, []string{"result", "reason"})
	// token.ReasonOf's answer for an error without a reason is malformed.
	m.tokens = newCredentialChecks(tokens, tokenReasons, token.ReasonMalformed)
	sigs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warden_signature_verifications_total",
		Help: "HTTP message signatures checked (RFC 9421), by result (valid; absent: an unsigned request where none is required; refused) and the refusal's reason.",
	}, []string{"result", "reason"})
	m.signatures = newCredentialChecks(sigs, signatureReasons, signature.ReasonMalformed)
	refusals := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warden_input_refusals_total",
		Help: "Requests refused by the OpenAPI or body checks, by stage and the rule broken.",
	}, []string{"stage", "rule"})
	m.openapiRules = make(map[string]prometheus.Counter, len(openapiRules))
	for _, r := range openapiRules {
		m.openapiRules[r] = refusals.WithLabelValues(string(pep.StageOpenAPI), r)
	}
	m.bodyRules = make(map[string]prometheus.Counter, len(bodyRules)+1)
	for _, r := range append(bodyRules, otherBodyRule) {
		m.bodyRules[r] = refusals.WithLabelValues(string(pep.StageBody), r)
	}

	loads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warden_bundle_loads_total",
		Help: "Policy bundle revisions loaded, by result (activated, rejected: the active one stays).",
	}, []string{"result"})
	m.bundleActivated = loads.WithLabelValues("activated")
	m.bundleRejected = loads.WithLabelValues("rejected")
	m.svidRotations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "warden_svid_rotations_total",
		Help: "Own X.509-SVIDs replaced by a new one (renewals, rotations).",
	})

	m.reg.MustRegister(requests, denials, m.requestDur, m.upstreamDur, m.overheadDur, handshakes,
		decisions, m.evalDur, tokens, sigs, refusals, loads, m.svidRotations)
	m.registerSources(src)
	return m
}

// Handler serves the registry in Prometheus' text format, or OpenMetrics
// (or protobuf, with native histograms) when the scraper asks for it. A
// collector that fails (the kernel's maps unreadable) leaves its metrics
// out of the answer and is reported to errorLog; the others are served.
func (m *Metrics) Handler(errorLog func(msg string)) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorHandling:     promhttp.ContinueOnError,
		ErrorLog:          printer(errorLog),
	})
}

type printer func(string)

func (p printer) Println(v ...any) {
	if p != nil {
		p(fmt.Sprint(v...))
	}
}

// Gatherer is the registry, for tests and checks of what it holds.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Request implements proxy.Observer.
func (m *Metrics) Request(r proxy.RequestStats) {
	if int(r.Outcome) >= proxy.NumOutcomes {
		r.Outcome = proxy.OutcomeError
	}
	m.requests[r.Outcome][codeClass(r.Status)].Inc()
	if r.Outcome == proxy.OutcomeDeny {
		m.denials[denialStage(r.Stage)].Inc()
	}
	if r.Total <= 0 {
		return
	}
	m.requestDur.Observe(r.Total.Seconds())
	if r.Forwarded {
		m.upstreamDur.Observe(r.Upstream.Seconds())
		m.overheadDur.Observe(max(r.Total-r.Upstream, 0).Seconds())
	}
}

// Handshake implements proxy.Observer.
func (m *Metrics) Handshake(r proxy.HandshakeResult) {
	if int(r) >= proxy.NumHandshakeResults {
		r = proxy.HandshakeError
	}
	m.handshakes[r].Inc()
}

// Token implements authz.Observer.
func (m *Metrics) Token(reason token.Reason, present bool) { m.tokens.count(reason, present) }

// Signature implements authz.Observer.
func (m *Metrics) Signature(reason string, present bool) { m.signatures.count(reason, present) }

// credentialChecks are the series of a credential check (a token, a
// signature) by result and reason, resolved up front.
type credentialChecks[R ~string] struct {
	valid, absent prometheus.Counter
	refused       map[R]prometheus.Counter
	fallback      R // the reason an unknown one counts as
}

func newCredentialChecks[R ~string](vec *prometheus.CounterVec, reasons []R, fallback R) credentialChecks[R] {
	c := credentialChecks[R]{
		valid: vec.WithLabelValues("valid", "none"), absent: vec.WithLabelValues("absent", "none"),
		refused: make(map[R]prometheus.Counter, len(reasons)), fallback: fallback,
	}
	for _, r := range reasons {
		c.refused[r] = vec.WithLabelValues("refused", string(r))
	}
	return c
}

// count records one check: reason is "" for a valid credential (present)
// or none where none is required (not present).
func (c *credentialChecks[R]) count(reason R, present bool) {
	switch {
	case reason == "" && present:
		c.valid.Inc()
	case reason == "":
		c.absent.Inc()
	default:
		r, ok := c.refused[reason]
		if !ok {
			r = c.refused[c.fallback]
		}
		r.Inc()
	}
}

// Decision implements authz.Observer.
func (m *Metrics) Decision(allow, cached bool, err error, took time.Duration) {
	switch {
	case err != nil:
		m.decisions[resultError][0].Inc()
	case allow && cached:
		m.decisions[resultAllow][1].Inc()
	case allow:
		m.decisions[resultAllow][0].Inc()
	case cached:
		m.decisions[resultDeny][1].Inc()
	default:
		m.decisions[resultDeny][0].Inc()
	}
	if !cached {
		m.evalDur.Observe(took.Seconds())
	}
}

// InputRefused implements authz.Observer.
func (m *Metrics) InputRefused(stage pep.Stage, rule string) {
	if stage == pep.StageOpenAPI {
		c, ok := m.openapiRules[rule]
		if !ok {
			c = m.openapiRules[schemaRule]
		}
		c.Inc()
		return
	}
	c, ok := m.bodyRules[rule]
	if !ok {
		c = m.bodyRules[otherBodyRule]
	}
	c.Inc()
}

// BundleActivated counts a policy revision that became active; it is the
// engine's OnActivate.
func (m *Metrics) BundleActivated() { m.bundleActivated.Inc() }

// BundleRejected counts a bundle that failed to load; it is the engine's
// OnError.
func (m *Metrics) BundleRejected() { m.bundleRejected.Inc() }

// SVIDRotated counts an own SVID replaced by a new one.
func (m *Metrics) SVIDRotated() { m.svidRotations.Inc() }
