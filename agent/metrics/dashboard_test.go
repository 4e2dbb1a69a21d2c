package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/warden-sidecar/warden/agent/ratelimit"
	"github.com/warden-sidecar/warden/internal/ratekeys"
)

const dashboardFile = "../../deploy/grafana/warden.json"

// family is what the dashboard may name of a metric family: its label
// names, each with the values its series have.
type family struct {
	kind   dto.MetricType
	labels map[string]map[string]bool
}

// everySeries is a registry with every source set, so that every family
// has its series, and what it holds by family name.
func everySeries(t *testing.T) map[string]family {
	t.Helper()
	m := New(Sources{
		PolicyRevision: func() string { return "r1" },
		RateLimit: func() (ratelimit.Totals, error) {
			return ratelimit.Totals{Mode: "ebpf", Counters: ratelimit.Counters{Passed: 1}}, nil
		},
		RateLimitKeys:   func() ratekeys.KeysStats { return ratekeys.KeysStats{Keys: 1, Max: 10} },
		SVIDExpiry:      func() time.Time { return time.Now().Add(time.Hour) },
		InboundConns:    func() int { return 0 },
		UpstreamConns:   func() (int, int) { return 0, 0 },
		UpstreamDesyncs: func() uint64 { return 0 },
		UpgradedConns:   func() int { return 0 },
		LogSinks:        []LogSink{{Name: "log", Dropped: func() uint64 { return 0 }}},
		FastPath:        func() (FastPathTotals, bool) { return FastPathTotals{Sockets: 2}, true },
	})
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]family{}
	for _, mf := range mfs {
		f := family{kind: mf.GetType(), labels: map[string]map[string]bool{}}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if f.labels[l.GetName()] == nil {
					f.labels[l.GetName()] = map[string]bool{}
				}
				f.labels[l.GetName()][l.GetValue()] = true
			}
		}
		out[mf.GetName()] = f
	}
	return out
}

// dashboardExprs returns the PromQL of every panel's targets and of the
// template variables, by where it is.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard without title or uid")
	}
	exprs := map[string]string{}
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for i, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: target %d has no expression", p.Title, i)
			}
			exprs[p.Title+" #"+string(rune('A'+i))] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			if s, ok := q["query"].(string); ok {
				exprs["variable "+v.Name] = s
			}
		}
	}
	return exprs
}

var (
	// A metric warden, Go or the process collector exposes, with its
	// selector if any.
	metricRef = regexp.MustCompile(`\b((?:warden|go|process)_[A-Za-z0-9_]+)\b(\{[^}]*\})?`)
	matcher   = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!=|!~|=)\s*"([^"]*)"`)
	grouping  = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// targetLabels are the labels Prometheus adds to what it scrapes.
var targetLabels = []string{"job", "instance"}

// The dashboard cannot drift from the registry: every metric its queries
// name exists, every label they match or group by is one of that metric's,
// and every value they match exactly is one its series have.
func TestDashboardQueriesWhatTheRegistryHas(t *testing.T) {
	fams := everySeries(t)
	// resolve names a series of the exposition: a family, or a histogram's
	// _bucket, _sum or _count.
	resolve := func(name string) (family, string, bool) {
		if f, ok := fams[name]; ok {
			return f, name, true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok {
				if f, ok := fams[base]; ok && f.kind == dto.MetricType_HISTOGRAM {
					return f, base, true
				}
			}
		}
		return family{}, "", false
	}
	used := map[string]bool{}
	for where, expr := range dashboardExprs(t) {
		refs := metricRef.FindAllStringSubmatch(expr, -1)
		if len(refs) == 0 {
			t.Errorf("%s: names no metric: %s", where, expr)
		}
		var labels []string // of every metric the expression names
		for _, ref := range refs {
			f, base, ok := resolve(ref[1])
			if !ok {
				t.Errorf("%s: %s is not in warden's registry", where, ref[1])
				continue
			}
			used[base] = true
			for l := range f.labels {
				labels = append(labels, l)
			}
			if strings.HasSuffix(ref[1], "_bucket") {
				labels = append(labels, "le")
			}
			for _, m := range matcher.FindAllStringSubmatch(ref[2], -1) {
				name, op, value := m[1], m[2], m[3]
				switch {
				case slices.Contains(targetLabels, name):
				case f.labels[name] == nil:
					t.Errorf("%s: %s has no label %s", where, ref[1], name)
				case op == "=" && !strings.Contains(value, "$") && !f.labels[name][value]:
					t.Errorf("%s: %s{%s} never has the value %q", where, ref[1], name, value)
				}
			}
		}
		for _, g := range grouping.FindAllStringSubmatch(expr, -1) {
			for l := range strings.SplitSeq(g[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !slices.Contains(labels, l) && !slices.Contains(targetLabels, l) {
					t.Errorf("%s: groups by %s, which none of its metrics has", where, l)
				}
			}
		}
	}
	// And it shows what matters: each of these on some panel.
	for _, name := range []string{
		"warden_requests_total", "warden_denials_total", "warden_overhead_duration_seconds",
		"warden_decisions_total", "warden_token_verifications_total", "warden_input_refusals_total",
		"warden_ratelimit_total", "warden_svid_expiry_timestamp_seconds", "warden_log_lines_dropped_total",
	} {
		if !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
}
