package metrics

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/proxy"
	"github.com/warden-sidecar/warden/agent/ratelimit"
	"github.com/warden-sidecar/warden/agent/token"
)

// series gathers g into one value per series, keyed as PromQL writes a
// selector (labels sorted); a histogram is its _count and _sum.
func series(t testing.TB, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := func(suffix string) string {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
				sort.Strings(ls)
				if len(ls) == 0 {
					return mf.GetName() + suffix
				}
				return mf.GetName() + suffix + "{" + strings.Join(ls, ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key("")] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key("")] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key("_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key("_sum")] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// want checks the series named in w, and that every other series of the
// families named there is 0.
func want(t *testing.T, got map[string]float64, w map[string]float64) {
	t.Helper()
	families := map[string]bool{}
	for k, v := range w {
		name, _, _ := strings.Cut(k, "{")
		families[name] = true
		if g, ok := got[k]; !ok {
			t.Errorf("no series %s", k)
		} else if math.Abs(g-v) > 1e-9 {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
	for k, v := range got {
		name, _, _ := strings.Cut(k, "{")
		if _, named := w[k]; families[name] && !named && v != 0 {
			t.Errorf("%s = %v, want 0", k, v)
		}
	}
}

func TestRequestsAreCountedAndTimed(t *testing.T) {
	m := New(Sources{})
	ms := time.Millisecond
	for _, r := range []proxy.RequestStats{
		{Outcome: proxy.OutcomeAllow, Status: 200, Total: 3 * ms, Forwarded: true, Upstream: 2 * ms},
		{Outcome: proxy.OutcomeAllow, Status: 404, Total: 5 * ms, Forwarded: true, Upstream: 4 * ms},
		{Outcome: proxy.OutcomeAllow, Status: 101, Total: ms, Forwarded: true, Upstream: ms / 2},
		{Outcome: proxy.OutcomeDeny, Stage: pep.StagePeer, Status: 403, Total: ms},
		{Outcome: proxy.OutcomeDeny, Stage: pep.StagePolicy, Status: 403, Total: ms},
		{Outcome: proxy.OutcomeDeny, Stage: pep.StageToken, Status: 401, Total: ms},
		{Outcome: proxy.OutcomeDeny, Stage: pep.StageBody, Status: 413, Total: ms},
		{Outcome: proxy.OutcomeDeny, Stage: pep.StageRateLimit, Status: 429, Total: ms},
		{Outcome: proxy.OutcomeInvalid, Status: 431}, // unreadable: not timed
		{Outcome: proxy.OutcomeRateLimit, Status: 429, Total: ms},
		{Outcome: proxy.OutcomeError, Status: 502, Total: 2 * ms, Forwarded: true, Upstream: ms},
	} {
		m.Request(r)
	}
	m.Handshake(proxy.HandshakeOK)
	m.Handshake(proxy.HandshakeOK)
	m.Handshake(proxy.HandshakeTimeout)
	want(t, series(t, m.Gatherer()), map[string]float64{
		`warden_requests_total{code_class="2xx",decision="allow"}`:     2,
		`warden_requests_total{code_class="4xx",decision="allow"}`:     1,
		`warden_requests_total{code_class="4xx",decision="deny"}`:      5,
		`warden_requests_total{code_class="4xx",decision="invalid"}`:   1,
		`warden_requests_total{code_class="4xx",decision="ratelimit"}`: 1,
		`warden_requests_total{code_class="5xx",decision="error"}`:     1,
		`warden_denials_total{stage="peer"}`:                           1,
		`warden_denials_total{stage="policy"}`:                         1,
		`warden_denials_total{stage="token"}`:                          1,
		`warden_denials_total{stage="body"}`:                           1,
		`warden_denials_total{stage="rate_limit"}`:                     1,
		`warden_request_duration_seconds_count`:                        10,
		`warden_request_duration_seconds_sum`:                          0.017,
		`warden_upstream_duration_seconds_count`:                       4,
		`warden_upstream_duration_seconds_sum`:                         0.0075,
		`warden_overhead_duration_seconds_count`:                       4,
		`warden_overhead_duration_seconds_sum`:                         0.0035,
		`warden_tls_handshakes_total{result="ok"}`:                     2,
		`warden_tls_handshakes_total{result="timeout"}`:                1,
	})
}

func TestPipelineOutcomesAreCounted(t *testing.T) {
	m := New(Sources{})
	m.Token("", true)
	m.Token("", true)
	m.Token("", false)
	m.Token(token.ReasonExpired, true)
	m.Token(token.ReasonMissing, false)
	m.Token("from_a_future_version", true) // counts as malformed, as token.ReasonOf does
	m.Decision(true, false, nil, 40*time.Microsecond)
	m.Decision(true, true, nil, time.Microsecond)
	m.Decision(false, false, nil, 60*time.Microsecond)
	m.Decision(false, false, errors.New("eval timeout"), 100*time.Millisecond)
	m.InputRefused(pep.StageOpenAPI, "no_route")
	m.InputRefused(pep.StageOpenAPI, "contains") // a 3.1 keyword warden does not list
	m.InputRefused(pep.StageBody, "max_depth")
	m.InputRefused(pep.StageBody, "policy_body_max_bytes")
	m.InputRefused(pep.StageBody, "a_new_rule")
	m.BundleActivated()
	m.BundleActivated()
	m.BundleRejected()
	m.SVIDRotated()
	want(t, series(t, m.Gatherer()), map[string]float64{
		`warden_token_verifications_total{reason="none",result="valid"}`:        2,
		`warden_token_verifications_total{reason="none",result="absent"}`:       1,
		`warden_token_verifications_total{reason="expired",result="refused"}`:   1,
		`warden_token_verifications_total{reason="missing",result="refused"}`:   1,
		`warden_token_verifications_total{reason="malformed",result="refused"}`: 1,
		`warden_decisions_total{cached="false",result="allow"}`:                 1,
		`warden_decisions_total{cached="true",result="allow"}`:                  1,
		`warden_decisions_total{cached="false",result="deny"}`:                  1,
		`warden_decisions_total{cached="false",result="error"}`:                 1,
		// The cached decision is no evaluation.
		`warden_policy_eval_duration_seconds_count`:                              2 + 1,
		`warden_policy_eval_duration_seconds_sum`:                                0.1001,
		`warden_input_refusals_total{rule="no_route",stage="openapi"}`:           1,
		`warden_input_refusals_total{rule="schema",stage="openapi"}`:             1,
		`warden_input_refusals_total{rule="max_depth",stage="body"}`:             1,
		`warden_input_refusals_total{rule="policy_body_max_bytes",stage="body"}`: 1,
		`warden_input_refusals_total{rule="other",stage="body"}`:                 1,
		`warden_bundle_loads_total{result="activated"}`:                          2,
		`warden_bundle_loads_total{result="rejected"}`:                           1,
		`warden_svid_rotations_total`:                                            1,
	})
}

// No label takes a value from a request: whatever the pipeline reports,
// the series are the ones New resolved.
func TestSeriesAreBoundedByConstruction(t *testing.T) {
	m := New(Sources{})
	before := len(series(t, m.Gatherer()))
	for i := range 1000 {
		rule := fmt.Sprintf("rule-%d", i)
		m.InputRefused(pep.StageOpenAPI, rule)
		m.InputRefused(pep.Stage(rule), rule)
		m.Token(token.Reason(rule), true)
		m.Request(proxy.RequestStats{Outcome: proxy.Outcome(i % 256), Stage: pep.Stage(rule), Status: i, Total: time.Duration(i)})
		m.Handshake(proxy.HandshakeResult(i % 256))
	}
	if after := len(series(t, m.Gatherer())); after != before {
		t.Errorf("%d series after 1000 odd reports, %d before", after, before)
	}
}

// Only the active revision has a series: a new one replaces it.
func TestRevisionInfoIsTheActiveRevisionOnly(t *testing.T) {
	rev := ""
	m := New(Sources{PolicyRevision: func() string { return rev }})
	revisions := func() []string {
		var out []string
		for k, v := range series(t, m.Gatherer()) {
			if strings.HasPrefix(k, "warden_policy_revision_info") {
				out = append(out, fmt.Sprintf("%s %v", k, v))
			}
		}
		return out
	}
	if got := revisions(); len(got) != 0 {
		t.Errorf("before any revision: %q", got)
	}
	rev = "r1"
	if got := revisions(); !slices.Equal(got, []string{`warden_policy_revision_info{revision="r1"} 1`}) {
		t.Errorf("r1 active: %q", got)
	}
	rev = "r2"
	if got := revisions(); !slices.Equal(got, []string{`warden_policy_revision_info{revision="r2"} 1`}) {
		t.Errorf("r2 active: %q", got)
	}
}

func TestRateLimitCountersAreReadAtScrape(t *testing.T) {
	totals := ratelimit.Totals{}
	var err error
	reads := 0
	m := New(Sources{RateLimit: func() (ratelimit.Totals, error) { reads++; return totals, err }})
	rl := func() map[string]float64 {
		out := map[string]float64{}
		for k, v := range series(t, m.Gatherer()) {
			if strings.HasPrefix(k, "warden_ratelimit_total") || strings.HasPrefix(k, "warden_blocked_sources") {
				out[k] = v
			}
		}
		return out
	}
	if got := rl(); len(got) != 0 {
		t.Errorf("before the limiter started: %v", got)
	}
	totals = ratelimit.Totals{Mode: "ebpf", Blocked: 2, Counters: ratelimit.Counters{
		Passed: 100, Unparsed: 3, Dropped: ratelimit.DropCounters{Blocked: 7, ConnRate: 11, PacketRate: 13},
	}}
	if got, w := rl(), map[string]float64{
		`warden_ratelimit_total{mode="ebpf",reason="within_limits",result="passed"}`: 100,
		`warden_ratelimit_total{mode="ebpf",reason="unparsed",result="passed"}`:      3,
		`warden_ratelimit_total{mode="ebpf",reason="blocked",result="dropped"}`:      7,
		`warden_ratelimit_total{mode="ebpf",reason="conn_rate",result="dropped"}`:    11,
		`warden_ratelimit_total{mode="ebpf",reason="packet_rate",result="dropped"}`:  13,
		`warden_blocked_sources`: 2,
	}; !mapsEqual(got, w) {
		t.Errorf("ebpf: %v, want %v", got, w)
	}
	totals = ratelimit.Totals{Mode: "userspace", Counters: ratelimit.Counters{Passed: 5, Dropped: ratelimit.DropCounters{PacketRate: 1}}}
	if got, w := rl(), map[string]float64{
		`warden_ratelimit_total{mode="userspace",reason="within_limits",result="passed"}`: 5,
		`warden_ratelimit_total{mode="userspace",reason="blocked",result="dropped"}`:      0,
		`warden_ratelimit_total{mode="userspace",reason="conn_rate",result="dropped"}`:    0,
		`warden_ratelimit_total{mode="userspace",reason="packet_rate",result="dropped"}`:  1,
		`warden_blocked_sources`: 0,
	}; !mapsEqual(got, w) {
		t.Errorf("userspace: %v, want %v", got, w)
	}
	totals = ratelimit.Totals{Mode: "off"}
	if got, w := rl(), map[string]float64{`warden_blocked_sources`: 0}; !mapsEqual(got, w) {
		t.Errorf("off: %v, want %v", got, w)
	}
	if reads != 4 {
		t.Errorf("%d reads for 4 scrapes: the counters are read at scrape time only", reads)
	}
	totals = ratelimit.Totals{Mode: "ebpf", BlockOverflows: 4}
	if got := series(t, m.Gatherer())["warden_block_overflows_total"]; got != 4 {
		t.Errorf("warden_block_overflows_total %v, want 4", got)
	}

	// Maps that can't be read: the scrape says so and serves the rest.
	err = errors.New("bpf: read counters: bad file descriptor")
	var logged []string
	srv := httptest.NewServer(m.Handler(func(msg string) { logged = append(logged, msg) }))
	defer srv.Close()
	resp, gerr := http.Get(srv.URL)
	if gerr != nil {
		t.Fatal(gerr)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, "warden_requests_total") || strings.Contains(body, "warden_ratelimit_total") {
		t.Errorf("scrape with unreadable maps: %d\n%s", resp.StatusCode, body)
	}
	if len(logged) != 1 || !strings.Contains(logged[0], "bad file descriptor") {
		t.Errorf("logged %q", logged)
	}
}

func TestScrapeTimeGauges(t *testing.T) {
	var expiry time.Time
	var dropped uint64
	m := New(Sources{
		SVIDExpiry:      func() time.Time { return expiry },
		InboundConns:    func() int { return 7 },
		UpstreamConns:   func() (int, int) { return 2, 5 },
		UpstreamDesyncs: func() uint64 { return 1 },
		UpgradedConns:   func() int { return 3 },
		LogSinks:        []LogSink{{Name: "log", Dropped: func() uint64 { return dropped }}, {Name: "decision", Dropped: func() uint64 { return 0 }}},
	})
	got := series(t, m.Gatherer())
	if _, ok := got["warden_svid_expiry_timestamp_seconds"]; ok {
		t.Error("an expiry before there is an SVID")
	}
	expiry, dropped = time.Unix(1_900_000_000, 500_000_000), 42
	want(t, series(t, m.Gatherer()), map[string]float64{
		`warden_svid_expiry_timestamp_seconds`:            1_900_000_000.5,
		`warden_inbound_connections`:                      7,
		`warden_upgraded_connections`:                     3,
		`warden_upstream_connections{state="active"}`:     2,
		`warden_upstream_connections{state="idle"}`:       5,
		`warden_upstream_desyncs_total`:                   1,
		`warden_log_lines_dropped_total{sink="log"}`:      42,
		`warden_log_lines_dropped_total{sink="decision"}`: 0,
	})
}

// The handler speaks Prometheus' text format, and OpenMetrics to a scraper
// that asks for it.
func TestHandlerFormats(t *testing.T) {
	srv := httptest.NewServer(New(Sources{}).Handler(nil))
	defer srv.Close()
	for accept, ctype := range map[string]string{
		"": "text/plain; version=0.0.4",
		"application/openmetrics-text; version=1.0.0": "application/openmetrics-text; version=1.0.0",
	} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || !strings.Contains(body, "warden_requests_total") {
			t.Errorf("Accept %q: Content-Type %q", accept, resp.Header.Get("Content-Type"))
		}
		if accept != "" && !strings.HasSuffix(body, "# EOF\n") {
			t.Errorf("OpenMetrics without # EOF")
		}
	}
}

func mapsEqual(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// BenchmarkRequest is what the proxy's Observer costs per request: a
// counter and three histograms, no allocation.
func BenchmarkRequest(b *testing.B) {
	m := New(Sources{})
	r := proxy.RequestStats{Outcome: proxy.OutcomeAllow, Status: 200, Total: 180 * time.Microsecond, Forwarded: true, Upstream: 120 * time.Microsecond}
	b.ReportAllocs()
	for b.Loop() {
		m.Request(r)
	}
}

// BenchmarkDecision is what the pipeline's Observer costs per cached
// decision.
func BenchmarkDecision(b *testing.B) {
	m := New(Sources{})
	b.ReportAllocs()
	for b.Loop() {
		m.Token("", true)
		m.Decision(true, true, nil, 150*time.Nanosecond)
	}
}
