package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-sidecar/warden/bpf/bpftest"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// `warden init --dry-run` prints exactly the golden files of deploy/netinit,
// with no PATH at all: it needs neither root nor iptables.
func TestInitDryRunPrintsTheGoldenRules(t *testing.T) {
	tests := []struct {
		golden string
		env    []string
	}{
		{"default", nil},
		{"all-ports", []string{"WARDEN_REDIRECT_PORTS=*"}},
		{"several-ports", []string{"WARDEN_REDIRECT_PORTS=8080, 9090,3000"}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			cmd := exec.Command(wardenBin, "init", "--dry-run")
			cmd.Env = tt.env
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%v: %s", err, stderr.String())
			}
			want, err := os.ReadFile(filepath.Join("..", "..", "deploy", "netinit", "testdata", tt.golden+".golden"))
			if err != nil {
				t.Fatal(err)
			}
			if stdout.String() != string(want) || stderr.Len() != 0 {
				t.Errorf("stdout:\n%s\nstderr:\n%s\nwant stdout:\n%s", stdout.String(), stderr.String(), want)
			}
		})
	}
}

func TestInitRefusesBadInputInOneLine(t *testing.T) {
	tests := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--dry-run"}, []string{"WARDEN_REDIRECT_PORTS=8080,15000"}, `warden: config: WARDEN_REDIRECT_PORTS="8080,15000": expected ports other than warden's admin port 15000`},
		{[]string{"--dry-run"}, []string{"WARDEN_PROXY_UID=0"}, `warden: config: WARDEN_PROXY_UID="0": expected warden's own user ID`},
		{nil, []string{"WARDEN_INBOUND_ADDR=0.0.0.0:0"}, `warden: config: WARDEN_INBOUND_ADDR="0.0.0.0:0": expected a fixed port`},
		{[]string{"--dry-run", "now"}, nil, `warden: init: unexpected argument "now"; usage: warden init [--dry-run]`},
		{[]string{"--dryrun"}, nil, `warden: init: flag provided but not defined: -dryrun; usage: warden init [--dry-run]`},
	}
	for _, tt := range tests {
		cmd := exec.Command(wardenBin, append([]string{"init"}, tt.args...)...)
		cmd.Env = tt.env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("%v %v: exit %v, want status 1", tt.args, tt.env, err)
		}
		if got := strings.TrimSuffix(stderr.String(), "\n"); !strings.HasPrefix(got, tt.want) || strings.Contains(got, "\n") || stdout.Len() != 0 {
			t.Errorf("%v %v: stderr %q, stdout %q; want one line starting %q", tt.args, tt.env, got, stdout.String(), tt.want)
		}
	}
}

// The real command in a network namespace: the rules land, and it says so
// in one JSON line per family. Where connections go is proven in
// deploy/netinit's TestRedirectInNetns.
func TestInitInstallsTheRulesInNetns(t *testing.T) {
	bpftest.RequirePrivileged(t)
	testenv.NeedTool(t, "iptables-restore", "apt-get install iptables")
	ns := bpftest.NewNetns(t)
	for run := 1; run <= 2; run++ {
		cmd := ns.Command(wardenBin, "init")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "WARDEN_REDIRECT_PORTS=8080,9090"}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("run %d: %v: %s", run, err, stderr.String())
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if len(lines) != 2 || stdout.Len() != 0 {
			t.Fatalf("run %d: want one log line per family, got:\n%s", run, stderr.String())
		}
		for i, family := range []string{"IPv4", "IPv6"} {
			var l map[string]any
			if err := json.Unmarshal([]byte(lines[i]), &l); err != nil {
				t.Fatalf("run %d: %v: %s", run, err, lines[i])
			}
			// The second run replaces the two jumps the first one made.
			if l["event"] != "redirect_installed" || l["family"] != family || l["ports"] != "8080,9090" ||
				l["inbound_port"] != 15443.0 || l["replaced_jumps"] != float64(2*(run-1)) {
				t.Errorf("run %d: log line %s", run, lines[i])
			}
		}
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, err := ns.Command(save, "-t", "nat").Output()
		if err != nil {
			t.Fatalf("%s: %v", save, err)
		}
		for _, rule := range []string{
			"\n-A PREROUTING -p tcp -j WARDEN_INBOUND\n-A OUTPUT -p tcp -j WARDEN_OUTPUT\n",
			"\n-A WARDEN_INBOUND -p tcp -m tcp --dport 9090 -j REDIRECT --to-ports 15443\n",
		} {
			if strings.Count(string(out), rule) != 1 {
				t.Errorf("%s: want %q once in:\n%s", save, rule, out)
			}
		}
	}
}
