package main

// GET /metrics (issue 16), end to end: a known mix of requests over real
// mTLS to the real binary, then one scrape parsed with Prometheus' own text
// parser, and every counter of the mix checked exactly.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/warden-sidecar/warden/agent/token/tokentest"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// scrape reads admin's /metrics as Prometheus does: one value per series,
// keyed as a PromQL selector with its labels sorted; a histogram is its
// _count and _sum.
func scrape(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	return scrapeWith(t, http.DefaultClient, admin)
}

func scrapeWith(t *testing.T, c *http.Client, admin string) map[string]float64 {
	t.Helper()
	resp, err := c.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			key := func(suffix string) string {
				if len(ls) == 0 {
					return name + suffix
				}
				return name + suffix + "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key("")] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key("")] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key("_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key("_sum")] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// wantSeries checks each series of want, and that every other series of
// the families want names is 0.
func wantSeries(t *testing.T, got, want map[string]float64) {
	t.Helper()
	families := map[string]bool{}
	for k, v := range want {
		name, _, _ := strings.Cut(k, "{")
		families[name] = true
		if g, ok := got[k]; !ok {
			t.Errorf("no series %s", k)
		} else if g != v {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
	for k, v := range got {
		name, _, _ := strings.Cut(k, "{")
		if _, named := want[k]; families[name] && !named && v != 0 {
			t.Errorf("%s = %v, want 0", k, v)
		}
	}
}

// metricsPolicy denies /admin and allows the rest; it reads only the
// path, so a repeated path is a cached decision whoever sends it.
const metricsPolicy = `package warden.authz
default allow := false
allow if not startswith(input.path, "/admin")
`

// One sidecar meets every kind of request but an app that is down and an
// OpenAPI refusal, which TestMetricsOfUpstreamErrorsAndOpenAPI sends: the
// counters are exactly the mix.
func TestMetricsCountAKnownMixOfRequests(t *testing.T) {
	key := tokentest.NewKey(t, "ES256", "metrics-key")
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, tokentest.JWKS(t, key), 0o600); err != nil {
		t.Fatal(err)
	}
	expiredClaims := userClaims("alice")
	expiredClaims["exp"] = time.Now().Add(-time.Hour).Unix()
	valid := secret(t, "bearer token", key.Mint(t, userClaims("alice")))
	expired := secret(t, "bearer token", key.Mint(t, expiredClaims))

	app := startApp(t, appOptions{})
	s := startSidecar(t, app,
		"WARDEN_ALLOWED_PEERS=spiffe://warden.local/ns/default/sa/client",
		"WARDEN_POLICY_BUNDLE="+policyDir(t, metricsPolicy),
		"WARDEN_DECISION_LOG="+filepath.Join(t.TempDir(), "decisions.log"),
		"WARDEN_JWT_JWKS="+jwks, "WARDEN_JWT_ISSUERS="+jwtIssuer, "WARDEN_JWT_AUDIENCES="+jwtAudience,
		"WARDEN_JWT_REQUIRED=false",
		// One request per second per connection: the second request on a
		// connection is refused, the first on each new one never is.
		"WARDEN_RATE_LIMIT_MODE=userspace", "WARDEN_PACKET_RATE_LIMIT=1")
	intruderDir := filepath.Join(t.TempDir(), "intruder")
	if out, err := devIssueCmd(t, s.devDir, "spiffe://warden.local/ns/other/sa/intruder", intruderDir); err != nil {
		t.Fatalf("dev issue: %v\n%s", err, out)
	}
	intruder := &sidecar{process: s.process, addr: s.addr, tls: clientTLS(t, intruderDir)}

	// Each request on a connection of its own, but where said.
	conns := 0
	send := func(what string, s *sidecar, raw string, status int) {
		t.Helper()
		conns++
		if got := s.send(t, raw); got.status != status {
			t.Fatalf("%s: %s, want %d", what, got, status)
		}
	}
	for range 3 {
		send("allowed", s, rawGET("/hello"), 200) // uncached, then cached twice
	}
	send("a valid token", s, rawGET("/hello", "Authorization: Bearer "+valid), 200)
	send("an expired token", s, rawGET("/hello", "Authorization: Bearer "+expired), 401)
	send("denied by policy", s, rawGET("/admin/users"), 403)
	send("denied by policy, cached", s, rawGET("/admin/users"), 403)
	send("a peer not allowed", intruder, rawGET("/hello"), 403)
	send("a JSON bomb", s, post("/data", "application/json", nested("[", "]", 40)), 400)
	send("an ambiguous path", s, rawGET("/a/%2e%2e%2f"), 400)
	send("a request fasthttp cannot read", s, "GET /x HTTP/1.1\r\nHost: app.local\r\nContent-Length: abc\r\n\r\n", 400)
	c := s.dial(t)
	conns++
	if got := c.do(rawGET("/hello")); got.status != 200 {
		t.Fatalf("first request on a connection: %s", got)
	}
	if got := c.do(rawGET("/hello")); got.status != 429 {
		t.Fatalf("second request on the connection within the second: %s", got)
	}
	c.Close()
	// A client without a certificate fails its handshake (with TLS 1.3
	// the client may learn it only at its first read).
	conns++
	if nocert, err := tls.Dial("tcp", s.addr, &tls.Config{InsecureSkipVerify: true}); err == nil {
		_, _ = nocert.Read(make([]byte, 1))
		nocert.Close()
	}

	policy := readPolicy(t, s.admin)
	var identity struct {
		SVIDExpiry time.Time `json:"svid_expiry"`
	}
	getJSON(t, s.admin+"/identity", &identity)

	// The handshake failure is counted when the server gives up on it.
	testenv.Poll(t, "the failed handshake in /metrics", 10*time.Second, func() bool {
		return scrape(t, s.admin)[`warden_tls_handshakes_total{result="error"}`] == 1
	})
	// An app connection pinned to a client connection closes once warden
	// has seen the client go.
	testenv.Poll(t, "the app connections of the closed clients to close", 10*time.Second, func() bool {
		return scrape(t, s.admin)[`warden_upstream_connections{state="idle"}`] == 0
	})
	m := scrape(t, s.admin)
	wantSeries(t, m, map[string]float64{
		// 3 + the token + the first on the limited connection.
		`warden_requests_total{code_class="2xx",decision="allow"}`: 5,
		// The expired token, the policy twice, the peer, the bomb.
		`warden_requests_total{code_class="4xx",decision="deny"}`:      5,
		`warden_requests_total{code_class="4xx",decision="invalid"}`:   2,
		`warden_requests_total{code_class="4xx",decision="ratelimit"}`: 1,
		`warden_denials_total{stage="token"}`:                          1,
		`warden_denials_total{stage="policy"}`:                         2,
		`warden_denials_total{stage="peer"}`:                           1,
		`warden_denials_total{stage="body"}`:                           1,
		// Every request but the unreadable one is timed; only the allowed
		// ones waited for the app.
		`warden_request_duration_seconds_count`:  12,
		`warden_upstream_duration_seconds_count`: 5,
		`warden_overhead_duration_seconds_count`: 5,

		`warden_decisions_total{cached="false",result="allow"}`:           1,
		`warden_decisions_total{cached="true",result="allow"}`:            4,
		`warden_decisions_total{cached="false",result="deny"}`:            1,
		`warden_decisions_total{cached="true",result="deny"}`:             1,
		`warden_policy_eval_duration_seconds_count`:                       2,
		`warden_policy_revision_info{revision="` + policy.Revision + `"}`: 1,
		`warden_bundle_loads_total{result="activated"}`:                   1,

		`warden_token_verifications_total{reason="none",result="valid"}`:      1,
		`warden_token_verifications_total{reason="expired",result="refused"}`: 1,
		// Every request that reached the pipeline without a token: /hello
		// thrice and once on the limited connection, /admin twice, the bomb.
		`warden_token_verifications_total{reason="none",result="absent"}`: 7,

		`warden_input_refusals_total{rule="max_depth",stage="body"}`: 1,

		// Every connection passed at accept; every request the limiter
		// saw (all but the unreadable one) passed, but one.
		`warden_ratelimit_total{mode="userspace",reason="within_limits",result="passed"}`: float64(conns + 11),
		`warden_ratelimit_total{mode="userspace",reason="packet_rate",result="dropped"}`:  1,
		`warden_blocked_sources`: 0,

		`warden_tls_handshakes_total{result="ok"}`:    float64(conns - 1),
		`warden_tls_handshakes_total{result="error"}`: 1,

		`warden_svid_expiry_timestamp_seconds`:            float64(identity.SVIDExpiry.Unix()),
		`warden_svid_rotations_total`:                     0,
		`warden_log_lines_dropped_total{sink="log"}`:      0,
		`warden_log_lines_dropped_total{sink="decision"}`: 0,
		// Each client connection had an app connection of its own
		// (WARDEN_UPSTREAM_AFFINITY=on), closed with it: the clients are
		// gone, and so are they.
		`warden_upstream_connections{state="active"}`: 0,
		`warden_upstream_connections{state="idle"}`:   0,
	})
	var rl struct {
		Counters struct {
			Passed  uint64 `json:"passed"`
			Dropped struct {
				PacketRate uint64 `json:"packet_rate"`
			} `json:"dropped"`
		} `json:"counters"`
	}
	getJSON(t, s.admin+"/ratelimit", &rl)
	if float64(rl.Counters.Passed) != m[`warden_ratelimit_total{mode="userspace",reason="within_limits",result="passed"}`] {
		t.Errorf("/ratelimit says %d passed, /metrics %v", rl.Counters.Passed, m[`warden_ratelimit_total{mode="userspace",reason="within_limits",result="passed"}`])
	}
	// warden's own time is within the whole: the overhead's sum is the
	// requests' minus the wait for the app, over the allowed ones.
	if o := m["warden_overhead_duration_seconds_sum"]; o <= 0 || o >= m["warden_request_duration_seconds_sum"] {
		t.Errorf("overhead sum %v, request duration sum %v", o, m["warden_request_duration_seconds_sum"])
	}

	// An open connection is a gauge of one, then none.
	idle, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.addr, s.tls)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Poll(t, "an open connection in /metrics", 10*time.Second, func() bool {
		return scrape(t, s.admin)["warden_inbound_connections"] == 1
	})
	idle.Close()
	testenv.Poll(t, "the connection closed in /metrics", 10*time.Second, func() bool {
		return scrape(t, s.admin)["warden_inbound_connections"] == 0
	})
}

// An app that is down, and a request the OpenAPI spec does not describe.
func TestMetricsOfUpstreamErrorsAndOpenAPI(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := &recordingApp{addr: ln.Addr().String()}
	ln.Close()
	s := startSidecar(t, dead, "WARDEN_OPENAPI_SPEC="+paymentsSpec)
	for range 2 {
		if got := s.send(t, rawGET("/accounts/7")); got.status != 502 || got.code() != "upstream_unavailable" {
			t.Fatalf("app down: %s", got)
		}
	}
	if got := s.send(t, rawGET("/nowhere")); got.status != 404 {
		t.Fatalf("no operation: %s", got)
	}
	m := scrape(t, s.admin)
	wantSeries(t, m, map[string]float64{
		`warden_requests_total{code_class="5xx",decision="error"}`:     2,
		`warden_requests_total{code_class="4xx",decision="deny"}`:      1,
		`warden_denials_total{stage="openapi"}`:                        1,
		`warden_input_refusals_total{rule="no_route",stage="openapi"}`: 1,
		`warden_decisions_total{cached="false",result="allow"}`:        1,
		`warden_decisions_total{cached="true",result="allow"}`:         1,
		`warden_request_duration_seconds_count`:                        3,
		`warden_upstream_duration_seconds_count`:                       2,
		`warden_overhead_duration_seconds_count`:                       2,
		`warden_upstream_connections{state="active"}`:                  0,
		`warden_upstream_connections{state="idle"}`:                    0,
		`warden_policy_revision_info{revision="default-1"}`:            1,
	})
	if math.IsNaN(m["warden_upstream_duration_seconds_sum"]) || m["warden_upstream_duration_seconds_sum"] <= 0 {
		t.Errorf("upstream duration sum %v", m["warden_upstream_duration_seconds_sum"])
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// With eBPF, the rate limiter's counters are the kernel's, read from its
// per-CPU map at each scrape: /metrics says what /ratelimit says, after
// SYNs the program dropped.
func TestBPFMetricsReadTheKernelCounters(t *testing.T) {
	s := startNsSidecar(t, "WARDEN_RATE_LIMIT_MODE=ebpf", "WARDEN_CONN_RATE_LIMIT=1", "WARDEN_CONN_BURST=3")
	l := s.link
	if ok := concurrently(8, func() error { return s.request(l.B4, l.A4) }); ok != 3 {
		t.Fatalf("%d of 8 connections at 1/s, burst 3 succeeded; want 3", ok)
	}
	// The client's requests to the admin port (another port) are not
	// counted: the counters stay still while they are read.
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
		ap := netip.MustParseAddrPort(addr)
		return s.dial(l.B4, ap.Addr(), int(ap.Port()))
	}}
	m := scrapeWith(t, &http.Client{Timeout: 3 * time.Second, Transport: tr}, "http://"+s.admin)
	v := s.rateLimitView(t)
	want := map[string]float64{
		`warden_ratelimit_total{mode="ebpf",reason="within_limits",result="passed"}`: float64(v.Counters.Passed),
		`warden_ratelimit_total{mode="ebpf",reason="unparsed",result="passed"}`:      float64(v.Counters.Unparsed),
		`warden_ratelimit_total{mode="ebpf",reason="conn_rate",result="dropped"}`:    5,
		`warden_ratelimit_total{mode="ebpf",reason="packet_rate",result="dropped"}`:  0,
		`warden_ratelimit_total{mode="ebpf",reason="blocked",result="dropped"}`:      0,
		`warden_blocked_sources`: 0,
	}
	wantSeries(t, m, want)
	if v.Counters.Passed == 0 || v.Counters.Dropped.ConnRate != 5 {
		t.Errorf("/ratelimit counters %+v", v.Counters)
	}
}
