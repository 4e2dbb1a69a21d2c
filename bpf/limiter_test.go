package bpf

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/warden-sidecar/warden/bpf/bpftest"
	"golang.org/x/sys/unix"
)

// The privileged tests below send real traffic across a veth pair: the
// server end (A) in one namespace with the program attached to its
// ingress, clients (B) in another.

const helperEnv = "WARDEN_BPF_TEST_ATTACH"

func TestMain(m *testing.M) {
	// The child of TestDetachOnExit: attach, say so, wait to be killed.
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(attachAndWait(spec))
	}
	// The cgroup member of the fast path tests.
	if port := os.Getenv(sockmapChildEnv); port != "" {
		os.Exit(sockmapChild(port))
	}
	// The child of TestDropCapabilities.
	if mode := os.Getenv(capsChildEnv); mode != "" {
		os.Exit(capsChild(AttachMode(mode)))
	}
	os.Exit(m.Run())
}

var modes = []AttachMode{AttachXDP, AttachTC}

type testbed struct {
	srv, cli *bpftest.Netns
	link     *bpftest.Link
	l        *Limiter
}

// newTestbed loads a Limiter for cfg (Port inPort unless set) and attaches
// it to the server end of a new veth pair.
func newTestbed(t *testing.T, cfg Config, mode AttachMode) *testbed {
	t.Helper()
	srv, cli := bpftest.NewNetns(t), bpftest.NewNetns(t)
	tb := &testbed{srv: srv, cli: cli, link: bpftest.Veth(t, srv, cli), l: loadTest(t, cfg)}
	if err := srv.Do(func() error { return tb.l.Attach(tb.link.IfA, mode) }); err != nil {
		t.Fatal(err)
	}
	return tb
}

// serverAddr is the server's address of the family of src, port port.
func (tb *testbed) serverAddr(src netip.Addr, port uint16) netip.AddrPort {
	if src.Is4() {
		return netip.AddrPortFrom(tb.link.A4, port)
	}
	return netip.AddrPortFrom(tb.link.A6, port)
}

// extraClient gives the client end another address of src's family.
func (tb *testbed) extraClient(t *testing.T, src netip.Addr, host byte) netip.Addr {
	t.Helper()
	if src.Is4() {
		return tb.link.AddAddrB(t, host)
	}
	b := tb.link.B6.As16()
	b[15] = host
	a := netip.AddrFrom16(b)
	tb.cli.IP(t, "addr", "add", a.String()+"/64", "dev", tb.link.IfB, "nodad")
	return a
}

// serveEcho echoes every connection to [::]:port in ns until t ends.
func serveEcho(t *testing.T, ns *bpftest.Netns, port uint16) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(c, c) })
		}
	})
}

// dial connects from src in the client namespace.
func (tb *testbed) dial(src netip.Addr, dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := tb.cli.Do(func() (err error) {
		d := net.Dialer{Timeout: timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, err = d.Dial("tcp", dst.String())
		return err
	})
	return c, err
}

// mustDial dials, fails t on error and closes the connection when t ends.
func (tb *testbed) mustDial(t *testing.T, src netip.Addr, dst netip.AddrPort) net.Conn {
	t.Helper()
	c, err := tb.dial(src, dst, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", dst, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refused dials with a short timeout and fails t if the connection opens.
// The timeout is below TCP's first SYN retransmission (1s): exactly one
// SYN is sent.
func (tb *testbed) refused(t *testing.T, src netip.Addr, dst netip.AddrPort) {
	t.Helper()
	if err := tb.dialRefused(src, dst); err != nil {
		t.Fatal(err)
	}
}

func (tb *testbed) dialRefused(src netip.Addr, dst netip.AddrPort) error {
	c, err := tb.dial(src, dst, 300*time.Millisecond)
	if err == nil {
		c.Close()
		return fmt.Errorf("dial %s from %s succeeded, want its SYN dropped", dst, src)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return fmt.Errorf("dial %s from %s: %v, want a timeout", dst, src, err)
	}
	return nil
}

// echo sends n messages on c and checks each comes back.
func echo(t *testing.T, c net.Conn, n int) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("w"), 100)
	got := make([]byte, len(msg))
	for i := range n {
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
	}
}

func TestTrafficUnderLimitsPasses(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			tb := newTestbed(t, Config{ConnRate: 50, ConnBurst: 20, PacketRate: 5000, PacketBurst: 1000}, mode)
			serveEcho(t, tb.srv, inPort)
			wantKind := map[AttachMode]string{AttachXDP: KindXDPNative, AttachTC: KindTCX}[mode]
			if ifname, kind := tb.l.Attachment(); ifname != tb.link.IfA || kind != wantKind {
				t.Errorf("Attachment() = %q, %q; want %q, %q", ifname, kind, tb.link.IfA, wantKind)
			}
			for _, src := range []netip.Addr{tb.link.B4, tb.link.B6} {
				for range 5 {
					echo(t, tb.mustDial(t, src, tb.serverAddr(src, inPort)), 20)
				}
			}
			c := counters(t, tb.l)
			// Each connection: at least a SYN, an ACK and 20 segments.
			if c.Passed < 10*22 || c.DroppedBlocked+c.DroppedConnRate+c.DroppedPacketRate+c.Unparsed != 0 {
				t.Errorf("counters %+v, want over 220 passed and nothing else", c)
			}
			if top, err := tb.l.TopSources(10); err != nil || len(top) != 0 {
				t.Errorf("TopSources = %v, %v; want none", top, err)
			}
		})
	}
}

func TestTrafficConnRatePerSource(t *testing.T) {
	for _, mode := range modes {
		for _, family := range []string{"ipv4", "ipv6"} {
			t.Run(string(mode)+"/"+family, func(t *testing.T) {
				tb := newTestbed(t, Config{ConnRate: 1, ConnBurst: 3}, mode)
				serveEcho(t, tb.srv, inPort)
				a := tb.link.B4
				if family == "ipv6" {
					a = tb.link.B6
				}
				b := tb.extraClient(t, a, 77)
				dst := tb.serverAddr(a, inPort)

				for range 3 {
					echo(t, tb.mustDial(t, a, dst), 1)
				}
				// Concurrently, so that all are within the second after the
				// first SYN, before the bucket refills.
				var wg sync.WaitGroup
				for range 3 {
					wg.Go(func() {
						if err := tb.dialRefused(a, dst); err != nil {
							t.Error(err)
						}
					})
				}
				wg.Wait()
				for range 3 {
					echo(t, tb.mustDial(t, b, dst), 1)
				}

				c := counters(t, tb.l)
				if c.DroppedConnRate != 3 || c.DroppedBlocked != 0 || c.DroppedPacketRate != 0 {
					t.Errorf("counters %+v, want exactly 3 dropped for the connection rate", c)
				}
				top, err := tb.l.TopSources(10)
				if want := []SourceStat{{a, 3}}; err != nil || !slices.Equal(top, want) {
					t.Errorf("TopSources = %v, %v; want %v", top, err, want)
				}
			})
		}
	}
}

func TestTrafficPacketRateThrottlesAConnection(t *testing.T) {
	for _, mode := range modes {
		for _, family := range []string{"ipv4", "ipv6"} {
			t.Run(string(mode)+"/"+family, func(t *testing.T) {
				tb := newTestbed(t, Config{PacketRate: 20, PacketBurst: 8}, mode)
				serveEcho(t, tb.srv, inPort)
				a := tb.link.B4
				if family == "ipv6" {
					a = tb.link.B6
				}
				b := tb.extraClient(t, a, 78)
				dst := tb.serverAddr(a, inPort)

				// a floods: 40 one-byte segments as fast as it can.
				flood := tb.mustDial(t, a, dst)
				if err := flood.(*net.TCPConn).SetNoDelay(true); err != nil {
					t.Fatal(err)
				}
				for range 40 {
					if _, err := flood.Write([]byte{'x'}); err != nil {
						t.Fatal(err)
					}
				}
				// Meanwhile b, another source, talks at a normal pace.
				echo(t, tb.mustDial(t, b, dst), 2)

				// Throttled, not broken: TCP retransmits what was dropped.
				if err := flood.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(flood, make([]byte, 40)); err != nil {
					t.Fatalf("the throttled connection's echo: %v", err)
				}
				c := counters(t, tb.l)
				if c.DroppedPacketRate == 0 || c.DroppedConnRate != 0 || c.DroppedBlocked != 0 {
					t.Errorf("counters %+v, want packet-rate drops only", c)
				}
				// Every drop is the flooding source's.
				top, err := tb.l.TopSources(10)
				if err != nil || len(top) != 1 || top[0].Addr != a {
					t.Errorf("TopSources = %v, %v; want only %s", top, err, a)
				}
			})
		}
	}
}

func TestTrafficBlocklist(t *testing.T) {
	for _, mode := range modes {
		for _, family := range []string{"ipv4", "ipv6"} {
			t.Run(string(mode)+"/"+family, func(t *testing.T) {
				tb := newTestbed(t, Config{}, mode)
				serveEcho(t, tb.srv, inPort)
				a := tb.link.B4
				if family == "ipv6" {
					a = tb.link.B6
				}
				b := tb.extraClient(t, a, 79)
				dst := tb.serverAddr(a, inPort)

				const d = 800 * time.Millisecond
				before := time.Now()
				if err := tb.l.Block(a, d); err != nil {
					t.Fatal(err)
				}
				tb.refused(t, a, dst)
				echo(t, tb.mustDial(t, b, dst), 1)
				blocked, err := tb.l.Blocked()
				if err != nil || len(blocked) > 1 {
					t.Fatalf("Blocked() = %v, %v", blocked, err)
				}
				// The block may have expired if this machine is very slow.
				if len(blocked) == 1 && (blocked[0].Addr != a || blocked[0].Expires.Before(before.Add(d-time.Millisecond)) ||
					blocked[0].Expires.After(time.Now().Add(d))) {
					t.Fatalf("Blocked() = %v; want %s until about %v", blocked, a, before.Add(d))
				}
				if c := counters(t, tb.l); c.DroppedBlocked != 1 || c.DroppedConnRate+c.DroppedPacketRate != 0 {
					t.Errorf("counters %+v, want exactly 1 dropped as blocked", c)
				}

				// Expiry lifts the block by itself.
				deadline := time.Now().Add(5 * time.Second)
				for len(blocked) > 0 {
					if time.Now().After(deadline) {
						t.Fatalf("still blocked after %v: %v", time.Since(before), blocked)
					}
					time.Sleep(20 * time.Millisecond)
					if blocked, err = tb.l.Blocked(); err != nil {
						t.Fatal(err)
					}
				}
				echo(t, tb.mustDial(t, a, dst), 1)

				// So does Unblock. (From here on, the connection a just
				// opened has its packets dropped too: counts are inexact.)
				if err := tb.l.Block(a, time.Hour); err != nil {
					t.Fatal(err)
				}
				tb.refused(t, a, dst)
				if err := tb.l.Unblock(a); err != nil {
					t.Fatal(err)
				}
				echo(t, tb.mustDial(t, a, dst), 1)
			})
		}
	}
}

func TestTrafficOtherPortsUntouched(t *testing.T) {
	const otherPort = 9090
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			tb := newTestbed(t, Config{ConnRate: 1, ConnBurst: 1, PacketRate: 1, PacketBurst: 1}, mode)
			serveEcho(t, tb.srv, inPort)
			serveEcho(t, tb.srv, otherPort)
			for _, src := range []netip.Addr{tb.link.B4, tb.link.B6} {
				if err := tb.l.Block(src, time.Hour); err != nil {
					t.Fatal(err)
				}
				// Blocked, and far over both rates, on another port: untouched.
				for range 3 {
					echo(t, tb.mustDial(t, src, tb.serverAddr(src, otherPort)), 20)
				}
			}
			if c := counters(t, tb.l); c != (Counters{}) {
				t.Errorf("counters %+v after traffic to another port only, want zero", c)
			}
			// The program is there all the same.
			tb.refused(t, tb.link.B4, tb.serverAddr(tb.link.B4, inPort))
			if c := counters(t, tb.l); c != (Counters{DroppedBlocked: 1}) {
				t.Errorf("counters %+v, want one dropped as blocked", c)
			}
		})
	}
}

// TestTrafficCountersExact sends hand-made frames from the client end (a
// packet socket), so that what reaches the program is known to the packet,
// and compares the counters with it.
func TestTrafficCountersExact(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			tb := newTestbed(t, Config{ConnRate: 1, ConnBurst: 2}, mode)
			// Sources the client end does not hold, so that nothing
			// answers what the server sends back to them.
			host := func(a netip.Addr, h byte) netip.Addr {
				b := a.As16()
				b[15] = h
				if a.Is4() {
					return netip.AddrFrom16(b).Unmap()
				}
				return netip.AddrFrom16(b)
			}
			s1, s2, s3 := host(tb.link.B4, 201), host(tb.link.B6, 201), host(tb.link.B4, 202)
			if err := tb.l.Block(s3, time.Hour); err != nil {
				t.Fatal(err)
			}
			var srvMAC, cliMAC net.HardwareAddr
			if err := tb.srv.Do(func() error {
				iface, err := net.InterfaceByName(tb.link.IfA)
				if err == nil {
					srvMAC = iface.HardwareAddr
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if err := tb.cli.Do(func() error {
				iface, err := net.InterfaceByName(tb.link.IfB)
				if err == nil {
					cliMAC = iface.HardwareAddr
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
			mk := func(src netip.Addr, sport, dport uint16, flags byte, change func(*frame)) []byte {
				dst := tb.link.A4
				if src.Is6() {
					dst = tb.link.A6
				}
				f := frame{src: src, dst: dst, sport: sport, dport: dport, flags: flags, srcMAC: cliMAC, dstMAC: srvMAC}
				if change != nil {
					change(&f)
				}
				return f.bytes()
			}
			var frames [][]byte
			add := func(n int, src netip.Addr, dport uint16, flags byte, change func(*frame)) {
				for i := range n {
					frames = append(frames, mk(src, uint16(40000+len(frames)+i), dport, flags, change))
				}
			}
			add(4, s1, inPort, tcpSYN, nil)                                       // 2 pass, 2 over the SYN rate
			add(3, s2, inPort, tcpSYN, nil)                                       // 2 pass, 1 over
			add(2, s1, inPort, tcpACK, nil)                                       // pass: not SYNs
			add(3, s3, inPort, tcpSYN, nil)                                       // blocked
			add(5, s1, 9090, tcpSYN, nil)                                         // another port: uncounted
			add(2, s1, inPort, 0, func(f *frame) { f.proto = 17 })                // UDP: uncounted
			add(1, s1, inPort, tcpACK, func(f *frame) { f.fragOffset = 100 })     // unparsed
			add(1, s2, inPort, tcpACK, func(f *frame) { f.ext = []byte{extESP} }) // unparsed
			sendFrames(t, tb.cli, tb.link.IfB, frames)

			want := Counters{Passed: 6, DroppedConnRate: 3, DroppedBlocked: 3, Unparsed: 2}
			var got Counters
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if got = counters(t, tb.l); got == want || time.Now().After(deadline) {
					break
				}
			}
			if got != want {
				t.Errorf("counters %+v, want %+v", got, want)
			}
			top, err := tb.l.TopSources(2)
			if want := []SourceStat{{s3, 3}, {s1, 2}}; err != nil || !slices.Equal(top, want) {
				t.Errorf("TopSources(2) = %v, %v; want %v", top, err, want)
			}
		})
	}
}

// sendFrames writes raw Ethernet frames to ifname in ns.
func sendFrames(t *testing.T, ns *bpftest.Netns, ifname string, frames [][]byte) {
	t.Helper()
	err := ns.Do(func() error {
		iface, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		// Protocol 0: this socket sends and receives nothing.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: iface.Index, Halen: 6}
		for _, f := range frames {
			if err := unix.Sendto(fd, f, 0, to); err != nil {
				return fmt.Errorf("send frame: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// attached reports whether a program of mode is attached to ifname in ns,
// asking the kernel rather than the Limiter.
func attached(t *testing.T, ns *bpftest.Netns, ifname string, mode AttachMode) bool {
	t.Helper()
	if mode == AttachXDP {
		out, err := ns.Command("ip", "-j", "-d", "link", "show", "dev", ifname).Output()
		if err != nil {
			t.Fatalf("ip link show %s: %v", ifname, err)
		}
		var links []struct {
			XDP json.RawMessage `json:"xdp"`
		}
		if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
			t.Fatalf("ip link show %s: %v: %s", ifname, err, out)
		}
		return links[0].XDP != nil
	}
	var n int
	if err := ns.Do(func() error {
		iface, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: iface.Index, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		n = len(res.Programs)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func TestDetachOnClose(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			tb := newTestbed(t, Config{}, mode)
			serveEcho(t, tb.srv, inPort)
			dst := tb.serverAddr(tb.link.B4, inPort)
			if !attached(t, tb.srv, tb.link.IfA, mode) {
				t.Fatal("the kernel shows no program after Attach")
			}
			if err := tb.l.Attach(tb.link.IfA, mode); err == nil {
				t.Fatal("a second Attach succeeded")
			}
			if err := tb.l.Block(tb.link.B4, time.Hour); err != nil {
				t.Fatal(err)
			}
			tb.refused(t, tb.link.B4, dst)

			if err := tb.l.Close(); err != nil {
				t.Fatal(err)
			}
			if attached(t, tb.srv, tb.link.IfA, mode) {
				t.Fatal("a program is still attached after Close")
			}
			echo(t, tb.mustDial(t, tb.link.B4, dst), 1)
			if err := tb.l.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if ifname, kind := tb.l.Attachment(); ifname != "" || kind != "" {
				t.Errorf("Attachment() after Close = %q, %q", ifname, kind)
			}
			if _, err := tb.l.Counters(); !errors.Is(err, ErrClosed) {
				t.Errorf("Counters() after Close: %v, want ErrClosed", err)
			}
			if err := tb.l.Block(tb.link.B4, time.Hour); !errors.Is(err, ErrClosed) {
				t.Errorf("Block() after Close: %v, want ErrClosed", err)
			}
		})
	}
}

// TestDetachOnExit kills a process that attached the program (SIGKILL: no
// Close, no deferred call) and checks that the kernel detached it.
func TestDetachOnExit(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			srv, cli := bpftest.NewNetns(t), bpftest.NewNetns(t)
			lk := bpftest.Veth(t, srv, cli)
			cmd := srv.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+lk.IfA+","+string(mode))
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line := make(chan string, 1)
			go func() {
				s, _ := bufio.NewReader(stdout).ReadString('\n')
				line <- s
			}()
			select {
			case s := <-line:
				if s != "attached\n" {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("helper said %q; stderr: %s", s, stderr.String())
				}
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("helper did not attach in 30s; stderr: %s", stderr.String())
			}
			if !attached(t, srv, lk.IfA, mode) {
				t.Fatal("the kernel shows no program after the helper attached")
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			for deadline := time.Now().Add(5 * time.Second); attached(t, srv, lk.IfA, mode); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("a program is still attached 5s after its process was killed")
				}
			}
		})
	}
}

// attachAndWait is TestDetachOnExit's helper process.
func attachAndWait(spec string) int {
	ifname, mode, _ := strings.Cut(spec, ",")
	l, err := Load(Config{Port: inPort, MaxSources: 1024, MaxConns: 1024})
	if err == nil {
		err = l.Attach(ifname, AttachMode(mode))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("attached")
	_, _ = io.Copy(io.Discard, os.Stdin) // until killed
	return 0
}

func TestGenericXDPOnLoopback(t *testing.T) {
	ns := bpftest.NewNetns(t)
	l := loadTest(t, Config{})
	// lo has no native XDP: Attach falls back to generic.
	if err := ns.Do(func() error { return l.Attach("lo", AttachXDP) }); err != nil {
		t.Fatal(err)
	}
	if ifname, kind := l.Attachment(); ifname != "lo" || kind != KindXDPGeneric {
		t.Fatalf("Attachment() = %q, %q; want lo, %s", ifname, kind, KindXDPGeneric)
	}
	serveEcho(t, ns, inPort)
	tb := &testbed{cli: ns, l: l}
	local := netip.MustParseAddr("127.0.0.1")
	dst := netip.AddrPortFrom(local, inPort)
	// Blocked first: once a connection is open, its own packets (a delayed
	// ACK, say) would be dropped too and make the count inexact.
	if err := l.Block(local, time.Hour); err != nil {
		t.Fatal(err)
	}
	tb.refused(t, local, dst)
	if c := counters(t, l); c != (Counters{DroppedBlocked: 1}) {
		t.Errorf("counters %+v, want exactly one dropped as blocked", c)
	}
	if err := l.Unblock(local); err != nil {
		t.Fatal(err)
	}
	echo(t, tb.mustDial(t, local, dst), 3)
	if c := counters(t, l); c.Passed == 0 {
		t.Errorf("counters %+v, want passed packets", c)
	}
}

func TestAttachErrors(t *testing.T) {
	ns := bpftest.NewNetns(t)
	l := loadTest(t, Config{})
	err := ns.Do(func() error { return l.Attach("lo", "ebpf") })
	if err == nil || !strings.Contains(err.Error(), `unknown mode "ebpf"`) {
		t.Errorf("Attach with an unknown mode: %v", err)
	}
	if err := ns.Do(func() error { return l.Attach("nonexistent0", AttachXDP) }); err == nil {
		t.Error("Attach to a missing interface succeeded")
	}
	// An L3 device: no Ethernet header for the program to parse.
	ns.IP(t, "tuntap", "add", "dev", "wdtun0", "mode", "tun")
	err = ns.Do(func() error { return l.Attach("wdtun0", AttachXDP) })
	if err == nil || !strings.Contains(err.Error(), "not an Ethernet interface") {
		t.Errorf("Attach to a tun device: %v", err)
	}
	if ifname, kind := l.Attachment(); ifname != "" || kind != "" {
		t.Errorf("Attachment() after failed attaches = %q, %q", ifname, kind)
	}
}
