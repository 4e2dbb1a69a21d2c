package main

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
)

// caseSummary is one case of the JSON report. Medians over the rounds, with
// the minimum and maximum beside the figures that have them. rps, p50_ms,
// p99_ms and cpu_s are null when the mode they come from was not run.
type caseSummary struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Rounds      int    `json:"rounds"`
	// Failed says why bench/run.sh dropped the case (it did not start, did
	// not answer 200, or its process exited); its figures, if any, are
	// from the runs before.
	Failed string `json:"failed,omitempty"`

	// Closed loop, keep-alive: maximum throughput.
	RPS       *float64  `json:"rps"`
	RPSMin    float64   `json:"rps_min,omitempty"`
	RPSMax    float64   `json:"rps_max,omitempty"`
	RPSRounds []float64 `json:"rps_rounds,omitempty"`
	// Ratios of rps to the direct and ghostunnel cases' rps; for the gRPC
	// cases (grpc-*), vs_direct is to grpc-direct's, and there is no
	// ghostunnel ratio (it does not carry their calls).
	VsDirect     float64 `json:"vs_direct,omitempty"`
	VsGhostunnel float64 `json:"vs_ghostunnel,omitempty"`

	// Latency: from the open loop at LatencyRate requests/s when it ran
	// (measured from intended send times), else from the closed loop.
	LatencyMode string   `json:"latency_mode,omitempty"` // "open" or "closed"
	LatencyRate float64  `json:"latency_rate,omitempty"`
	P50Ms       *float64 `json:"p50_ms"`
	P90Ms       float64  `json:"p90_ms,omitempty"`
	P99Ms       *float64 `json:"p99_ms"`
	P99MsMin    float64  `json:"p99_ms_min,omitempty"`
	P99MsMax    float64  `json:"p99_ms_max,omitempty"`
	P999Ms      float64  `json:"p999_ms,omitempty"`
	// The closed loop's own percentiles (queueing at saturation included).
	ClosedP50Ms float64 `json:"closed_p50_ms,omitempty"`
	ClosedP99Ms float64 `json:"closed_p99_ms,omitempty"`

	// Closed loop, a new connection and TLS handshake per request.
	NewConnRPS    float64 `json:"newconn_rps,omitempty"`
	NewConnRPSMin float64 `json:"newconn_rps_min,omitempty"`
	NewConnRPSMax float64 `json:"newconn_rps_max,omitempty"`
	NewConnP99Ms  float64 `json:"newconn_p99_ms,omitempty"`
	// CPU of the processes under test per new connection (handshake and
	// request), and how many CPUs they kept busy: below 1 they were not
	// the bottleneck (the client-side handshakes on the load generator's
	// CPU were).
	NewConnCPUUsPerReq float64 `json:"newconn_cpu_us_per_req,omitempty"`
	NewConnCPUUtil     float64 `json:"newconn_cpu_util,omitempty"`

	// Failed requests in every run of the case (all modes and rounds), and
	// open-loop requests not sent by the end of their run.
	Errors  int64 `json:"errors"`
	Dropped int64 `json:"dropped"`

	// Cost of the processes under test (the proxy; with opa-sidecar the
	// proxy and OPA; the app itself for direct and inproc-mtls), from /proc.
	// cpu_s: CPU seconds during a closed-loop keep-alive run's measured
	// duration; cpu_us_per_req: the same per request; open_cpu_us_per_req:
	// per request at the open loop's fixed rate. rss_mib: peak VmHWM at the
	// end of the whole run.
	// cpu_util: CPUs kept busy in that run (1 is one core saturated).
	CPUS            *float64 `json:"cpu_s"`
	CPUUsPerReq     float64  `json:"cpu_us_per_req,omitempty"`
	CPUUtil         float64  `json:"cpu_util,omitempty"`
	OpenCPUUsPerReq float64  `json:"open_cpu_us_per_req,omitempty"`
	RSSMiB          float64  `json:"rss_mib"`
	// cpu_us_per_req split into user and system time (same runs, medians).
	CPUUserUsPerReq float64 `json:"cpu_user_us_per_req,omitempty"`
	CPUSysUsPerReq  float64 `json:"cpu_sys_us_per_req,omitempty"`
	// Packets sent on loopback per request during the keep-alive closed
	// loop (the whole machine's: the load generator's, the proxy's and the
	// app's; the fast path skips loopback between warden and the app).
	LoPacketsPerReq float64 `json:"lo_packets_per_req,omitempty"`

	// System calls per request of the processes under test, counted with
	// strace -c -f in a separate run after the measured rounds.
	Syscalls *syscallSummary `json:"syscalls,omitempty"`
	// FastPath is the case's GET /fastpath answer at the end of the run.
	FastPath json.RawMessage `json:"fastpath,omitempty"`

	// The audit trail, for a case with a decision log: the lines its runs
	// added and the requests they sent (warmup included), all runs
	// together; decision_runs_short counts the runs with fewer lines than
	// requests.
	DecisionLines     *int64 `json:"decision_lines,omitempty"`
	RequestsSent      int64  `json:"requests_sent,omitempty"`
	DecisionRunsShort int    `json:"decision_runs_short,omitempty"`

	// The most CPU the rest of the machine used during a run of the case
	// (other processes, steal): above about 0.1, that run was disturbed.
	ForeignCPUMax float64 `json:"foreign_cpu_max"`
}

type report struct {
	Cases []*caseSummary
	Meta  []string
	PNG   string
	// Duration is the measured seconds per run (the median of all runs).
	Duration float64
	// Foreign is the median over all runs of the CPU the rest of the
	// machine used; Disturbed lists the runs where it exceeded
	// disturbedCPU.
	Foreign   float64
	Disturbed []string
	Runs      int
	// Failed lists the cases bench/run.sh dropped, with why.
	Failed []description
}

// disturbedCPU is the foreign CPU above which a run is listed as disturbed.
const disturbedCPU = 0.1

func (rep *report) find(name string) *caseSummary {
	for _, c := range rep.Cases {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// summarize groups the runs by case and mode. Cases come in the order of
// descs, then any others in the order they were first run.
func summarize(recs []record, descs []description) *report {
	order := []string{}
	seen := map[string]bool{}
	byCase := map[string]map[string][]record{}
	for _, r := range recs {
		if byCase[r.Case] == nil {
			byCase[r.Case] = map[string][]record{}
		}
		byCase[r.Case][r.Mode] = append(byCase[r.Case][r.Mode], r)
	}
	text := map[string]string{}
	for _, d := range descs {
		text[d.name] = d.text
		if byCase[d.name] != nil && !seen[d.name] {
			order, seen[d.name] = append(order, d.name), true
		}
	}
	for _, r := range recs {
		if !seen[r.Case] {
			order, seen[r.Case] = append(order, r.Case), true
		}
	}

	rep := &report{}
	var durations []float64
	for _, r := range recs {
		durations = append(durations, r.Result.DurationS)
	}
	rep.Duration = median(durations)
	var foreign []float64
	for _, r := range recs {
		foreign = append(foreign, r.foreignCPU())
		if f := r.foreignCPU(); f > disturbedCPU {
			rep.Disturbed = append(rep.Disturbed, fmt.Sprintf("round %d %s %s: %.2f CPUs", r.Round, r.Mode, r.Case, f))
		}
	}
	rep.Foreign = median(foreign)
	rep.Runs = len(recs)
	for _, name := range order {
		rep.Cases = append(rep.Cases, summarizeCase(name, text[name], byCase[name]))
	}
	for _, c := range rep.Cases {
		if c.RPS == nil {
			continue
		}
		direct, gt := rep.find("direct"), rep.find("ghostunnel")
		if isGRPC(c.Name) {
			direct, gt = rep.find("grpc-direct"), nil
		}
		if direct != nil && direct.RPS != nil && *direct.RPS > 0 {
			c.VsDirect = round(*c.RPS / *direct.RPS, 3)
		}
		if gt != nil && gt.RPS != nil && *gt.RPS > 0 {
			c.VsGhostunnel = round(*c.RPS / *gt.RPS, 3)
		}
	}
	return rep
}

// addFailed marks the cases that failed, and adds those with no run at
// all, so that the report shows every case asked for: described cases in
// the order of descs, then the others as summarize ordered them.
func (rep *report) addFailed(failed, descs []description) {
	rep.Failed = failed
	reason := map[string]string{}
	for _, f := range failed {
		reason[f.name] = f.text
	}
	var cases []*caseSummary
	placed := map[string]bool{}
	add := func(c *caseSummary) {
		c.Failed = reason[c.Name]
		cases, placed[c.Name] = append(cases, c), true
	}
	for _, d := range descs {
		if c := rep.find(d.name); c != nil {
			add(c)
		} else if _, ok := reason[d.name]; ok && !placed[d.name] {
			add(&caseSummary{Name: d.name, Description: d.text})
		}
	}
	for _, c := range rep.Cases {
		if !placed[c.Name] {
			add(c)
		}
	}
	for _, f := range failed {
		if !placed[f.name] {
			add(&caseSummary{Name: f.name})
		}
	}
	rep.Cases = cases
}

// isGRPC reports a gRPC case of bench/run.sh, compared with grpc-direct.
func isGRPC(name string) bool { return strings.HasPrefix(name, "grpc-") }

func summarizeCase(name, desc string, modes map[string][]record) *caseSummary {
	c := &caseSummary{Name: name, Description: desc}
	var hwm int64
	for _, runs := range modes {
		c.Rounds = max(c.Rounds, len(runs))
		for _, r := range runs {
			c.Errors += r.Result.Errors
			c.Dropped += r.Result.Dropped
			hwm = max(hwm, r.HWMKiB)
			c.ForeignCPUMax = max(c.ForeignCPUMax, round(r.foreignCPU(), 2))
			if r.DecisionLines != nil {
				if c.DecisionLines == nil {
					c.DecisionLines = new(int64)
				}
				*c.DecisionLines += *r.DecisionLines
				c.RequestsSent += r.Result.Sent
				if *r.DecisionLines < r.Result.Sent {
					c.DecisionRunsShort++
				}
			}
		}
	}
	c.RSSMiB = round(float64(hwm)/1024, 1)

	if runs := modes["closed"]; len(runs) > 0 {
		rps := collect(runs, func(r record) float64 { return r.Result.RPS })
		c.RPS = ptr(round(median(rps), 0))
		c.RPSMin, c.RPSMax = round(slices.Min(rps), 0), round(slices.Max(rps), 0)
		c.RPSRounds = roundAll(rps, 0)
		c.ClosedP50Ms = round(median(collect(runs, func(r record) float64 { return r.Result.P50Ms })), 3)
		c.ClosedP99Ms = round(median(collect(runs, func(r record) float64 { return r.Result.P99Ms })), 3)
		c.CPUS = ptr(round(median(collect(runs, func(r record) float64 { return r.cpuSeconds() })), 2))
		c.CPUUsPerReq = round(median(collect(runs, func(r record) float64 { return r.cpuPerRequest() })), 1)
		c.CPUUtil = round(median(collect(runs, func(r record) float64 { return r.cpuUtil() })), 2)
		if runs[0].CPUUserTicks+runs[0].CPUSysTicks > 0 {
			c.CPUUserUsPerReq = round(median(collect(runs, func(r record) float64 { u, _ := r.userSysPerRequest(); return u })), 1)
			c.CPUSysUsPerReq = round(median(collect(runs, func(r record) float64 { _, s := r.userSysPerRequest(); return s })), 1)
		}
		c.LoPacketsPerReq = round(median(collect(runs, func(r record) float64 { return r.loPacketsPerRequest() })), 2)
	}
	latency, mode := modes["open"], "open"
	if len(latency) == 0 {
		latency, mode = modes["closed"], "closed"
	}
	if len(latency) > 0 {
		c.LatencyMode = mode
		c.LatencyRate = latency[0].Rate
		p99 := collect(latency, func(r record) float64 { return r.Result.P99Ms })
		c.P50Ms = ptr(round(median(collect(latency, func(r record) float64 { return r.Result.P50Ms })), 3))
		c.P90Ms = round(median(collect(latency, func(r record) float64 { return r.Result.P90Ms })), 3)
		c.P99Ms = ptr(round(median(p99), 3))
		c.P99MsMin, c.P99MsMax = round(slices.Min(p99), 3), round(slices.Max(p99), 3)
		c.P999Ms = round(median(collect(latency, func(r record) float64 { return r.Result.P999Ms })), 3)
	}
	if runs := modes["open"]; len(runs) > 0 {
		c.OpenCPUUsPerReq = round(median(collect(runs, func(r record) float64 { return r.cpuPerRequest() })), 1)
	}
	if runs := modes["newconn"]; len(runs) > 0 {
		rps := collect(runs, func(r record) float64 { return r.Result.RPS })
		c.NewConnRPS = round(median(rps), 0)
		c.NewConnRPSMin, c.NewConnRPSMax = round(slices.Min(rps), 0), round(slices.Max(rps), 0)
		c.NewConnP99Ms = round(median(collect(runs, func(r record) float64 { return r.Result.P99Ms })), 3)
		c.NewConnCPUUsPerReq = round(median(collect(runs, func(r record) float64 { return r.cpuPerRequest() })), 0)
		c.NewConnCPUUtil = round(median(collect(runs, func(r record) float64 { return r.cpuUtil() })), 2)
	}
	return c
}

func collect(runs []record, f func(record) float64) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = f(r)
	}
	return out
}

// median of an odd count is the middle value; of an even count, the mean of
// the two middle values.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func roundAll(v []float64, digits int) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = round(x, digits)
	}
	return out
}

func ptr(v float64) *float64 { return &v }
