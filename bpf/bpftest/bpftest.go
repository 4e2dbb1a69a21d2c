package bpftest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/warden-sidecar/warden/internal/testenv"
)

// RequirePrivileged skips t when the process is not root or lacks the ip
// command, or fails it when WARDEN_REQUIRE_PRIVILEGED_TESTS is set: a
// skipped kernel test must never pass for a run that is meant to exercise
// the kernel (internal/testenv's rule).
func RequirePrivileged(t testing.TB) {
	t.Helper()
	testenv.RequirePrivileged(t, "network namespaces, BPF and iptables need it")
	testenv.NeedTool(t, "ip", "iproute2")
}

// Netns is a named network namespace (ip netns) owned by one test.
type Netns struct {
	Name string
}

// NewNetns creates a namespace with a unique name and its loopback up, and
// deletes it when t ends.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	RequirePrivileged(t)
	n := &Netns{Name: "wd-" + randHex(5)}
	run(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.Name).Run() })
	n.IP(t, "link", "set", "lo", "up")
	return n
}

// IP runs `ip args...` inside the namespace and fails t on error.
func (n *Netns) IP(t testing.TB, args ...string) {
	t.Helper()
	run(t, append([]string{"ip", "netns", "exec", n.Name, "ip"}, args...)...)
}

// Command returns a command that runs inside the namespace.
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs fn on an OS thread that has entered the namespace. Sockets fn
// creates belong to the namespace for their whole life, so a listener
// opened in Do can be served from any goroutine afterwards.
func (n *Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	// A fresh goroutine, so that if the thread cannot return to its
	// namespace it is simply not unlocked, and Go retires it.
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + n.Name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back from %s: %w", n.Name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Link is a veth pair between two namespaces, addressed on both ends with
// an IPv4 /24 and an IPv6 /64.
type Link struct {
	A, B           *Netns
	IfA, IfB       string     // interface names, in A and in B
	A4, B4, A6, B6 netip.Addr // the ends' addresses
}

var subnet atomic.Uint32

// Veth joins a and b with a veth pair (names like "wd-xxxxa"/"wd-xxxxb"),
// addresses both ends (10.200.N.1 and .2, fd00:200:N::1 and ::2) and brings
// them up. The IPv6 addresses skip duplicate address detection (nodad), so
// they are usable at once.
func Veth(t testing.TB, a, b *Netns) *Link {
	t.Helper()
	id := randHex(4)
	l := &Link{A: a, B: b, IfA: "wd" + id + "a", IfB: "wd" + id + "b"}
	// Each namespace has its own routes, so only links that share a
	// namespace need distinct subnets: a counter gives them that.
	n := byte(subnet.Add(1))
	l.A4 = netip.AddrFrom4([4]byte{10, 200, n, 1})
	l.B4 = netip.AddrFrom4([4]byte{10, 200, n, 2})
	l.A6 = netip.MustParseAddr(fmt.Sprintf("fd00:200:%x::1", n))
	l.B6 = netip.MustParseAddr(fmt.Sprintf("fd00:200:%x::2", n))
	run(t, "ip", "link", "add", l.IfA, "netns", a.Name, "type", "veth", "peer", "name", l.IfB, "netns", b.Name)
	for _, end := range []struct {
		ns     *Netns
		ifname string
		v4, v6 netip.Addr
	}{{a, l.IfA, l.A4, l.A6}, {b, l.IfB, l.B4, l.B6}} {
		end.ns.IP(t, "addr", "add", end.v4.String()+"/24", "dev", end.ifname)
		end.ns.IP(t, "addr", "add", end.v6.String()+"/64", "dev", end.ifname, "nodad")
		end.ns.IP(t, "link", "set", end.ifname, "up")
	}
	return l
}

// AddAddrB gives B's end a further IPv4 address in the link's subnet (host
// part host), so that one client namespace can act as several sources.
func (l *Link) AddAddrB(t testing.TB, host byte) netip.Addr {
	t.Helper()
	b := l.B4.As4()
	b[3] = host
	addr := netip.AddrFrom4(b)
	l.B.IP(t, "addr", "add", addr.String()+"/24", "dev", l.IfB)
	return addr
}

func run(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}
