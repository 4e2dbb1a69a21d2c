package netinit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/warden-sidecar/warden/agent/config"
)

// Result is what Apply did for one family.
type Result struct {
	Family   string
	Replaced int    // jumps an earlier run left, deleted and inserted again
	Skipped  string // why the family was left alone; "" when its rules are in place
}

// Apply installs the rules for IPv4, then IPv6, in the network namespace of
// the calling thread, by running iptables-save and iptables-restore (and
// their ip6 twins) from PATH. IPv6 is skipped, with a Result saying so,
// only when the kernel has no IPv6 at all; every other failure is an error
// naming the command and what it printed, so that the pod does not start
// with a way around warden. On an error, the families before it are
// installed: running Apply again is safe.
func Apply(ctx context.Context, c config.Init) ([]Result, error) {
	return applier{run: run, hasIPv6: kernelHasIPv6}.apply(ctx, c)
}

// applier is Apply with its process boundary (the iptables commands) and
// the kernel probe replaceable, for tests that need no root.
type applier struct {
	run     func(ctx context.Context, stdin string, name string, args ...string) (stdout string, err error)
	hasIPv6 func() bool
}

func (a applier) apply(ctx context.Context, c config.Init) ([]Result, error) {
	var results []Result
	for _, f := range Families {
		if f == IPv6 && !a.hasIPv6() {
			results = append(results, Result{Family: f.Name, Skipped: "the kernel has no IPv6 (no /proc/net/if_inet6)"})
			continue
		}
		saved, err := a.run(ctx, "", f.Save, "-t", "nat")
		if err != nil {
			return results, fmt.Errorf("netinit: %w", err)
		}
		stale := staleJumps(saved)
		if _, err := a.run(ctx, render(c, f, stale), f.Restore, restoreArgs...); err != nil {
			return results, fmt.Errorf("netinit: %w", err)
		}
		results = append(results, Result{Family: f.Name, Replaced: len(stale)})
	}
	return results, nil
}

// staleJumps finds, in iptables-save output of the nat table, the jumps
// into warden's chains from PREROUTING and OUTPUT, whatever their matches,
// and returns them as -D lines.
func staleJumps(saved string) []string {
	var out []string
	for _, l := range strings.Split(saved, "\n") {
		l = strings.TrimSpace(l)
		for _, j := range []struct{ from, to string }{{"PREROUTING", ChainInbound}, {"OUTPUT", ChainOutput}} {
			if strings.HasPrefix(l, "-A "+j.from+" ") && strings.HasSuffix(l, " -j "+j.to) {
				out = append(out, "-D"+strings.TrimPrefix(l, "-A"))
			}
		}
	}
	return out
}

// kernelHasIPv6 is false when the kernel was built without IPv6 or booted
// with ipv6.disable=1: then no IPv6 packet can reach the app, and no
// ip6tables table exists to hold rules. IPv6 merely switched off by sysctl
// (disable_ipv6) still gets rules, in case it is switched on later.
func kernelHasIPv6() bool {
	_, err := os.Stat("/proc/net/if_inet6")
	return err == nil
}

// run executes one command with stdin and returns its stdout; its error
// names the command line and carries its stderr on one line.
func run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.String(), nil
	}
	cmdline := strings.Join(append([]string{name}, args...), " ")
	if errors.Is(err, exec.ErrNotFound) {
		return "", fmt.Errorf("%s: %w (the image needs the iptables package)", cmdline, err)
	}
	if msg := oneLine(stderr.String()); msg != "" {
		return "", fmt.Errorf("%s: %w: %s", cmdline, err, msg)
	}
	return "", fmt.Errorf("%s: %w", cmdline, err)
}

// oneLine joins the non-empty lines of s with "; ".
func oneLine(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}
