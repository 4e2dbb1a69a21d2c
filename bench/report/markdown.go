package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// target is one of issue 8's goals for warden's full path (case "warden").
type target struct {
	goal     string
	measured string // the figures it was judged on
	ratio    float64
	want     float64
	atMost   bool // the ratio must be at most want (else at least)
	ok       bool // judged; false when a case it needs was not run
}

func (t target) status() string {
	switch {
	case !t.ok:
		return "not measured"
	case t.atMost && t.ratio <= t.want, !t.atMost && t.ratio >= t.want:
		return fmt.Sprintf("met (%s)", margin(t))
	default:
		return fmt.Sprintf("**missed** (%s)", margin(t))
	}
}

// margin says how far the measurement is from the target, in percent of
// the target.
func margin(t target) string {
	d := (t.ratio/t.want - 1) * 100
	if t.atMost {
		d = -d
	}
	if d = math.Round(d); d == 0 {
		d = 0 // not -0
	}
	if d >= 0 {
		return fmt.Sprintf("%.0f%% to spare", d)
	}
	return fmt.Sprintf("%.0f%% short", -d)
}

func (rep *report) targets() []target {
	w, gt, ng, in := rep.find("warden"), rep.find("ghostunnel"), rep.find("nginx"), rep.find("inproc-mtls")
	rpsRatio := func(goal string, other *caseSummary, want float64) target {
		t := target{goal: goal, want: want}
		if w == nil || w.RPS == nil || other == nil || other.RPS == nil || *other.RPS == 0 {
			return t
		}
		t.ratio, t.ok = *w.RPS / *other.RPS, true
		t.measured = fmt.Sprintf("%.2f× (%s vs %s rps)", t.ratio, kilo(*w.RPS), kilo(*other.RPS))
		return t
	}
	ts := []target{
		rpsRatio("full path ≥ 1.5× ghostunnel throughput", gt, 1.5),
		rpsRatio("full path ≥ 2× nginx mTLS throughput", ng, 2),
	}
	p99 := target{goal: "full path p99 ≤ ghostunnel's at a fixed rate", want: 1, atMost: true}
	if w != nil && gt != nil && w.P99Ms != nil && gt.P99Ms != nil && *gt.P99Ms > 0 && w.LatencyMode == "open" {
		p99.ratio, p99.ok = *w.P99Ms / *gt.P99Ms, true
		p99.measured = fmt.Sprintf("%.3f vs %.3f ms at %g req/s (%.2f×)", *w.P99Ms, *gt.P99Ms, w.LatencyRate, p99.ratio)
	}
	ts = append(ts, p99, rpsRatio("full path ≥ 70% of in-process mTLS throughput", in, 0.7))

	rss := target{goal: "warden peak RSS < 64 MiB", want: 64, atMost: true}
	var peak float64
	var where []string
	for _, name := range []string{"warden-mtls", "warden", "warden-nocache"} {
		if c := rep.find(name); c != nil {
			peak = max(peak, c.RSSMiB)
			where = append(where, fmt.Sprintf("%s %.0f", name, c.RSSMiB))
		}
	}
	if len(where) > 0 {
		rss.ratio, rss.ok = peak, true
		rss.measured = fmt.Sprintf("%.0f MiB (%s)", peak, strings.Join(where, ", "))
	}
	cpu := target{goal: "full path ≤ 20 µs of its own CPU per request (PERFORMANCE.md)", want: 20, atMost: true}
	if w != nil && w.CPUUsPerReq > 0 {
		cpu.ratio, cpu.ok = w.CPUUsPerReq, true
		cpu.measured = fmt.Sprintf("%.1f µs at max throughput, %.1f µs at the fixed rate", w.CPUUsPerReq, w.OpenCPUUsPerReq)
	}
	return append(ts, rss, cpu)
}

// headline is the summary printed at the end of a run and at the top of the
// Markdown report.
func (rep *report) headline() string {
	var b strings.Builder
	if w := rep.find("warden"); w != nil && w.RPS != nil {
		fmt.Fprintf(&b, "warden full path: %s rps keep-alive", kilo(*w.RPS))
		for _, other := range []string{"direct", "ghostunnel", "nginx", "haproxy", "opa-sidecar", "inproc-mtls"} {
			if o := rep.find(other); o != nil && o.RPS != nil && *o.RPS > 0 {
				fmt.Fprintf(&b, ", %.2f× %s", *w.RPS / *o.RPS, other)
			}
		}
		b.WriteString("\n")
		if gt := rep.find("ghostunnel"); w.P99Ms != nil && gt != nil && gt.P99Ms != nil && w.LatencyMode == "open" {
			fmt.Fprintf(&b, "p99 at %g req/s: warden %.3f ms, ghostunnel %.3f ms; ", w.LatencyRate, *w.P99Ms, *gt.P99Ms)
		}
		fmt.Fprintf(&b, "warden CPU %.1f µs/request, peak RSS %.0f MiB\n", w.CPUUsPerReq, w.RSSMiB)
	}
	if g := rep.find("grpc-warden"); g != nil && g.RPS != nil {
		fmt.Fprintf(&b, "warden gRPC unary: %s rps", kilo(*g.RPS))
		if d := rep.find("grpc-direct"); d != nil && d.RPS != nil && *d.RPS > 0 {
			fmt.Fprintf(&b, ", %.2f× grpc-direct", *g.RPS / *d.RPS)
		}
		if g.P99Ms != nil && g.LatencyMode == "open" {
			fmt.Fprintf(&b, "; p99 at %g req/s %.3f ms", g.LatencyRate, *g.P99Ms)
		}
		fmt.Fprintf(&b, "; CPU %.1f µs/call, peak RSS %.0f MiB\n", g.CPUUsPerReq, g.RSSMiB)
	}
	b.WriteString("keep-alive rps vs direct / vs ghostunnel (gRPC cases: vs grpc-direct):")
	for _, c := range rep.Cases {
		if c.RPS != nil {
			fmt.Fprintf(&b, " %s %s/%s", c.Name, ratio(c.VsDirect), ratio(c.VsGhostunnel))
		}
	}
	b.WriteString("\n")
	return b.String()
}

func (rep *report) markdown() string {
	var b strings.Builder
	b.WriteString("# warden benchmark\n\n")
	for _, m := range rep.Meta {
		fmt.Fprintf(&b, "- %s\n", m)
	}
	fmt.Fprintf(&b, "- Other activity on the machine during the runs: median %.2f CPUs; %d of %d runs above %.1f CPUs%s\n",
		rep.Foreign, len(rep.Disturbed), rep.Runs, disturbedCPU, listed(rep.Disturbed))
	b.WriteString("\nProduced by `bench/run.sh` (`make bench`). All traffic on loopback. Only ratios within one run " +
		"mean anything: the load generator, the app and the server under test share the machine.\n\n")

	b.WriteString("## Headline\n\n```\n")
	b.WriteString(rep.headline())
	b.WriteString("```\n\n")

	rate := ""
	for _, c := range rep.Cases {
		if c.LatencyMode == "open" {
			rate = fmt.Sprintf("at %g req/s", c.LatencyRate)
			break
		}
	}
	b.WriteString("## Results\n\n")
	fmt.Fprintf(&b, "Medians of %d rounds, (min–max) over the rounds.", rep.rounds())
	if slices.ContainsFunc(rep.Cases, func(c *caseSummary) bool { return isGRPC(c.Name) }) {
		b.WriteString(" The gRPC cases (grpc-*) count unary calls as requests, and their × direct is to grpc-direct.")
	}
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "| case | keep-alive rps | × direct | × ghostunnel | CPU µs/req (CPUs) | CPU s | p50 / p99 ms %s (p99 min–max) | new-conn rps | CPU µs/conn (CPUs) | peak RSS MiB | errors |\n", rate)
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range rep.Cases {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f | %s |\n",
			c.Name, rpsCell(c.RPS, c.RPSMin, c.RPSMax), ratio(c.VsDirect), ratio(c.VsGhostunnel),
			cpuCell(c.CPUUsPerReq, c.CPUUtil, 1), cpuSeconds(c.CPUS), latencyCell(c),
			rpsCell(nilIfZero(c.NewConnRPS), c.NewConnRPSMin, c.NewConnRPSMax),
			cpuCell(c.NewConnCPUUsPerReq, c.NewConnCPUUtil, 0), c.RSSMiB, errorsCell(c))
	}
	b.WriteString("\n")
	if rep.PNG != "" {
		fmt.Fprintf(&b, "![latency percentiles and throughput per case](%s)\n\n", rep.PNG)
	}

	b.WriteString("## Targets (warden's full path, case `warden`)\n\n| target | measured | status |\n|---|---|---|\n")
	for _, t := range rep.targets() {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.goal, orDash(t.measured), t.status())
	}

	b.WriteString("\n## Cases\n\n")
	for _, c := range rep.Cases {
		fmt.Fprintf(&b, "- **%s**: %s\n", c.Name, orDash(c.Description))
	}

	b.WriteString("\n## How to read it\n\n")
	b.WriteString("- **keep-alive rps**: closed loop, every connection sending its next request as soon as the answer " +
		"arrives: the maximum throughput.\n")
	b.WriteString("- **p50 / p99**: open loop at a fixed rate every case sustains, latency measured from each request's " +
		"intended send time, so queueing is not hidden.\n")
	b.WriteString("- **new-conn rps**: closed loop with a new TCP connection and a full TLS handshake per request " +
		"(the load generator keeps no session cache).\n")
	fmt.Fprintf(&b, "- **CPU µs/req** and **CPU s**: user+system CPU of the processes under test (from `/proc/PID/stat`) "+
		"during the %.0f s measured part of a keep-alive closed-loop run, per request and in total; **(CPUs)**: how many "+
		"CPUs they kept busy (about 1 with pinning: the server under test was the bottleneck). **CPU µs/conn**: the same "+
		"in the new-connection runs, per connection; below 1 CPU there, the load generator's own handshakes were the limit. ", rep.Duration)
	b.WriteString("The processes under test are the proxy; OPA and the proxy for opa-sidecar; the app itself " +
		"for direct and inproc-mtls. **peak RSS**: their summed `VmHWM` at the end of the run.\n")
	b.WriteString("- **errors**: failed requests and unexpected statuses in all runs of the case; open-loop requests " +
		"that could not be sent in time are counted as dropped, shown after a `+`.\n")
	b.WriteString("- **Other activity**: CPU the rest of the machine used during a run (all CPUs' busy time from " +
		"`/proc/stat`, steal included, minus the processes under test, the load generator and the app). `bench/run.sh` " +
		"measures a run again, at most twice, after waiting for the machine to be quiet, when it exceeds 0.1 CPUs; " +
		"the header counts those repeats and lists the runs kept although still disturbed.\n")
	return b.String()
}

// listed is ": a; b; c" (at most 10 shown), or "" for none.
func listed(items []string) string {
	if len(items) == 0 {
		return ""
	}
	if len(items) > 10 {
		return ": " + strings.Join(items[:10], "; ") + fmt.Sprintf("; and %d more", len(items)-10)
	}
	return ": " + strings.Join(items, "; ")
}

func (rep *report) rounds() int {
	n := 0
	for _, c := range rep.Cases {
		n = max(n, c.Rounds)
	}
	return n
}

// kilo formats a rate as 31.2k.
func kilo(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.1fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

func rpsCell(v *float64, lo, hi float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%s (%s–%s)", kilo(*v), kilo(lo), kilo(hi))
}

func latencyCell(c *caseSummary) string {
	if c.P50Ms == nil || c.P99Ms == nil {
		return "–"
	}
	return fmt.Sprintf("%.3f / %.3f (%.3f–%.3f)", *c.P50Ms, *c.P99Ms, c.P99MsMin, c.P99MsMax)
}

func errorsCell(c *caseSummary) string {
	if c.Dropped > 0 {
		return fmt.Sprintf("%d + %d dropped", c.Errors, c.Dropped)
	}
	return fmt.Sprint(c.Errors)
}

func cpuCell(perReq, util float64, digits int) string {
	if perReq == 0 {
		return "–"
	}
	return fmt.Sprintf("%.*f (%.2f)", digits, perReq, util)
}

func cpuSeconds(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f", *v)
}

func ratio(v float64) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

func nilIfZero(v float64) *float64 {
	if v == 0 {
		return nil
	}
	return &v
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}
