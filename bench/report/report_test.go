package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-sidecar/warden/bench/loadgen/load"
)

// rec is a raw run: rps requests/s for 4s, the processes under test busy
// util CPUs, and their peak RSS.
func rec(name, mode string, round int, rps, p50, p99, util float64, hwmMiB int64) record {
	return record{
		Case: name, Mode: mode, Round: round, Conns: 32, HZ: 100, WindowS: 4,
		CPUTicks: int64(util * 400), HWMKiB: hwmMiB << 10,
		Result: load.Result{Requests: int64(rps * 4), DurationS: 4, RPS: rps, P50Ms: p50, P90Ms: p50 * 2, P99Ms: p99, P999Ms: p99 * 2},
	}
}

func sampleRuns() []record {
	var rs []record
	for round, k := range []float64{1, 0.9, 1.2} { // rounds differ; medians pick k=1
		rs = append(rs,
			rec("direct", "closed", round+1, 100000*k, 0.1, 0.4, 0.9, 14),
			rec("ghostunnel", "closed", round+1, 40000*k, 0.4, 1.2, 1, 36),
			rec("ghostunnel", "open", round+1, 5000, 0.15, 0.6*k, 0.2, 36),
			rec("warden", "closed", round+1, 50000*k, 0.3, 1.0, 1, 50),
			rec("warden", "open", round+1, 5000, 0.17, 0.5*k, 0.25, 52),
			rec("nginx", "closed", round+1, 30000*k, 0.5, 1.5, 1, 12),
			rec("inproc-mtls", "closed", round+1, 90000*k, 0.2, 0.5, 0.9, 20),
		)
		rs[len(rs)-3].Rate = 5000
		rs[len(rs)-6].Rate = 5000
	}
	rs = append(rs, rec("warden", "newconn", 1, 2000, 15, 30, 0.9, 53))
	rs[len(rs)-1].Result.Errors = 2
	return rs
}

func TestSummaryTakesMediansAndRatios(t *testing.T) {
	rep := summarize(sampleRuns(), []description{{"direct", "the floor"}, {"warden", "full path"}, {"absent", "never run"}})

	var names []string
	for _, c := range rep.Cases {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, " "); got != "direct warden ghostunnel nginx inproc-mtls" {
		t.Errorf("case order %q: want the described cases first, then the others as first run", got)
	}
	w := rep.find("warden")
	checks := []struct {
		what      string
		got, want float64
	}{
		{"rps (median)", *w.RPS, 50000},
		{"rps_min", w.RPSMin, 45000},
		{"rps_max", w.RPSMax, 60000},
		{"vs_direct", w.VsDirect, 0.5},
		{"vs_ghostunnel", w.VsGhostunnel, 1.25},
		{"p50_ms (open loop)", *w.P50Ms, 0.17},
		{"p99_ms (open loop)", *w.P99Ms, 0.5},
		{"p99_ms_max", w.P99MsMax, 0.6},
		{"closed_p99_ms", w.ClosedP99Ms, 1.0},
		{"cpu_s", *w.CPUS, 4},
		{"cpu_us_per_req", w.CPUUsPerReq, 20},
		{"open_cpu_us_per_req", w.OpenCPUUsPerReq, 50},
		{"newconn_rps", w.NewConnRPS, 2000},
		{"newconn_cpu_us_per_req", w.NewConnCPUUsPerReq, 450},
		{"rss_mib (peak over all runs)", w.RSSMiB, 53},
		{"errors (all runs)", float64(w.Errors), 2},
		{"latency_rate", w.LatencyRate, 5000},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("warden %s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if w.Description != "full path" || w.LatencyMode != "open" {
		t.Errorf("description %q latency mode %q", w.Description, w.LatencyMode)
	}
	// Without an open-loop run, latency comes from the closed loop, and says so.
	if n := rep.find("nginx"); n.LatencyMode != "closed" || *n.P99Ms != 1.5 {
		t.Errorf("nginx latency mode %q p99 %v: want the closed loop's 1.5", n.LatencyMode, *n.P99Ms)
	}
}

func TestGRPCCasesCompareWithGRPCDirect(t *testing.T) {
	rs := append(sampleRuns(),
		rec("grpc-direct", "closed", 1, 40000, 0.3, 0.9, 1, 15),
		rec("grpc-warden", "closed", 1, 10000, 1.2, 3, 1, 60),
		rec("grpc-warden", "open", 1, 5000, 0.4, 0.9, 0.5, 61))
	rs[len(rs)-1].Rate = 5000
	rep := summarize(rs, nil)
	g, w := rep.find("grpc-warden"), rep.find("warden")
	if g.VsDirect != 0.25 || g.VsGhostunnel != 0 {
		t.Errorf("grpc-warden × direct %v, × ghostunnel %v: want 0.25 (of grpc-direct) and none", g.VsDirect, g.VsGhostunnel)
	}
	if w.VsDirect != 0.5 {
		t.Errorf("warden × direct %v: want 0.5, still of the HTTP direct case", w.VsDirect)
	}
	md := rep.markdown()
	for _, want := range []string{"warden gRPC unary: 10.0k rps, 0.25× grpc-direct; p99 at 5000 req/s 0.900 ms; CPU 100.0 µs/call, peak RSS 61 MiB",
		"their × direct is to grpc-direct"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

func TestMedianOfAnEvenCountIsTheMeanOfTheMiddleTwo(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestTargetsSayHowFarTheyAre(t *testing.T) {
	rep := summarize(sampleRuns(), nil)
	got := map[string]string{}
	for _, tg := range rep.targets() {
		got[tg.goal] = tg.measured + " | " + tg.status()
	}
	for goal, want := range map[string]string{
		"full path ≥ 1.5× ghostunnel throughput":                        "1.25× (50.0k vs 40.0k rps) | **missed** (17% short)",
		"full path ≥ 2× nginx mTLS throughput":                          "1.67× (50.0k vs 30.0k rps) | **missed** (17% short)",
		"full path p99 ≤ ghostunnel's at a fixed rate":                  "0.500 vs 0.600 ms at 5000 req/s (0.83×) | met (17% to spare)",
		"full path ≥ 70% of in-process mTLS throughput":                 "0.56× (50.0k vs 90.0k rps) | **missed** (21% short)",
		"warden peak RSS < 64 MiB":                                      "53 MiB (warden 53) | met (17% to spare)",
		"full path ≤ 20 µs of its own CPU per request (PERFORMANCE.md)": "20.0 µs at max throughput, 50.0 µs at the fixed rate | met (0% to spare)",
	} {
		if got[goal] != want {
			t.Errorf("%s:\n got %q\nwant %q", goal, got[goal], want)
		}
	}

	// A target whose cases were not run says so instead of guessing.
	var only []record
	for _, r := range sampleRuns() {
		if r.Case == "warden" {
			only = append(only, r)
		}
	}
	for _, tg := range summarize(only, nil).targets()[:4] {
		if tg.status() != "not measured" {
			t.Errorf("%s: %q without the other cases, want not measured", tg.goal, tg.status())
		}
	}
}

func TestFilesFromRawRuns(t *testing.T) {
	dir := t.TempDir()
	var raw bytes.Buffer
	for _, r := range sampleRuns() {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		raw.Write(append(b, '\n'))
	}
	in := filepath.Join(dir, "raw.jsonl")
	cases := filepath.Join(dir, "cases.tsv")
	if err := os.WriteFile(in, raw.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cases, []byte("direct\tthe floor\nwarden\tfull path\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mdFile, jsonFile := filepath.Join(dir, "r.md"), filepath.Join(dir, "r.json")
	var out bytes.Buffer
	err := run([]string{"-in", in, "-cases", cases, "-md", mdFile, "-json", jsonFile, "-plot-dir", dir,
		"-png", "r.png", "-meta", "Host: test"}, nil, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "warden full path: 50.0k rps keep-alive, 0.50× direct, 1.25× ghostunnel") {
		t.Errorf("headline:\n%s", out.String())
	}

	// The JSON is a list of cases with the documented keys.
	var cs []map[string]any
	b, _ := os.ReadFile(jsonFile)
	if err := json.Unmarshal(b, &cs); err != nil {
		t.Fatalf("JSON is not a list of objects: %v", err)
	}
	for _, c := range cs {
		for _, k := range []string{"name", "rps", "p50_ms", "p99_ms", "errors", "cpu_s", "rss_mib"} {
			if _, ok := c[k]; !ok {
				t.Errorf("case %v has no %q", c["name"], k)
			}
		}
	}

	md, _ := os.ReadFile(mdFile)
	for _, want := range []string{
		"- Host: test",
		"| warden | 50.0k (45.0k–60.0k) | 0.50 | 1.25 | 20.0 (1.00) | 4.00 | 0.170 / 0.500 (0.450–0.600) | 2.0k (2.0k–2.0k) | 450 (0.90) | 53 | 2 |",
		"| full path ≥ 1.5× ghostunnel throughput | 1.25× (50.0k vs 40.0k rps) | **missed** (17% short) |",
		"![latency percentiles and throughput per case](r.png)",
		"- **warden**: full path",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}

	lat, _ := os.ReadFile(filepath.Join(dir, "latency.dat"))
	rps, _ := os.ReadFile(filepath.Join(dir, "rps.dat"))
	// Only cases with an open-loop run have latency to plot.
	if want := "\"warden\" 0.17 0.34 0.5 1\n\"ghostunnel\" 0.15 0.3 0.6 1.2\n"; !strings.HasSuffix(string(lat), want) {
		t.Errorf("latency.dat:\n%s\nwant it to end with\n%s", lat, want)
	}
	if !strings.Contains(string(rps), "\"warden\" 50000 45000 60000 2000 2000 2000\n") {
		t.Errorf("rps.dat:\n%s", rps)
	}
}

func TestLineIsOneLineOfText(t *testing.T) {
	b, _ := json.Marshal(rec("warden", "closed", 1, 50000, 0.3, 1.0, 1, 50))
	var out bytes.Buffer
	if err := run([]string{"-line"}, bytes.NewReader(b), &out); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%-8s %-15s %8.0f rps", "closed", "warden", 50000.0)
	if !strings.HasPrefix(out.String(), want) || strings.Count(out.String(), "\n") != 1 ||
		!strings.Contains(out.String(), "cpu  20.0 us/req (1.00 CPUs)  rss  50.0 MiB") {
		t.Errorf("got %q", out.String())
	}
}

func TestRunsDisturbedByTheRestOfTheMachineAreListed(t *testing.T) {
	quiet := rec("warden", "closed", 1, 50000, 0.3, 1.0, 1, 50)
	quiet.OtherTicks, quiet.BusyTicks = 380, 400+380+8 // 0.02 CPUs besides the measured processes
	busy := rec("warden", "closed", 2, 30000, 0.3, 1.0, 0.6, 50)
	busy.OtherTicks, busy.BusyTicks = 300, 240+300+200 // 0.5 CPUs
	rep := summarize([]record{quiet, busy}, nil)

	if got := rep.find("warden").ForeignCPUMax; got != 0.5 {
		t.Errorf("foreign_cpu_max %v, want 0.5", got)
	}
	md := rep.markdown()
	want := "- Other activity on the machine during the runs: median 0.26 CPUs; 1 of 2 runs above 0.1 CPUs: round 2 closed warden: 0.50 CPUs\n"
	if !strings.Contains(md, want) {
		t.Errorf("Markdown lacks %q:\n%s", want, md)
	}
}

func TestDisturbedAnswersByExitStatus(t *testing.T) {
	quiet := rec("warden", "closed", 1, 50000, 0.3, 1.0, 1, 50)
	quiet.OtherTicks, quiet.BusyTicks = 380, 400+380+8
	busy := quiet
	busy.BusyTicks += 100 // 0.25 CPUs more
	for _, tc := range []struct {
		r    record
		want error
	}{{quiet, errUndisturbed}, {busy, nil}} {
		b, _ := json.Marshal(tc.r)
		if err := run([]string{"-disturbed"}, bytes.NewReader(b), io.Discard); err != tc.want {
			t.Errorf("foreign %.2f CPUs: got %v, want %v", tc.r.foreignCPU(), err, tc.want)
		}
	}
}
