package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/warden-sidecar/warden/bench/loadgen/load"
)

func main() {
	err := run(os.Args[1:], os.Stdin, os.Stdout)
	switch {
	case errors.Is(err, errUndisturbed):
		os.Exit(1)
	case err != nil:
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(2)
	}
}

// errUndisturbed is -disturbed's answer for a run the rest of the machine
// left alone: exit status 1, no message.
var errUndisturbed = errors.New("run not disturbed")

// metas collects repeated -meta flags.
type metas []string

func (m *metas) String() string     { return strings.Join(*m, "; ") }
func (m *metas) Set(v string) error { *m = append(*m, v); return nil }

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	line := fs.Bool("line", false, "print the one raw line on stdin as text, and stop")
	disturbed := fs.Bool("disturbed", false, fmt.Sprintf("exit 0 if other activity on the machine kept more than %.1f CPUs busy during the raw line on stdin, else 1", disturbedCPU))
	in := fs.String("in", "", "raw runs, one JSON line each (`file`)")
	casesFile := fs.String("cases", "", "case descriptions, `file` of name<TAB>description lines, in report order")
	mdOut := fs.String("md", "", "Markdown report `file`")
	jsonOut := fs.String("json", "", "JSON report `file`")
	plotDir := fs.String("plot-dir", "", "`directory` for latency.dat and rps.dat (bench/plot.gp)")
	png := fs.String("png", "", "plot file `name` the Markdown links to")
	failedFile := fs.String("failed", "", "cases that failed, `file` of name<TAB>reason lines")
	syscallsFile := fs.String("syscalls", "", "runs under strace -c, `file` of JSON lines {case, strace (the table's file), result}")
	syscallLine := fs.String("syscall-line", "", "print the system calls per request of `case` from -syscalls as one line of text, and stop")
	fastpathFile := fs.String("fastpath", "", "GET /fastpath answers, `file` of name<TAB>answer-file lines")
	var meta metas
	fs.Var(&meta, "meta", "a 'Key: value' line for the report header (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	if *syscallLine != "" {
		sys, err := readSyscalls(*syscallsFile)
		if err != nil {
			return err
		}
		s, ok := sys[*syscallLine]
		if !ok {
			return fmt.Errorf("no system call count for case %s in %q", *syscallLine, *syscallsFile)
		}
		_, err = fmt.Fprintln(stdout, s.text(*syscallLine))
		return err
	}
	if *line || *disturbed {
		var r record
		if err := json.NewDecoder(stdin).Decode(&r); err != nil {
			return fmt.Errorf("raw line on stdin: %w", err)
		}
		if *disturbed {
			if r.foreignCPU() > disturbedCPU {
				return nil
			}
			return errUndisturbed
		}
		_, err := fmt.Fprintln(stdout, r.text())
		return err
	}
	if *in == "" {
		return errors.New("-in is required")
	}
	recs, err := readRecords(*in)
	if err != nil {
		return err
	}
	descs, err := readDescriptions(*casesFile)
	if err != nil {
		return err
	}
	failed, err := readDescriptions(*failedFile)
	if err != nil {
		return err
	}
	sys, err := readSyscalls(*syscallsFile)
	if err != nil {
		return err
	}
	fp, err := readFastPath(*fastpathFile)
	if err != nil {
		return err
	}
	rep := summarize(recs, descs)
	rep.addFailed(failed, descs)
	for _, c := range rep.Cases {
		c.Syscalls, c.FastPath = sys[c.Name], fp[c.Name]
	}
	rep.Meta = meta
	rep.PNG = *png

	if *jsonOut != "" {
		b, err := json.MarshalIndent(rep.Cases, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if *mdOut != "" {
		if err := os.WriteFile(*mdOut, []byte(rep.markdown()), 0o644); err != nil {
			return err
		}
	}
	if *plotDir != "" {
		if err := rep.writePlotData(*plotDir); err != nil {
			return err
		}
	}
	_, err = io.WriteString(stdout, rep.headline())
	return err
}

// record is one load generator run with the cost of the processes under test.
type record struct {
	Case       string      `json:"case"`
	Mode       string      `json:"mode"` // closed, open or newconn
	Round      int         `json:"round"`
	Rate       float64     `json:"rate"`
	Conns      int         `json:"conns"`
	HZ         int64       `json:"hz"`
	WindowS    float64     `json:"window_s"`
	CPUTicks   int64       `json:"cpu_ticks"`
	OtherTicks int64       `json:"other_ticks"`
	BusyTicks  int64       `json:"busy_ticks"`
	HWMKiB     int64       `json:"hwm_kib"`
	Result     load.Result `json:"result"`

	// CPUTicks split into user and system time (both 0 in runs recorded
	// before the split: unknown).
	CPUUserTicks int64 `json:"cpu_user_ticks"`
	CPUSysTicks  int64 `json:"cpu_sys_ticks"`
	// LoPackets is the packets the whole machine sent on loopback during
	// the window.
	LoPackets int64 `json:"lo_packets"`
	// DecisionLines is the lines the run added to the case's decision log
	// (null for a case without one), to compare with Result.Sent.
	DecisionLines *int64 `json:"decision_lines"`
}

func (r *record) perSecond(ticks int64) float64 {
	if r.HZ <= 0 || r.WindowS <= 0 {
		return 0
	}
	return float64(ticks) / float64(r.HZ) / r.WindowS
}

// cpuUtil is the processes' CPU time per second of wall time.
func (r *record) cpuUtil() float64 { return r.perSecond(r.CPUTicks) }

// foreignCPU is the CPUs the rest of the machine kept busy (other
// processes, interrupts not in a measured process, the hypervisor's steal),
// never below 0 (the counters are sampled at clock ticks).
func (r *record) foreignCPU() float64 {
	if r.BusyTicks == 0 {
		return 0
	}
	return max(0, r.perSecond(r.BusyTicks-r.CPUTicks-r.OtherTicks))
}

// cpuSeconds is the CPU time of the processes over the measured duration.
func (r *record) cpuSeconds() float64 { return r.cpuUtil() * r.Result.DurationS }

// cpuPerRequest is in microseconds.
func (r *record) cpuPerRequest() float64 {
	if r.Result.RPS <= 0 {
		return 0
	}
	return r.cpuUtil() / r.Result.RPS * 1e6
}

// userSysPerRequest is the user and system CPU of the processes per
// request, in microseconds.
func (r *record) userSysPerRequest() (user, sys float64) {
	if r.Result.RPS <= 0 {
		return 0, 0
	}
	return r.perSecond(r.CPUUserTicks) / r.Result.RPS * 1e6, r.perSecond(r.CPUSysTicks) / r.Result.RPS * 1e6
}

// loPacketsPerRequest is loopback packets per request over the window.
func (r *record) loPacketsPerRequest() float64 {
	if r.Result.RPS <= 0 || r.WindowS <= 0 {
		return 0
	}
	return float64(r.LoPackets) / (r.Result.RPS * r.WindowS)
}

func (r *record) text() string {
	user, sys := r.userSysPerRequest()
	return fmt.Sprintf("%-8s %-15s %8.0f rps  p50 %7.3f  p99 %7.3f ms  errors %d  dropped %d  cpu %5.1f us/req (%.2f CPUs)  rss %5.1f MiB  foreign %.2f CPUs  user/sys %.1f/%.1f us  lo %.1f pkt/req",
		r.Mode, r.Case, r.Result.RPS, r.Result.P50Ms, r.Result.P99Ms, r.Result.Errors, r.Result.Dropped,
		r.cpuPerRequest(), r.cpuUtil(), float64(r.HWMKiB)/1024, r.foreignCPU(), user, sys, r.loPacketsPerRequest())
}

func readRecords(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s: no runs", path)
	}
	return recs, nil
}

type description struct{ name, text string }

// readFastPath reads run.sh's fastpath file, case<TAB>file lines: each
// case's GET /fastpath answer, kept as it came when it is JSON, else as a
// JSON string saying what came (the report is not lost to a bad answer).
func readFastPath(path string) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	entries, err := readDescriptions(path)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		b, err := os.ReadFile(e.text)
		if err != nil {
			return nil, err
		}
		if !json.Valid(b) {
			b, _ = json.Marshal(fmt.Sprintf("not JSON: %.80q", b))
		}
		out[e.name] = json.RawMessage(b)
	}
	return out, nil
}

func readDescriptions(path string) ([]description, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ds []description
	for l := range strings.Lines(string(b)) {
		name, text, ok := strings.Cut(strings.TrimRight(l, "\n"), "\t")
		if ok {
			ds = append(ds, description{name, text})
		}
	}
	return ds, nil
}

// writePlotData writes latency.dat (latency percentiles) and rps.dat
// (keep-alive and new-connection throughput with min and max).
func (rep *report) writePlotData(dir string) error {
	var lat, rps strings.Builder
	lat.WriteString("# case p50 p90 p99 p99.9 (ms, medians)\n")
	rps.WriteString("# case rps min max newconn_rps min max\n")
	// Open-loop latency when there is any, else the closed loop's; never a mix.
	mode := "closed"
	for _, c := range rep.Cases {
		if c.LatencyMode == "open" {
			mode = "open"
		}
	}
	for _, c := range rep.Cases {
		if c.Rounds == 0 {
			continue // failed before its first run: nothing to draw
		}
		if c.P50Ms != nil && c.LatencyMode == mode {
			fmt.Fprintf(&lat, "%q %g %g %g %g\n", c.Name, *c.P50Ms, c.P90Ms, *c.P99Ms, c.P999Ms)
		}
		fmt.Fprintf(&rps, "%q %g %g %g %g %g %g\n", c.Name,
			deref(c.RPS), c.RPSMin, c.RPSMax, c.NewConnRPS, c.NewConnRPSMin, c.NewConnRPSMax)
	}
	if err := os.WriteFile(filepath.Join(dir, "latency.dat"), []byte(lat.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "rps.dat"), []byte(rps.String()), 0o644)
}

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}
