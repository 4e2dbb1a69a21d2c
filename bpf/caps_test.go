//go:build (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm) && linux

package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warden-sidecar/warden/bpf/bpftest"
)

// capsChildEnv makes this test binary capsChild, TestDropCapabilities's
// child, for the attach mode it holds.
const capsChildEnv = "WARDEN_BPF_TEST_CAPS"

// loaderCapMask is loaderCaps as a /proc/<pid>/status mask.
var loaderCapMask = func() uint64 {
	var m uint64
	for _, c := range loaderCaps {
		m |= 1 << c
	}
	return m
}()

// TestDropCapabilities proves that warden can do without its capabilities
// once the program is attached: a child that holds only CAP_BPF,
// CAP_NET_ADMIN and CAP_PERFMON, permitted and not effective (warden's
// lot in a pod), raises them, loads, attaches to lo, drops them and shows
// that no thread holds any capability; then every map operation still
// works, the capabilities can't come back (a second Load is refused), and
// Close detaches the program. The child is this package's tests built
// without cgo: syscall.AllThreadsSyscall, which raising and dropping on
// every thread needs, refuses to run in a cgo binary, which -race makes
// this one.
func TestDropCapabilities(t *testing.T) {
	ns := bpftest.NewNetns(t)
	bin := bpftest.NoCgoTestBinary(t)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			cmd := ns.Command(bin, "-test.run=^$")
			cmd.Env = append(os.Environ(), capsChildEnv+"="+string(mode))
			child := bpftest.StartChild(t, cmd)
			if l := child.Next(); l != "dropped" {
				t.Fatalf("child: %q; stderr: %s", l, child.Stderr())
			}
			if !attached(t, ns, "lo", mode) {
				t.Fatal("no program attached after the capabilities were dropped")
			}
			child.Send("close")
			if l := child.Next(); l != "closed" {
				t.Fatalf("child: %q; stderr: %s", l, child.Stderr())
			}
			if attached(t, ns, "lo", mode) {
				t.Fatal("the program is still attached after Close without capabilities")
			}
			if err := child.Wait(); err != nil {
				t.Fatalf("child: %v: %s", err, child.Stderr())
			}
		})
	}
}

// capsChild is TestDropCapabilities's child: it prints "dropped" once the
// capabilities are gone and the maps proved usable, closes the Limiter on
// a line from stdin, prints "closed" and returns 0; on any failure it says
// why on stderr and returns 1.
func capsChild(mode AttachMode) int {
	if err := capsChildRun(mode); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func capsChildRun(mode AttachMode) error {
	// Warden's lot in a pod: the three, permitted only.
	hdr, data, err := capget()
	if err != nil {
		return err
	}
	data[0] = unix.CapUserData{Permitted: uint32(loaderCapMask)}
	data[1] = unix.CapUserData{Permitted: uint32(loaderCapMask >> 32)}
	if errno := capsetAllThreads(&hdr, &data); errno != 0 {
		return fmt.Errorf("narrow the capabilities: %w", errno)
	}
	if err := bpftest.ThreadCaps("self", func(eff, prm, inh uint64) error {
		if eff != 0 || prm != loaderCapMask {
			return fmt.Errorf("CapEff %x CapPrm %x, want 0 and %x", eff, prm, loaderCapMask)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("before the raise: %w", err)
	}
	if err := RaiseCapabilities(); err != nil {
		return err
	}
	cfg := Config{Port: inPort, MaxSources: 1024, MaxConns: 1024}
	l, err := Load(cfg)
	if err != nil {
		return err
	}
	if err := l.Attach("lo", mode); err != nil {
		return err
	}
	if err := l.DropCapabilities(); err != nil {
		return err
	}
	if err := bpftest.ThreadCaps("self", func(eff, prm, inh uint64) error {
		if eff|prm|inh != 0 {
			return fmt.Errorf("CapEff %x CapPrm %x CapInh %x, want none (pid %d)", eff, prm, inh, os.Getpid())
		}
		return nil
	}); err != nil {
		return fmt.Errorf("after the drop: %w", err)
	}

	// Every use of the maps, from goroutines on several threads.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			ip := netip.AddrFrom4([4]byte{10, 9, 8, byte(i + 1)})
			if err := l.Block(ip, time.Minute); err != nil {
				errs <- err
				return
			}
			if err := l.Unblock(ip); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := errors.Join(drain(errs)...); err != nil {
		return fmt.Errorf("block and unblock without capabilities: %w", err)
	}
	blocked := netip.MustParseAddr("2001:db8::7")
	if err := l.Block(blocked, time.Minute); err != nil {
		return err
	}
	if b, err := l.Blocked(); err != nil || len(b) != 1 || b[0].Addr != blocked {
		return fmt.Errorf("Blocked() = %v, %v; want %s", b, err, blocked)
	}
	cfg.ConnRate, cfg.PacketRate = 5, 50
	if err := l.SetLimits(cfg); err != nil {
		return err
	}
	if _, err := l.Counters(); err != nil {
		return err
	}
	if _, err := l.TopSources(10); err != nil {
		return err
	}

	// The drop holds: nothing to raise, nothing to load with.
	if err := RaiseCapabilities(); err != nil {
		return err
	}
	if l2, err := Load(cfg); !errors.Is(err, unix.EPERM) {
		if l2 != nil {
			l2.Close()
		}
		return fmt.Errorf("Load after the drop: %v, want EPERM", err)
	}

	fmt.Println("dropped")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	if err := l.Close(); err != nil {
		return err
	}
	fmt.Println("closed")
	return nil
}

func drain(c <-chan error) []error {
	var out []error
	for err := range c {
		out = append(out, err)
	}
	return out
}
