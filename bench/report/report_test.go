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
			rec("haproxy", "closed", round+1, 52000*k, 0.5, 1.5, 1, 20),
			rec("caddy", "closed", round+1, 25000*k, 0.5, 1.5, 1, 40),
		)
		rs[len(rs)-5].Rate = 5000
		rs[len(rs)-8].Rate = 5000
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
	if got := strings.Join(names, " "); got != "direct warden ghostunnel nginx inproc-mtls haproxy caddy" {
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
	for _, tg := range rep.targets("warden") {
		got[tg.goal] = tg.measured + " | " + tg.status()
	}
	want := map[string]string{
		"≥ 1.0× ghostunnel's throughput":          "1.25× (50.0k vs 40.0k rps) | met (25% to spare)",
		"≥ 1.0× HAProxy's throughput":             "0.96× (50.0k vs 52.0k rps) | **missed** (4% short)",
		"≥ 1.0× nginx's throughput":               "1.67× (50.0k vs 30.0k rps) | met (67% to spare)",
		"≥ 1.0× Caddy's throughput":               "2.00× (50.0k vs 25.0k rps) | met (100% to spare)",
		"stretch: ≥ 1.5× ghostunnel's throughput": "1.25× (50.0k vs 40.0k rps) | **missed** (17% short)",
		// warden 1 CPU at 50k rps, ghostunnel 1 CPU at 40k rps.
		"own CPU per request ≤ ghostunnel's": "20.0 vs 25.0 µs at max throughput (0.80×) | met (20% to spare)",
		"p99 at a fixed rate ≤ ghostunnel's": "0.500 vs 0.600 ms at 5000 req/s (0.83×) | met (17% to spare)",
		"peak RSS under load ≤ 48 MiB":       "53 MiB | **missed** (10% short)",
		// sampleRuns have no decision log counts.
		"audit trail intact: a decision log line for every request": " | not measured",
	}
	if len(got) != len(want) {
		t.Errorf("%d targets, want %d: %v", len(got), len(want), got)
	}
	for goal, w := range want {
		if got[goal] != w {
			t.Errorf("%s:\n got %q\nwant %q", goal, got[goal], w)
		}
	}

	// A target whose cases were not run says so instead of guessing.
	var only []record
	for _, r := range sampleRuns() {
		if r.Case == "warden" {
			only = append(only, r)
		}
	}
	for _, tg := range summarize(only, nil).targets("warden") {
		if want := "not measured"; tg.goal != "peak RSS under load ≤ 48 MiB" && tg.status() != want {
			t.Errorf("%s: %q without the other cases, want %s", tg.goal, tg.status(), want)
		}
	}
}

func TestAuditTrailCountsADecisionLineForEveryRequestSent(t *testing.T) {
	runs := func(lines ...int64) []record {
		var rs []record
		for i, n := range lines {
			r := rec("warden", "closed", i+1, 50000, 0.3, 1.0, 1, 50)
			r.Result.Sent = 250000 // warmup included
			r.DecisionLines = &n
			rs = append(rs, r)
		}
		return rs
	}
	for _, tc := range []struct {
		name  string
		lines []int64
		want  string
	}{
		{"every request has its line", []int64{250000, 250000}, "500000 lines for 500000 requests in all runs | met"},
		{"a run that lost lines is missed", []int64{250000, 249990}, "499990 lines for 500000 requests in all runs, 1 runs short | **missed**"},
		// More lines than requests is as wrong as fewer: the count must match.
		{"extra lines are missed too", []int64{250000, 250001}, "500001 lines for 500000 requests in all runs | **missed**"},
	} {
		ts := summarize(runs(tc.lines...), nil).targets("warden")
		audit := ts[len(ts)-1]
		if got := audit.measured + " | " + audit.status(); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestTargetsJudgeEachWardenVariantInItsOwnColumn(t *testing.T) {
	rs := sampleRuns()
	for round, k := range []float64{1, 0.9, 1.2} {
		rs = append(rs, rec("warden-fastpath", "closed", round+1, 60000*k, 0.3, 1.0, 1, 40))
	}
	md := summarize(rs, nil).markdown()
	for _, want := range []string{
		"| target | warden | warden-fastpath |\n|---|---|---|\n",
		"| ≥ 1.0× HAProxy's throughput | 0.96× (50.0k vs 52.0k rps): **missed** (4% short) | 1.15× (60.0k vs 52.0k rps): met (15% to spare) |",
		// warden-fastpath has no open-loop run: its p99 is not judged.
		"| p99 at a fixed rate ≤ ghostunnel's | 0.500 vs 0.600 ms at 5000 req/s (0.83×): met (17% to spare) | not measured |",
		"warden full path, fast path on: 60.0k rps keep-alive, 1.20× warden, 0.60× direct, 1.50× ghostunnel",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
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
		"| stretch: ≥ 1.5× ghostunnel's throughput | 1.25× (50.0k vs 40.0k rps): **missed** (17% short) |",
		"- Cases: 7, all from this one run (direct, warden, ghostunnel, nginx, inproc-mtls, haproxy, caddy); every case measured\n",
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

// straceTable is strace -c's table as strace 6.1 writes it (the errors
// column blank where no call failed).
const straceTable = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 40.10    0.040100           2     20000           write
 30.00    0.030000           1     20100     10100 read
 15.00    0.015000           2      7000           epoll_pwait
  9.00    0.009000           3      3000           futex
  3.00    0.003000          93        32           accept4
  2.00    0.002000           1      1000           nanosleep
  0.90    0.000900          28        32           epoll_ctl
------ ----------- ----------- --------- --------- ----------------
100.00    0.100000           1     51164     10100 total
`

func TestStraceTableIsCountedPerRequestByKind(t *testing.T) {
	rows, err := parseStrace(strings.NewReader(straceTable))
	if err != nil {
		t.Fatal(err)
	}
	s := summarizeSyscalls(rows, load.Result{Requests: 10000})
	checks := []struct {
		what      string
		got, want float64
	}{
		{"total", s.Total, 5.12}, // 51164 / 10000
		{"read", s.Read, 2.01},
		{"write", s.Write, 2},
		{"poll (epoll_pwait and epoll_ctl)", s.Poll, 0.7},
		{"futex", s.Futex, 0.3},
		{"other (accept4, nanosleep)", s.Other, 0.1},
		{"failed", s.Failed, 1.01},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v/request, want %v", c.what, c.got, c.want)
		}
	}
	if got := strings.Join(s.Top, ", "); got != "read 2.01, write 2.00, epoll_pwait 0.70, futex 0.30, nanosleep 0.10" {
		t.Errorf("top %q", got)
	}
}

func TestStraceTableThatDoesNotAddUpIsRefused(t *testing.T) {
	for name, table := range map[string]string{
		"total row disagrees": strings.Replace(straceTable, "51164", "51165", 1),
		"calls not a number":  strings.Replace(straceTable, "20000", "2x000", 1),
		"not a table":         "strace: attach: ptrace(PTRACE_SEIZE, 1234): Operation not permitted\n",
	} {
		if _, err := parseStrace(strings.NewReader(table)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestUserAndSystemCPUAndLoopbackPacketsPerRequest(t *testing.T) {
	var rs []record
	for round := 1; round <= 3; round++ {
		r := rec("warden", "closed", round, 50000, 0.3, 1.0, 1, 50)
		// 4 s at 50k rps, 1 CPU: 300 ticks user, 100 system; 4 packets a request.
		r.CPUUserTicks, r.CPUSysTicks, r.LoPackets = 300, 100, 4*200000
		rs = append(rs, r)
	}
	old := rec("ghostunnel", "closed", 1, 40000, 0.4, 1.2, 1, 36) // recorded before the split
	rep := summarize(append(rs, old), nil)
	w, g := rep.find("warden"), rep.find("ghostunnel")
	if w.CPUUserUsPerReq != 15 || w.CPUSysUsPerReq != 5 || w.LoPacketsPerReq != 4 {
		t.Errorf("user %v sys %v µs, %v lo packets per request: want 15, 5 and 4", w.CPUUserUsPerReq, w.CPUSysUsPerReq, w.LoPacketsPerReq)
	}
	if g.CPUUserUsPerReq != 0 || g.CPUSysUsPerReq != 0 {
		t.Errorf("a run without the split shows user %v sys %v, want none", g.CPUUserUsPerReq, g.CPUSysUsPerReq)
	}
	md := rep.markdown()
	for _, want := range []string{
		"| warden | 15.0 / 5.0 | – | – | – | – | – | – | – | – | 4.00 |",
		"| ghostunnel | – | – | – | – | – | – | – | – | – | – |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	b, _ := json.Marshal(rs[0])
	var out bytes.Buffer
	if err := run([]string{"-line"}, bytes.NewReader(b), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "user/sys 15.0/5.0 us  lo 4.0 pkt/req") {
		t.Errorf("line %q", out.String())
	}
}

// TestEveryCaseOfTheRunIsInTheReport: a case that failed before its first
// run still has its row, its description and its reason; one that failed
// later keeps its figures, marked.
func TestEveryCaseOfTheRunIsInTheReport(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var raw bytes.Buffer
	for _, r := range sampleRuns() {
		b, _ := json.Marshal(r)
		raw.Write(append(b, '\n'))
	}
	in := write("raw.jsonl", raw.String())
	cases := write("cases.tsv", "direct\tthe floor\nwarden\tfull path\nwarden-fastpath\tsockmap\nghostunnel\tL4\n")
	failed := write("failed.tsv", "warden-fastpath\tGET /fastpath on its admin address did not answer 200: this warden has no fast path (404)\n"+
		"nginx\tprocess 42 exited in round 2, mode open (log: nginx.log)\n")
	write("strace.warden.txt", straceTable)
	sys := write("syscalls.jsonl", fmt.Sprintf(`{"case":"warden","strace":%q,"result":{"requests":10000,"errors":0}}`+"\n",
		filepath.Join(dir, "strace.warden.txt")))
	write("fastpath.warden.json", `{"mode":"off","cgroup":"/warden-bench.1.warden","messages_redirected":0,"map":{"sockets":0}}`+"\n")
	write("fastpath.warden-fastpath.json", "404 page not found\n")
	fp := write("fastpath.tsv", "warden\t"+filepath.Join(dir, "fastpath.warden.json")+"\n"+
		"warden-fastpath\t"+filepath.Join(dir, "fastpath.warden-fastpath.json")+"\n")
	mdFile, jsonFile := filepath.Join(dir, "r.md"), filepath.Join(dir, "r.json")
	if err := run([]string{"-in", in, "-cases", cases, "-failed", failed, "-syscalls", sys, "-fastpath", fp,
		"-md", mdFile, "-json", jsonFile, "-plot-dir", dir}, nil, io.Discard); err != nil {
		t.Fatal(err)
	}

	md, _ := os.ReadFile(mdFile)
	for _, want := range []string{
		"- Cases: 8, all from this one run (direct, warden, warden-fastpath, ghostunnel, nginx, inproc-mtls, haproxy, caddy); **failed: warden-fastpath, nginx** (see Cases that failed)\n",
		"| warden-fastpath (**failed**) | – | – | – | – | – | – | – | – | – | – |\n",
		"| nginx (**failed**) | 30.0k (27.0k–36.0k) |",
		"- **warden-fastpath**: sockmap\n",
		"## Cases that failed",
		"- **warden-fastpath**: GET /fastpath on its admin address did not answer 200: this warden has no fast path (404)\n",
		"| warden | – | 5.12 | 2.01 | 2.00 | 0.70 | 0.30 | 0.10 | 1.01 | read 2.01, write 2.00, epoll_pwait 0.70, futex 0.30, nanosleep 0.10 | – |",
		"| warden | `cgroup` \"/warden-bench.1.warden\", `map.sockets` 0, `messages_redirected` 0, `mode` \"off\" |",
		"| target | warden | warden-fastpath |",
		// A bad answer is shown as such; the report is not lost to it.
		"| warden-fastpath | not JSON: \"404 page not found\\n\" |",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}

	var cs []map[string]any
	b, _ := os.ReadFile(jsonFile)
	if err := json.Unmarshal(b, &cs); err != nil {
		t.Fatal(err)
	}
	byName := map[string]map[string]any{}
	for _, c := range cs {
		byName[c["name"].(string)] = c
	}
	if f := byName["warden-fastpath"]; f == nil || f["rps"] != nil || !strings.Contains(fmt.Sprint(f["failed"]), "no fast path") {
		t.Errorf("JSON warden-fastpath: %v", f)
	}
	if s, _ := byName["warden"]["syscalls"].(map[string]any); s == nil || s["total"] != 5.12 || s["requests"] != 10000.0 {
		t.Errorf("JSON warden syscalls: %v", byName["warden"]["syscalls"])
	}
	if f, _ := byName["warden"]["fastpath"].(map[string]any); f == nil || f["mode"] != "off" {
		t.Errorf("JSON warden fastpath: %v", byName["warden"]["fastpath"])
	}
	// Nothing to draw for a case that never ran.
	rps, _ := os.ReadFile(filepath.Join(dir, "rps.dat"))
	if strings.Contains(string(rps), "warden-fastpath") {
		t.Errorf("rps.dat has the case that never ran:\n%s", rps)
	}

	var line bytes.Buffer
	if err := run([]string{"-syscalls", sys, "-syscall-line", "warden"}, nil, &line); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(line.String(), "syscalls warden            5.12 /req: read 2.01  write 2.00") {
		t.Errorf("syscall line %q", line.String())
	}
}

// testdata/strace-warden.txt is strace 6.1's table for warden's full path
// (the fast path on) during 3000 keep-alive requests over 32 connections,
// from a bench/run.sh run.
func TestStraceTableOfARealRun(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "strace-warden.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := parseStrace(f)
	if err != nil {
		t.Fatal(err)
	}
	s := summarizeSyscalls(rows, load.Result{Requests: 3000})
	got := fmt.Sprintf("total %.2f read %.2f write %.2f poll %.2f futex %.2f other %.2f failed %.2f top %s",
		s.Total, s.Read, s.Write, s.Poll, s.Futex, s.Other, s.Failed, strings.Join(s.Top, ", "))
	// recvfrom counts as a read: one per request, every one EAGAIN.
	want := "total 7.07 read 4.76 write 2.02 poll 0.10 futex 0.00 other 0.18 failed 2.73 " +
		"top read 3.76, write 2.02, recvfrom 1.00, nanosleep 0.10, epoll_pwait 0.09"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
