package agent

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/spiffe/spiffetest"
)

// scrapeMetrics reads GET /metrics as Prometheus does, into one value per
// series keyed as a PromQL selector (labels sorted).
func scrapeMetrics(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return flatten(mfs)
}

func flatten(mfs map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			key := name
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Untyped != nil:
				out[key] = m.GetUntyped().GetValue()
			}
		}
	}
	return out
}

// The identity's rotations and its SVID's expiry reach /metrics: the
// expiry read from the source at each scrape, the rotation counted by the
// identity component.
func TestMetricsFollowTheSVID(t *testing.T) {
	ca := spiffetest.NewCA(t, td)
	wapi := spiffetest.NewWorkloadAPI(t)
	first := ca.SVID(appID, time.Hour)
	wapi.Set(first, ca.Bundle())
	r := startAgent(t, echoApp(t), map[string]string{"SPIFFE_ENDPOINT_SOCKET": wapi.Addr()})
	admin := r.admin(t)
	waitReady(t, admin, 200)

	m := scrapeMetrics(t, admin)
	if got, want := m["warden_svid_expiry_timestamp_seconds"], float64(first.Certificates[0].NotAfter.Unix()); got != want {
		t.Errorf("expiry %v, want %v", got, want)
	}
	if got := m["warden_svid_rotations_total"]; got != 0 {
		t.Errorf("rotations %v before any", got)
	}
	if got := m[`warden_policy_revision_info{revision="default-1"}`]; got != 1 {
		t.Errorf("revision info of the default bundle: %v", got)
	}
	if got := m[`warden_bundle_loads_total{result="activated"}`]; got != 1 {
		t.Errorf("bundle loads %v, want 1", got)
	}

	second := ca.SVID(appID, 2*time.Hour)
	wapi.Set(second, ca.Bundle())
	waitFor(t, "the rotation in /metrics", func() bool {
		return scrapeMetrics(t, admin)["warden_svid_rotations_total"] == 1
	})
	if got, want := scrapeMetrics(t, admin)["warden_svid_expiry_timestamp_seconds"], float64(second.Certificates[0].NotAfter.Unix()); got != want {
		t.Errorf("expiry after rotation %v, want %v", got, want)
	}
}

// The batched log writers' dropped lines, which nothing else reports, are
// counted per sink.
func TestLogDropsAreCountedPerSink(t *testing.T) {
	block := make(chan struct{})
	stuck := func() *BatchWriter {
		return NewBatchWriter(writerFunc(func(p []byte) (int, error) { <-block; return len(p), nil }), 100)
	}
	logOut, decisionOut := stuck(), stuck()
	defer func() {
		close(block)
		_ = logOut.Close()
		_ = decisionOut.Close()
	}()
	a := New(config.Config{}, zerolog.New(logOut), WithLogWriter(logOut))
	a.decisionOut.Store(decisionOut)
	line := []byte(strings.Repeat("x", 30) + "\n")
	for range 10 {
		_, _ = logOut.Write(line)
	}
	for range 10 {
		_, _ = decisionOut.Write(line)
	}
	mfs, err := a.metrics.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	got := flatten(byName)
	// A batch holds 3 lines of 31 bytes, and the stuck writer takes at
	// most one batch (flushed when half full, after 2 lines): at least 5
	// of 10 lines are dropped.
	if n := got[`warden_log_lines_dropped_total{sink="log"}`]; n != float64(logOut.Dropped()) || n < 5 {
		t.Errorf("log sink: %v dropped, the writer says %d", n, logOut.Dropped())
	}
	if n := got[`warden_log_lines_dropped_total{sink="decision"}`]; n != float64(decisionOut.Dropped()) || n < 5 {
		t.Errorf("decision sink: %v dropped, the writer says %d", n, decisionOut.Dropped())
	}
}
