package netinit_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/bpf/bpftest"
	"github.com/warden-sidecar/warden/deploy/netinit"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// The listeners of the pod namespace: each answers with its name, so a
// client sees where its connection landed.
var listeners = map[int]string{15443: "warden", 8080: "app", 15000: "admin", 9090: "other"}

const otherUID = 1000 // a user of the pod that is not warden's (1337)

// TestRedirectInNetns installs the real rules in a network namespace (the
// pod) and connects from another (a peer pod) and from inside, over IPv4
// and IPv6, to see where connections land.
func TestRedirectInNetns(t *testing.T) {
	requireTools(t, "iptables-restore", "iptables-save", "ip6tables-restore", "ip6tables-save", "iptables", "ip6tables", "bash")
	pod, peer := bpftest.NewNetns(t), bpftest.NewNetns(t)
	l := bpftest.Veth(t, pod, peer)
	for port, name := range listeners {
		listen(t, pod, port, name)
	}
	// Before any rule, every port answers as itself: what changes later is
	// the rules' doing.
	expect(t, peer, l.A4, map[int]string{8080: "app", 9090: "other", 15000: "admin", 15443: "warden"})

	// Another tool's rule that would accept the app's connections before
	// a jump appended after it: warden's jump goes first, and the rule stays.
	for _, cmd := range []string{"iptables", "ip6tables"} {
		if out, err := pod.Command(cmd, "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT").CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
	}

	c := apply(t, pod, nil)
	t.Run("from outside the pod the app port lands on warden, other ports on their own listeners", func(t *testing.T) {
		for _, addr := range []netip.Addr{l.A4, l.A6} {
			expect(t, peer, addr, map[int]string{8080: "warden", 9090: "other", 15000: "admin", 15443: "warden"})
		}
	})
	t.Run("inside the pod, the pod's address is redirected except for warden's uid, loopback never", func(t *testing.T) {
		for _, tt := range []struct {
			uid  int
			addr netip.Addr
			port int
			want string
		}{
			{otherUID, l.A4, 8080, "warden"},
			{otherUID, l.A6, 8080, "warden"},
			{c.ProxyUID, l.A4, 8080, "app"},
			{c.ProxyUID, l.A6, 8080, "app"},
			{otherUID, netip.MustParseAddr("127.0.0.1"), 8080, "app"},
			{otherUID, netip.IPv6Loopback(), 8080, "app"},
			{otherUID, l.A4, 9090, "other"},
			{otherUID, l.A4, 15000, "admin"},
		} {
			if got := dialAs(t, pod, tt.uid, tt.addr, tt.port); got != tt.want {
				t.Errorf("uid %d to %s: landed on %q, want %q", tt.uid, netip.AddrPortFrom(tt.addr, uint16(tt.port)), got, tt.want)
			}
		}
	})
	t.Run("iptables-save shows the dry-run rules once, and the other tool's rule", func(t *testing.T) {
		for _, f := range netinit.Families {
			saved := save(t, pod, f)
			if got, want := wardenLines(saved), wardenLines(netinit.Rules(c, f)); got != want {
				t.Errorf("%s: warden's rules in iptables-save:\n%s\nwant (as in the dry run):\n%s", f.Name, got, want)
			}
			if !strings.Contains(saved, "-A PREROUTING -p tcp -j WARDEN_INBOUND\n-A PREROUTING -p tcp -m tcp --dport 8080 -j ACCEPT\n") {
				t.Errorf("%s: PREROUTING should start with warden's jump, then the other tool's rule:\n%s", f.Name, saved)
			}
		}
	})
	t.Run("applying again leaves the same rules", func(t *testing.T) {
		before := save(t, pod, netinit.IPv4) + save(t, pod, netinit.IPv6)
		apply(t, pod, nil)
		if after := save(t, pod, netinit.IPv4) + save(t, pod, netinit.IPv6); after != before {
			t.Errorf("before:\n%s\nafter:\n%s", before, after)
		}
	})
	t.Run("with * every port but warden's own lands on warden", func(t *testing.T) {
		apply(t, pod, map[string]string{"WARDEN_REDIRECT_PORTS": "*"})
		for _, addr := range []netip.Addr{l.A4, l.A6} {
			// 7000 has no listener: without the redirect it is refused.
			expect(t, peer, addr, map[int]string{8080: "warden", 9090: "warden", 7000: "warden", 15000: "admin", 15443: "warden"})
		}
		if got := dialAs(t, pod, c.ProxyUID, l.A4, 9090); got != "other" {
			t.Errorf("warden's uid to the pod's port 9090 landed on %q", got)
		}
	})
	t.Run("new settings replace the old rules", func(t *testing.T) {
		apply(t, pod, map[string]string{"WARDEN_REDIRECT_PORTS": "9090"})
		for _, addr := range []netip.Addr{l.A4, l.A6} {
			expect(t, peer, addr, map[int]string{8080: "app", 9090: "warden", 15000: "admin"})
		}
	})
}

// requireTools is bpftest.RequirePrivileged for the commands this test runs.
func requireTools(t *testing.T, names ...string) {
	t.Helper()
	bpftest.RequirePrivileged(t)
	for _, n := range names {
		testenv.NeedTool(t, n, "apt-get install iptables")
	}
}

// listen serves name on every address of ns, IPv4 and IPv6, at port.
func listen(t *testing.T, ns *bpftest.Netns, port int, name string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", ":"+strconv.Itoa(port)); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name))
			c.Close()
		}
	}()
}

// apply installs the rules in ns for the environment env, as `warden init`
// does.
func apply(t *testing.T, ns *bpftest.Netns, env map[string]string) config.Init {
	t.Helper()
	c, err := config.InitFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	err = ns.Do(func() error {
		res, err := netinit.Apply(context.Background(), c)
		for _, r := range res {
			if r.Skipped != "" {
				return fmt.Errorf("%s skipped: %s", r.Family, r.Skipped)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// expect connects from ns to addr at each port and checks who answered.
func expect(t *testing.T, ns *bpftest.Netns, addr netip.Addr, want map[int]string) {
	t.Helper()
	for port, name := range want {
		ap := netip.AddrPortFrom(addr, uint16(port)).String()
		var got string
		err := ns.Do(func() error {
			c, err := net.DialTimeout("tcp", ap, 5*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(c)
			got = string(b)
			return err
		})
		if err != nil {
			got = err.Error()
		}
		if got != name {
			t.Errorf("%s: landed on %q, want %q", ap, got, name)
		}
	}
}

// dialAs connects from a process of ns running as uid (the owner match
// sees the socket's uid) and returns who answered. bash's /dev/tcp keeps
// the client a plain system binary that any uid may run.
func dialAs(t *testing.T, ns *bpftest.Netns, uid int, addr netip.Addr, port int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []byte
	err := ns.Do(func() (err error) {
		// Started on the thread that entered ns: the child is in ns too.
		cmd := exec.CommandContext(ctx, "bash", "-c", `exec 3<>"/dev/tcp/$0/$1" && cat <&3`, addr.String(), strconv.Itoa(port))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), NoSetGroups: true}}
		cmd.Dir = "/"
		out, err = cmd.CombinedOutput()
		return err
	})
	if err != nil {
		return fmt.Sprintf("%v: %s", err, out)
	}
	return string(out)
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// save returns iptables-save's nat table in ns, without its timestamps and
// counters.
func save(t *testing.T, ns *bpftest.Netns, f netinit.Family) string {
	t.Helper()
	out, err := ns.Command(f.Save, "-t", "nat").Output()
	if err != nil {
		t.Fatalf("%s: %v", f.Save, err)
	}
	var b strings.Builder
	for _, l := range strings.SplitAfter(string(out), "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(counters.ReplaceAllString(l, "[0:0]"))
		}
	}
	return b.String()
}

// wardenLines keeps the rules of warden's own chains.
func wardenLines(rules string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(rules, "\n") {
		if strings.HasPrefix(l, "-A WARDEN_") {
			b.WriteString(l)
		}
	}
	return b.String()
}
