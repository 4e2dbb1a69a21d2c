package bpf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/warden-sidecar/warden/bpf/bpftest"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// The fast path tests run a child (this test binary) inside a cgroup the
// test creates: it serves an echo on the app port (and on a second port
// that is not an app port) and, on command, connects to them, so both ends
// of its connections are in the cgroup. The test itself stays outside.

const sockmapChildEnv = "WARDEN_BPF_TEST_SOCKMAP_PORTS"

// sockmapChild listens at the two ports ("app,other"), the app's on every
// address (dual-stack, as a Go app on ":port" does: a connection from
// 127.0.0.1 is accepted as an IPv6 socket with IPv4-mapped addresses), the
// other on 127.0.0.1, and answers commands on stdin, one line each:
//
//	xfer ADDR N  connect to ADDR (host:port), send N pattern bytes, read the echo, compare: "ok N" or "bad ..."
//	open         connect to the app port and keep the connection: "open"
//	close        close the kept connections: "closed"
func sockmapChild(ports string) int {
	var lns []net.Listener
	for i, p := range strings.Split(ports, ",") {
		host := "127.0.0.1"
		if i == 0 {
			host = ""
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, p))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		lns = append(lns, ln)
		go echoServe(ln)
	}
	app := strings.Split(ports, ",")[0]
	fmt.Println("ready")
	var kept []net.Conn
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch f[0] {
		case "xfer":
			n, _ := strconv.Atoi(f[2])
			if err := echoRoundTrip(f[1], n); err != nil {
				fmt.Println("bad", err)
				continue
			}
			fmt.Println("ok", n)
		case "open":
			c, err := net.Dial("tcp", "127.0.0.1:"+app)
			if err != nil {
				fmt.Println("bad", err)
				continue
			}
			kept = append(kept, c)
			fmt.Println("open")
		case "close":
			for _, c := range kept {
				c.Close()
			}
			kept = nil
			fmt.Println("closed")
		}
	}
	return 0
}

func echoServe(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			// Read and Write, not io.Copy: TCPConn.ReadFrom would splice(2),
			// and splice reads the TCP receive queue, not the queue the
			// fast path redirects to (see the package doc).
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					_ = c.(*net.TCPConn).CloseWrite()
					return
				}
			}
		}()
	}
}

// pattern is n bytes that differ from one transfer size to another.
func pattern(n int) []byte {
	r := rand.New(rand.NewPCG(uint64(n), 19))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// echoRoundTrip sends n bytes to addr's echo and checks that the same n
// bytes come back, within 30 seconds.
func echoRoundTrip(addr string, n int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	want := pattern(n)
	werr := make(chan error, 1)
	go func() {
		// Uneven writes, so that messages of several sizes are redirected.
		rest := want
		for i := 1; len(rest) > 0; i++ {
			k := min(len(rest), 1+i*7919%65536)
			if _, err := c.Write(rest[:k]); err != nil {
				werr <- err
				return
			}
			rest = rest[k:]
		}
		werr <- c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read after %d bytes: %w", len(got), err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		return fmt.Errorf("echo of %d bytes came back as %d bytes, first difference at %d", n, len(got), i)
	}
	return nil
}

type fastPathBed struct {
	cg         *bpftest.Cgroup
	f          *FastPath
	child      *bpftest.Child
	app, other int
}

// newFastPathBed loads the fast path for an app port, attaches it to a new
// cgroup and starts the child in it.
func newFastPathBed(t *testing.T) *fastPathBed {
	t.Helper()
	bpftest.RequirePrivileged(t)
	b := &fastPathBed{cg: bpftest.NewCgroup(t), app: testenv.FreePort(t), other: testenv.FreePort(t)}
	f, err := LoadFastPath(FastPathConfig{Ports: []uint16{uint16(b.app)}, MaxSockets: 1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	if err := f.AttachCgroup(b.cg.Path); err != nil {
		t.Fatal(err)
	}
	b.f = f
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), sockmapChildEnv+"="+strconv.Itoa(b.app)+","+strconv.Itoa(b.other))
	b.child = bpftest.StartChild(t, b.cg.Into(cmd))
	if l := b.child.Next(); l != "ready" {
		t.Fatalf("child: %q", l)
	}
	return b
}

func (b *fastPathBed) do(t *testing.T, cmd, want string) {
	t.Helper()
	b.child.Send(cmd)
	if got := b.child.Next(); got != want {
		t.Fatalf("%s: child says %q, want %q", cmd, got, want)
	}
}

func (b *fastPathBed) stats(t *testing.T) FastPathStats {
	t.Helper()
	s, err := b.f.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFastPathRedirectsAppConnectionsInTheCgroup(t *testing.T) {
	b := newFastPathBed(t)

	b.do(t, "open", "open")
	if s := b.stats(t); s.Sockets != 2 || s.SocketsAdded != 2 {
		t.Fatalf("one open connection to the app port: %+v, want both ends in the sockhash", s)
	}
	b.do(t, "close", "closed")
	testenv.Poll(t, "the closed sockets leave the sockhash", 10*time.Second, func() bool { return b.stats(t).Sockets == 0 })

	// IPv4 to a dual-stack listener (an AF_INET socket and an AF_INET6
	// one with IPv4-mapped addresses name the connection alike), and IPv6.
	var total uint64
	for _, host := range []string{"127.0.0.1", "::1"} {
		for _, n := range []int{0, 1, 1024, 64 << 10, 1 << 20} {
			b.do(t, fmt.Sprintf("xfer %s %d", net.JoinHostPort(host, strconv.Itoa(b.app)), n), fmt.Sprintf("ok %d", n))
			total += uint64(n)
		}
	}
	s := b.stats(t)
	// Each byte goes there and back: both sends are redirected.
	if s.BytesRedirected != 2*total {
		t.Errorf("bytes redirected: %d, want %d (every byte sent both ways): %+v", s.BytesRedirected, 2*total, s)
	}
	if s.MessagesRedirected == 0 || s.Fallbacks != 0 || s.AddFailures != 0 {
		t.Errorf("counters: %+v, want messages redirected and no fallback", s)
	}
}

func TestFastPathLeavesOtherConnectionsAlone(t *testing.T) {
	b := newFastPathBed(t)

	// Within the cgroup, to a port that is not the app's: not inserted.
	b.do(t, fmt.Sprintf("xfer 127.0.0.1:%d %d", b.other, 64<<10), fmt.Sprintf("ok %d", 64<<10))
	if s := b.stats(t); s != (FastPathStats{}) {
		t.Fatalf("a connection to another port touched the fast path: %+v", s)
	}

	// From outside the cgroup (this test) to the app port: the app's
	// accepted end is inserted, but its peer is not, so its sends are
	// fallbacks and go through TCP, intact.
	if err := echoRoundTrip("127.0.0.1:"+strconv.Itoa(b.app), 64<<10); err != nil {
		t.Fatal(err)
	}
	s := b.stats(t)
	if s.SocketsAdded != 1 || s.MessagesRedirected != 0 || s.BytesRedirected != 0 || s.Fallbacks == 0 {
		t.Fatalf("a client outside the cgroup: %+v, want only the app's end added and its sends fallen back", s)
	}
}

func TestFastPathCloseDetachesEverything(t *testing.T) {
	b := newFastPathBed(t)
	sockops, skMsg, err := b.f.ProgramIDs()
	if err != nil {
		t.Fatal(err)
	}
	if n := cgroupSockOps(t, b.cg); n != 1 {
		t.Fatalf("%d sock_ops programs on the cgroup after attach, want 1", n)
	}
	// A connection that stays open across Close.
	b.do(t, "open", "open")
	b.do(t, fmt.Sprintf("xfer 127.0.0.1:%d %d", b.app, 1<<20), fmt.Sprintf("ok %d", 1<<20))

	if err := b.f.Close(); err != nil {
		t.Fatal(err)
	}
	if n := cgroupSockOps(t, b.cg); n != 0 {
		t.Fatalf("%d sock_ops programs on the cgroup after Close, want 0", n)
	}
	// The kept connection still holds the programs; once it closes,
	// nothing is left.
	b.do(t, "close", "closed")
	for _, id := range []uint32{sockops, skMsg} {
		testenv.Poll(t, fmt.Sprintf("program %d freed", id), 10*time.Second, func() bool {
			p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
			if err == nil {
				p.Close()
			}
			return errors.Is(err, os.ErrNotExist)
		})
	}
	b.do(t, fmt.Sprintf("xfer 127.0.0.1:%d %d", b.app, 1<<20), fmt.Sprintf("ok %d", 1<<20))
	if _, err := b.f.Stats(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stats after Close: %v, want ErrClosed", err)
	}
}

// cgroupSockOps is how many sock_ops programs are attached to cg itself.
func cgroupSockOps(t *testing.T, cg *bpftest.Cgroup) int {
	t.Helper()
	r, err := link.QueryPrograms(link.QueryOptions{Target: cg.FD(), Attach: ebpf.AttachCGroupSockOps})
	if err != nil {
		t.Fatal(err)
	}
	return len(r.Programs)
}

func TestFastPathConfigIsChecked(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  FastPathConfig
		want string
	}{
		{"no port is refused", FastPathConfig{}, "bpf: fast path: no app port"},
		{"port 0 is refused", FastPathConfig{Ports: []uint16{8080, 0}}, "bpf: fast path: app port 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadFastPath(c.cfg)
			if err == nil || err.Error() != c.want {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}
