package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// target is one of issue 19's goals for warden's full path.
type target struct {
	goal     string
	measured string // the figures it was judged on
	ratio    float64
	want     float64
	atMost   bool // the ratio must be at most want (else at least)
	exact    bool // the ratio must be want
	ok       bool // judged; false when a case it needs was not run
}

func (t target) status() string {
	switch {
	case !t.ok:
		return "not measured"
	case t.exact && t.ratio == t.want:
		return "met"
	case t.exact:
		return "**missed**"
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

// wardenVariants are the cases judged against the targets: warden's full
// path with the fast path off and on.
var wardenVariants = []string{"warden", "warden-fastpath"}

// targets judges the full-path case name against issue 19's goals (they
// replace issue 8's: 1.5× ghostunnel stays as the stretch goal, p99 ≤
// ghostunnel's stays, the RSS bound tightens from 64 to 48 MiB; 2× nginx,
// 70% of in-process mTLS and 20 µs of CPU per request are gone).
func (rep *report) targets(name string) []target {
	w, gt := rep.find(name), rep.find("ghostunnel")
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
		rpsRatio("≥ 1.0× ghostunnel's throughput", gt, 1),
		rpsRatio("≥ 1.0× HAProxy's throughput", rep.find("haproxy"), 1),
		rpsRatio("≥ 1.0× nginx's throughput", rep.find("nginx"), 1),
		rpsRatio("≥ 1.0× Caddy's throughput", rep.find("caddy"), 1),
		rpsRatio("stretch: ≥ 1.5× ghostunnel's throughput", gt, 1.5),
	}
	cpu := target{goal: "own CPU per request ≤ ghostunnel's", want: 1, atMost: true}
	if w != nil && gt != nil && w.CPUUsPerReq > 0 && gt.CPUUsPerReq > 0 {
		cpu.ratio, cpu.ok = w.CPUUsPerReq/gt.CPUUsPerReq, true
		cpu.measured = fmt.Sprintf("%.1f vs %.1f µs at max throughput (%.2f×)", w.CPUUsPerReq, gt.CPUUsPerReq, cpu.ratio)
	}
	p99 := target{goal: "p99 at a fixed rate ≤ ghostunnel's", want: 1, atMost: true}
	if w != nil && gt != nil && w.P99Ms != nil && gt.P99Ms != nil && *gt.P99Ms > 0 && w.LatencyMode == "open" {
		p99.ratio, p99.ok = *w.P99Ms / *gt.P99Ms, true
		p99.measured = fmt.Sprintf("%.3f vs %.3f ms at %g req/s (%.2f×)", *w.P99Ms, *gt.P99Ms, w.LatencyRate, p99.ratio)
	}
	rss := target{goal: "peak RSS under load ≤ 48 MiB", want: 48, atMost: true}
	if w != nil && w.RSSMiB > 0 {
		rss.ratio, rss.ok = w.RSSMiB, true
		rss.measured = fmt.Sprintf("%.0f MiB", w.RSSMiB)
	}
	audit := target{goal: "audit trail intact: a decision log line for every request", want: 1, exact: true}
	if w != nil && w.DecisionLines != nil && w.RequestsSent > 0 {
		audit.ratio, audit.ok = float64(*w.DecisionLines)/float64(w.RequestsSent), true
		audit.measured = fmt.Sprintf("%d lines for %d requests in all runs", *w.DecisionLines, w.RequestsSent)
		if w.DecisionRunsShort > 0 {
			audit.measured += fmt.Sprintf(", %d runs short", w.DecisionRunsShort)
		}
	}
	return append(ts, cpu, p99, rss, audit)
}

// headline is the summary printed at the end of a run and at the top of the
// Markdown report.
func (rep *report) headline() string {
	var b strings.Builder
	for _, name := range wardenVariants {
		w := rep.find(name)
		if w == nil || w.RPS == nil {
			continue
		}
		what := "warden full path"
		others := []string{"direct", "ghostunnel", "nginx", "haproxy", "caddy", "opa-sidecar", "inproc-mtls"}
		if name == "warden-fastpath" {
			what, others = "warden full path, fast path on", append([]string{"warden"}, others...)
		}
		fmt.Fprintf(&b, "%s: %s rps keep-alive", what, kilo(*w.RPS))
		for _, other := range others {
			if o := rep.find(other); o != nil && o.RPS != nil && *o.RPS > 0 {
				fmt.Fprintf(&b, ", %.2f× %s", *w.RPS / *o.RPS, other)
			}
		}
		b.WriteString("\n")
		if gt := rep.find("ghostunnel"); w.P99Ms != nil && gt != nil && gt.P99Ms != nil && w.LatencyMode == "open" {
			fmt.Fprintf(&b, "p99 at %g req/s: %s %.3f ms, ghostunnel %.3f ms; ", w.LatencyRate, name, *w.P99Ms, *gt.P99Ms)
		}
		fmt.Fprintf(&b, "%s CPU %.1f µs/request, peak RSS %.0f MiB\n", name, w.CPUUsPerReq, w.RSSMiB)
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
	fmt.Fprintf(&b, "- Cases: %s\n", rep.casesLine())
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
		if c.Rounds == 0 {
			fmt.Fprintf(&b, "| %s |%s\n", caseCell(c), strings.Repeat(" – |", 10))
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f | %s |\n",
			caseCell(c), rpsCell(c.RPS, c.RPSMin, c.RPSMax), ratio(c.VsDirect), ratio(c.VsGhostunnel),
			cpuCell(c.CPUUsPerReq, c.CPUUtil, 1), cpuSeconds(c.CPUS), latencyCell(c),
			rpsCell(nilIfZero(c.NewConnRPS), c.NewConnRPSMin, c.NewConnRPSMax),
			cpuCell(c.NewConnCPUUsPerReq, c.NewConnCPUUtil, 0), c.RSSMiB, errorsCell(c))
	}
	b.WriteString("\n")
	if rep.PNG != "" {
		fmt.Fprintf(&b, "![latency percentiles and throughput per case](%s)\n\n", rep.PNG)
	}

	rep.perRequestSection(&b)
	rep.targetsSection(&b)
	rep.fastPathSection(&b)

	b.WriteString("\n## Cases\n\n")
	for _, c := range rep.Cases {
		fmt.Fprintf(&b, "- **%s**: %s\n", c.Name, orDash(c.Description))
	}
	if len(rep.Failed) > 0 {
		b.WriteString("\n## Cases that failed\n\n`bench/run.sh` dropped these cases and measured the others; " +
			"figures shown for them come from the runs before they failed.\n\n")
		for _, f := range rep.Failed {
			fmt.Fprintf(&b, "- **%s**: %s\n", f.name, f.text)
		}
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
	b.WriteString("- **CPU µs/req user / sys**: the same CPU split into user and system time. **System calls**: " +
		"`strace -c -f` attached to every thread of the processes under test during a separate closed-loop run after " +
		"the measured rounds (so its overhead touches no other figure), divided by that run's requests; the run opens " +
		"its keep-alive connections afresh, so their handshakes are included. **read** is read, readv, recvfrom and " +
		"recvmsg; **write** is write, writev, sendto, sendmsg and sendfile; **poll** is epoll_wait, epoll_pwait, " +
		"epoll_ctl and poll; **failed**: calls that returned an error (mostly EAGAIN from a read that found nothing). " +
		"**loopback packets/req**: packets the whole machine sent on `lo` per request during the keep-alive runs " +
		"(`/sys/class/net/lo/statistics/tx_packets`).\n")
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

// casesLine says that every case comes from this one run, and which failed.
func (rep *report) casesLine() string {
	var names []string
	for _, c := range rep.Cases {
		names = append(names, c.Name)
	}
	line := fmt.Sprintf("%d, all from this one run (%s)", len(names), strings.Join(names, ", "))
	if len(rep.Failed) == 0 {
		return line + "; every case measured"
	}
	var failed []string
	for _, f := range rep.Failed {
		failed = append(failed, f.name)
	}
	return line + fmt.Sprintf("; **failed: %s** (see Cases that failed)", strings.Join(failed, ", "))
}

func caseCell(c *caseSummary) string {
	if c.Failed != "" {
		return c.Name + " (**failed**)"
	}
	return c.Name
}

// perRequestSection is the table of CPU split, system calls and loopback
// packets per request, when the run recorded any of them.
func (rep *report) perRequestSection(b *strings.Builder) {
	if !slices.ContainsFunc(rep.Cases, func(c *caseSummary) bool {
		return c.Syscalls != nil || c.CPUUserUsPerReq+c.CPUSysUsPerReq > 0 || c.LoPacketsPerReq > 0
	}) {
		return
	}
	b.WriteString("## Per request: CPU, system calls, loopback packets\n\n")
	b.WriteString("| case | CPU µs/req user / sys | system calls/req | read | write | poll | futex | other | failed | most frequent (per req) | loopback packets/req |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
	for _, c := range rep.Cases {
		split := "–"
		if c.CPUUserUsPerReq+c.CPUSysUsPerReq > 0 {
			split = fmt.Sprintf("%.1f / %.1f", c.CPUUserUsPerReq, c.CPUSysUsPerReq)
		}
		sys := "– | – | – | – | – | – | – | –"
		if s := c.Syscalls; s != nil {
			sys = fmt.Sprintf("%.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s", s.Total, s.Read, s.Write, s.Poll, s.Futex, s.Other, s.Failed, strings.Join(s.Top, ", "))
			if s.LoadErrors > 0 {
				sys += fmt.Sprintf(" (%d failed requests)", s.LoadErrors)
			}
		}
		lo := "–"
		if c.LoPacketsPerReq > 0 {
			lo = fmt.Sprintf("%.2f", c.LoPacketsPerReq)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", c.Name, split, sys, lo)
	}
	b.WriteString("\n")
}

// targetsSection judges each warden variant of the run in its own column.
func (rep *report) targetsSection(b *strings.Builder) {
	var cols []string
	for _, name := range wardenVariants {
		if rep.find(name) != nil {
			cols = append(cols, name)
		}
	}
	if len(cols) == 0 {
		cols = wardenVariants[:1]
	}
	b.WriteString("## Targets (issue 19, warden's full path)\n\n| target |")
	for _, name := range cols {
		fmt.Fprintf(b, " %s |", name)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(cols)) + "\n")
	judged := make([][]target, len(cols))
	for i, name := range cols {
		judged[i] = rep.targets(name)
	}
	for row := range judged[0] {
		fmt.Fprintf(b, "| %s |", judged[0][row].goal)
		for i := range cols {
			t := judged[i][row]
			if t.ok {
				fmt.Fprintf(b, " %s: %s |", t.measured, t.status())
			} else {
				fmt.Fprintf(b, " %s |", t.status())
			}
		}
		b.WriteString("\n")
	}
}

// fastPathSection shows what each warden case's GET /fastpath said at the
// end of the run, field by field as it came (nested objects flattened to
// dotted keys).
func (rep *report) fastPathSection(b *strings.Builder) {
	var rows []string
	for _, c := range rep.Cases {
		if len(c.FastPath) == 0 {
			continue
		}
		var v any
		if err := json.Unmarshal(c.FastPath, &v); err != nil {
			rows = append(rows, fmt.Sprintf("| %s | not JSON: %v |", c.Name, err))
			continue
		}
		if s, ok := v.(string); ok {
			rows = append(rows, fmt.Sprintf("| %s | %s |", c.Name, s))
			continue
		}
		var fields []string
		flatten("", v, &fields)
		rows = append(rows, fmt.Sprintf("| %s | %s |", c.Name, strings.Join(fields, ", ")))
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\n## Fast path (`GET /fastpath` at the end of the run)\n\n| case | counters and state |\n|---|---|\n")
	b.WriteString(strings.Join(rows, "\n") + "\n")
}

func flatten(prefix string, v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			flatten(key, v[k], out)
		}
	default:
		b, _ := json.Marshal(v)
		*out = append(*out, fmt.Sprintf("`%s` %s", prefix, b))
	}
}
