package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/warden-sidecar/warden/bench/loadgen/load"
)

// syscallRun is one line of run.sh's syscalls file: the load generator's
// result of a run during which `strace -c -f` counted the system calls of
// the case's processes under test, and the file strace wrote its table to.
type syscallRun struct {
	Case   string      `json:"case"`
	Strace string      `json:"strace"`
	Result load.Result `json:"result"`
}

// syscallCount is one row of strace -c's table.
type syscallCount struct {
	Name   string
	Calls  int64
	Errors int64
}

// parseStrace reads the table `strace -c` writes:
//
//	% time     seconds  usecs/call     calls    errors syscall
//	------ ----------- ----------- --------- --------- ----------------
//	 54.67    0.002617        2617         1           execve
//	 11.97    0.000573          14        39        19 openat
//	------ ----------- ----------- --------- --------- ----------------
//	100.00    0.004787          32       148        26 total
//
// The errors column is blank when no call failed. The total row is checked
// against the sum of the others, not returned.
func parseStrace(r io.Reader) ([]syscallCount, error) {
	var rows []syscallCount
	var total *syscallCount
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "%") || strings.HasPrefix(f[0], "---") {
			continue
		}
		if _, err := strconv.ParseFloat(f[0], 64); err != nil || (len(f) != 5 && len(f) != 6) {
			return nil, fmt.Errorf("strace table line %d: unexpected %q", n, sc.Text())
		}
		row := syscallCount{Name: f[len(f)-1]}
		var err error
		if row.Calls, err = strconv.ParseInt(f[3], 10, 64); err != nil {
			return nil, fmt.Errorf("strace table line %d: calls %q: %w", n, f[3], err)
		}
		if len(f) == 6 {
			if row.Errors, err = strconv.ParseInt(f[4], 10, 64); err != nil {
				return nil, fmt.Errorf("strace table line %d: errors %q: %w", n, f[4], err)
			}
		}
		if row.Name == "total" {
			total = &row
			continue
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if total != nil {
		var calls int64
		for _, r := range rows {
			calls += r.Calls
		}
		if calls != total.Calls {
			return nil, fmt.Errorf("strace table: the rows add up to %d calls, the total row says %d", calls, total.Calls)
		}
	}
	return rows, nil
}

// syscallClass groups the calls that move a request's bytes, the waits for
// readiness, and futex (Go's scheduler parking and waking threads).
func syscallClass(name string) string {
	switch name {
	case "read", "readv", "recvfrom", "recvmsg", "recvmmsg", "pread64", "preadv", "preadv2":
		return "read"
	case "write", "writev", "sendto", "sendmsg", "sendmmsg", "pwrite64", "pwritev", "pwritev2", "sendfile":
		return "write"
	case "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "poll", "ppoll", "select", "pselect6":
		return "poll"
	case "futex":
		return "futex"
	}
	return "other"
}

// syscallSummary is a case's system calls per request, from its run under
// strace (all threads of the processes under test, the run's connection
// set-up included).
type syscallSummary struct {
	Requests int64   `json:"requests"`
	Total    float64 `json:"total"`
	Read     float64 `json:"read"`  // read, readv, recvfrom, recvmsg...
	Write    float64 `json:"write"` // write, writev, sendto, sendmsg...
	Poll     float64 `json:"poll"`  // epoll_wait, epoll_pwait, epoll_ctl, poll...
	Futex    float64 `json:"futex"`
	Other    float64 `json:"other"`
	// Failed is the calls that returned an error (EAGAIN from a read that
	// found nothing, mostly).
	Failed float64 `json:"failed"`
	// Top lists the most frequent calls, most first: "name per-request".
	Top []string `json:"top"`
	// LoadErrors is the load generator's failed requests during the run.
	LoadErrors int64 `json:"load_errors,omitempty"`
}

func summarizeSyscalls(rows []syscallCount, res load.Result) *syscallSummary {
	s := &syscallSummary{Requests: res.Requests, LoadErrors: res.Errors}
	if res.Requests <= 0 {
		return s
	}
	per := func(n int64) float64 { return round(float64(n)/float64(res.Requests), 2) }
	var total, failed int64
	by := map[string]int64{}
	for _, r := range rows {
		total += r.Calls
		failed += r.Errors
		by[syscallClass(r.Name)] += r.Calls
	}
	s.Total, s.Failed = per(total), per(failed)
	s.Read, s.Write, s.Poll, s.Futex, s.Other = per(by["read"]), per(by["write"]), per(by["poll"]), per(by["futex"]), per(by["other"])
	sorted := slices.SortedFunc(slices.Values(rows), func(a, b syscallCount) int {
		return cmp.Or(cmp.Compare(b.Calls, a.Calls), cmp.Compare(a.Name, b.Name))
	})
	for _, r := range sorted[:min(5, len(sorted))] {
		s.Top = append(s.Top, fmt.Sprintf("%s %.2f", r.Name, float64(r.Calls)/float64(res.Requests)))
	}
	return s
}

// readSyscalls reads run.sh's syscalls file and the strace tables it
// names: the summary per case.
func readSyscalls(path string) (map[string]*syscallSummary, error) {
	out := map[string]*syscallSummary{}
	if path == "" {
		return out, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	n := 0
	for l := range strings.Lines(string(b)) {
		n++
		if strings.TrimSpace(l) == "" {
			continue
		}
		var run syscallRun
		if err := json.Unmarshal([]byte(l), &run); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		f, err := os.Open(run.Strace)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		rows, err := parseStrace(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", run.Strace, err)
		}
		out[run.Case] = summarizeSyscalls(rows, run.Result)
	}
	return out, nil
}

func (s *syscallSummary) text(name string) string {
	return fmt.Sprintf("syscalls %-15s %6.2f /req: read %.2f  write %.2f  poll %.2f  futex %.2f  other %.2f  failed %.2f  (%d requests, %d errors; top: %s)",
		name, s.Total, s.Read, s.Write, s.Poll, s.Futex, s.Other, s.Failed, s.Requests, s.LoadErrors, strings.Join(s.Top, ", "))
}
