package main

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"github.com/warden-sidecar/warden/agent/ratelimit"
	"github.com/warden-sidecar/warden/bpf/bpftest"
)

// nsSidecar is warden running inside a server network namespace, in front
// of an app in the same namespace, with clients in another namespace joined
// by a veth pair: the shape of a pod and its peers.
type nsSidecar struct {
	*process
	srv, cli *bpftest.Netns
	link     *bpftest.Link
	tls      *tls.Config // client SVID from `warden dev issue`
	admin    string      // host:port, reachable from the client namespace
	app      *nsApp      // what reached the app
}

// nsApp records the paths of the requests that reached the app.
type nsApp struct {
	mu    sync.Mutex
	paths []string
}

func (a *nsApp) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.paths...)
}

const nsInboundPort = 15443

// startNsSidecar starts warden (inbound on every address of the server
// namespace, which has a default route over the veth like a pod's eth0)
// with env on top of the dev identity.
func startNsSidecar(t testing.TB, env ...string) *nsSidecar {
	t.Helper()
	return startNsSidecarAs(t, nil, env...)
}

// startNsSidecarAs is startNsSidecar with warden started by as, which gets
// the dev directory and returns the command (nil: warden as root).
func startNsSidecarAs(t testing.TB, as func(srv *bpftest.Netns, devDir string) *exec.Cmd, env ...string) *nsSidecar {
	t.Helper()
	srv, cli := bpftest.NewNetns(t), bpftest.NewNetns(t)
	link := bpftest.Veth(t, srv, cli)
	srv.IP(t, "route", "add", "default", "dev", link.IfA)
	srv.IP(t, "-6", "route", "add", "default", "dev", link.IfA)

	var appLn net.Listener
	if err := srv.Do(func() (err error) { appLn, err = net.Listen("tcp", "127.0.0.1:0"); return }); err != nil {
		t.Fatal(err)
	}
	seen := &nsApp{}
	app := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		seen.mu.Lock()
		seen.paths = append(seen.paths, string(ctx.Path()))
		seen.mu.Unlock()
		ctx.WriteString("app")
	}}
	go func() { _ = app.Serve(appLn) }()
	t.Cleanup(func() { _ = app.Shutdown() })

	devDir := t.TempDir()
	clientDir := filepath.Join(t.TempDir(), "client")
	if out, err := devIssueCmd(t, devDir, "spiffe://warden.local/ns/default/sa/client", clientDir); err != nil {
		t.Fatalf("dev issue: %v\n%s", err, out)
	}
	hc := curlLikeClient(t, clientDir)
	cfg := hc.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.ServerName = "localhost" // the dev SVID's DNS name

	admin := net.JoinHostPort(link.A4.String(), "15000")
	cmd := srv.Command(wardenBin)
	if as != nil {
		cmd = as(srv, devDir)
	}
	p := startWardenCmd(t, cmd, append([]string{
		"WARDEN_IDENTITY=dev", "WARDEN_DEV_DIR=" + devDir,
		fmt.Sprintf("WARDEN_INBOUND_ADDR=[::]:%d", nsInboundPort), "WARDEN_ADMIN_ADDR=" + admin,
		"WARDEN_UPSTREAM_ADDR=" + appLn.Addr().String(),
	}, env...)...)
	p.listenAddr(t, "inbound")
	return &nsSidecar{process: p, srv: srv, cli: cli, link: link, tls: cfg, admin: admin, app: seen}
}

// dial opens a TCP connection from the client namespace, from src, with a
// timeout shorter than TCP's first SYN retransmission (1 s): a connection
// that fails sent exactly one SYN.
func (s *nsSidecar) dial(src, dst netip.Addr, port int) (net.Conn, error) {
	var c net.Conn
	err := s.cli.Do(func() (err error) {
		d := net.Dialer{Timeout: 600 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err = d.Dial("tcp", netip.AddrPortFrom(dst, uint16(port)).String())
		return err
	})
	return c, err
}

// request does one mTLS GET through warden on a new connection from src.
func (s *nsSidecar) request(src, dst netip.Addr) error {
	c, err := s.dial(src, dst, nsInboundPort)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	tc := tls.Client(c, s.tls)
	if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	b, err := io.ReadAll(tc)
	if err != nil && len(b) == 0 {
		return err
	}
	if !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		return fmt.Errorf("response %q", b)
	}
	return nil
}

// concurrently runs n attempts at once and counts the ones that succeed.
func concurrently(n int, attempt func() error) (ok int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if attempt() == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ok
}

func (s *nsSidecar) rateLimitView(t testing.TB) ratelimit.Status {
	t.Helper()
	// http.Transport dials on goroutines of its own, outside the
	// namespace: the dial must enter it explicitly.
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
		return s.dial(s.link.B4, netip.MustParseAddrPort(addr).Addr(), int(netip.MustParseAddrPort(addr).Port()))
	}}
	resp, err := (&http.Client{Timeout: 3 * time.Second, Transport: tr}).Get("http://" + s.admin + "/ratelimit")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v ratelimit.Status
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// programAttached names the XDP or TC program on the server end ("" if none).
func (s *nsSidecar) programAttached(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", s.srv.Name, "-details", "link", "show", "dev", s.link.IfA).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show: %v\n%s", err, out)
	}
	for _, mark := range []string{"xdpgeneric", "xdpdrv", "xdpoffload", "xdp", "prog/xdp"} {
		if strings.Contains(string(out), mark) {
			return mark
		}
	}
	tc, _ := exec.Command("ip", "netns", "exec", s.srv.Name, "tc", "filter", "show", "dev", s.link.IfA, "ingress").CombinedOutput()
	if strings.Contains(string(tc), "bpf") {
		return "tc"
	}
	return ""
}

// TestBPFConnRateLimit runs the SYN-rate scenario against both limiters,
// with real connections across a veth: a source over its rate loses its
// excess connections, another source does not, other ports are untouched,
// and the counters say exactly what happened.
func TestBPFConnRateLimit(t *testing.T) {
	for _, mode := range []string{"ebpf", "userspace"} {
		t.Run(mode, func(t *testing.T) {
			s := startNsSidecar(t, "WARDEN_RATE_LIMIT_MODE="+mode,
				"WARDEN_CONN_RATE_LIMIT=1", "WARDEN_CONN_BURST=3")
			l := s.link
			flooder, other := l.B4, l.AddAddrB(t, 7)

			// 8 new connections at once from one source: the burst of 3
			// gets through, the other 5 are dropped (in the kernel: never
			// answered; in userspace: closed at accept).
			if ok := concurrently(8, func() error { return s.request(flooder, l.A4) }); ok != 3 {
				t.Fatalf("%d of 8 connections from one source at 1/s, burst 3 succeeded; want 3", ok)
			}
			if ok := concurrently(3, func() error { return s.request(other, l.A4) }); ok != 3 {
				t.Fatalf("another source: %d of 3 succeeded", ok)
			}
			if ok := concurrently(5, func() error { return s.request(l.B6, l.A6) }); ok != 3 {
				t.Fatalf("IPv6 source: %d of 5 succeeded, want 3", ok)
			}
			// Other ports are not limited: the flooder still reaches the
			// admin port at once, as often as it likes.
			if ok := concurrently(8, func() error {
				c, err := s.dial(flooder, l.A4, 15000)
				if err == nil {
					c.Close()
				}
				return err
			}); ok != 8 {
				t.Fatalf("admin port from the limited source: %d of 8 connected", ok)
			}

			v := s.rateLimitView(t)
			if v.Mode != mode || v.Port != nsInboundPort {
				t.Fatalf("/ratelimit mode %q port %d", v.Mode, v.Port)
			}
			if v.Counters.Dropped.ConnRate != 7 {
				t.Errorf("conn_rate drops %d, want 7 (5 IPv4 + 2 IPv6)", v.Counters.Dropped.ConnRate)
			}
			want := []ratelimit.SourceDrops{{IP: flooder.String(), Dropped: 5}, {IP: l.B6.String(), Dropped: 2}}
			if len(v.TopSources) != 2 || v.TopSources[0] != want[0] || v.TopSources[1] != want[1] {
				t.Errorf("top sources %+v, want %+v", v.TopSources, want)
			}
			if mode == "ebpf" {
				if v.Interface != l.IfA || !strings.HasPrefix(v.Attach, "xdp") {
					t.Errorf("attached to %q as %q, want %s (the default route's interface) with XDP", v.Interface, v.Attach, l.IfA)
				}
				if s.programAttached(t) == "" {
					t.Error("no XDP program on the interface while warden runs")
				}
			}
		})
	}
}

// TestBPFPacketRateLimit: a connection over its packet rate is throttled
// (its requests slow to the rate), while a new connection is served at once.
func TestBPFPacketRateLimit(t *testing.T) {
	s := startNsSidecar(t, "WARDEN_RATE_LIMIT_MODE=ebpf", "WARDEN_PACKET_RATE_LIMIT=40", "WARDEN_PACKET_BURST=40")
	l := s.link
	c, err := s.dial(l.B4, l.A4, nsInboundPort)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, s.tls)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	// Pipeline requests for 2 s; each costs the client at least one packet,
	// so at 40 packets/s (burst 40) at most 40+2*40 = 120 can get through.
	// Unlimited, this loop completes thousands.
	const window = 2 * time.Second
	done := 0
	end := time.Now().Add(window)
	buf := make([]byte, 4096)
	for time.Now().Before(end) && done < 5000 {
		_ = tc.SetDeadline(end)
		if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
			break
		}
		if _, err := tc.Read(buf); err != nil {
			break
		}
		done++
	}
	if done == 0 || done > 120 {
		t.Fatalf("%d requests in %s at 40 packets/s; want between 1 and 120", done, window)
	}
	v := s.rateLimitView(t)
	if v.Counters.Dropped.PacketRate == 0 {
		t.Fatalf("no packet_rate drops recorded: %+v", v.Counters)
	}
	start := time.Now()
	if err := s.request(l.B4, l.A4); err != nil {
		t.Fatalf("a new connection from the same source: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a new connection took %s: it shares the throttled one's bucket", d)
	}
	t.Logf("%d requests in %s; packet_rate drops %d", done, window, v.Counters.Dropped.PacketRate)
}

// TestBPFDetachesOnExit: after warden stops, by SIGTERM or by SIGKILL, no
// program is left on the interface.
func TestBPFDetachesOnExit(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			s := startNsSidecar(t, "WARDEN_RATE_LIMIT_MODE=ebpf")
			if s.programAttached(t) == "" {
				t.Fatal("no program attached while warden runs")
			}
			if err := s.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-s.done:
			case <-time.After(10 * time.Second):
				t.Fatal("warden did not exit")
			}
			deadline := time.Now().Add(5 * time.Second)
			for s.programAttached(t) != "" {
				if time.Now().After(deadline) {
					t.Fatalf("a program is still attached after %s: %s", sig, s.programAttached(t))
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// cpuTime is the user+system CPU time pid has used, from /proc.
func cpuTime(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start at ")".
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on Linux.
const clockTicks = 100

// BenchmarkBPFFlood floods warden's inbound port from one source at 10x its
// connection rate limit (bounded: floodRate new connections per second for
// floodTime) and reports the CPU time warden spent, with the XDP limiter
// dropping the excess SYNs in the kernel versus the userspace limiter
// accepting and closing them. Run it with -benchtime=1x (make bench-flood).
func BenchmarkBPFFlood(b *testing.B) {
	const (
		limit     = 100
		floodRate = 10 * limit
		floodTime = 5 * time.Second
	)
	for _, mode := range []string{"ebpf", "userspace"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				s := startNsSidecar(b, "WARDEN_RATE_LIMIT_MODE="+mode,
					fmt.Sprintf("WARDEN_CONN_RATE_LIMIT=%d", limit))
				pid := s.cmd.Process.Pid
				time.Sleep(200 * time.Millisecond) // let startup's CPU settle
				before := cpuTime(b, pid)

				var attempts, connected int
				var mu sync.Mutex
				var wg sync.WaitGroup
				tick := time.NewTicker(time.Second / floodRate)
				end := time.Now().Add(floodTime)
				for now := range tick.C {
					if now.After(end) {
						break
					}
					attempts++
					wg.Add(1)
					go func() {
						defer wg.Done()
						if c, err := s.dial(s.link.B4, s.link.A4, nsInboundPort); err == nil {
							c.Close()
							mu.Lock()
							connected++
							mu.Unlock()
						}
					}()
				}
				tick.Stop()
				wg.Wait()
				time.Sleep(200 * time.Millisecond)
				used := cpuTime(b, pid) - before
				v := s.rateLimitView(b)
				b.ReportMetric(float64(used.Milliseconds()), "warden-cpu-ms")
				b.ReportMetric(float64(attempts), "attempts")
				b.ReportMetric(float64(connected), "connected")
				b.ReportMetric(float64(v.Counters.Dropped.ConnRate), "dropped")
			}
		})
	}
}

// TestBPFFileCapabilities runs warden the way a pod does: as a non-root
// user (the injected WARDEN_PROXY_UID), from a binary that carries CAP_BPF,
// CAP_NET_ADMIN and CAP_PERFMON as permitted-only file capabilities
// (deploy/image). It
// must raise them itself and load the program; without the file
// capabilities, auto mode falls back to userspace and says why.
func TestBPFFileCapabilities(t *testing.T) {
	const uid = "1337"
	for _, tc := range []struct {
		name     string
		fileCaps bool
		mode     string
	}{
		{"with file capabilities", true, "ebpf"},
		{"without", false, "userspace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := unprivilegedCopy(t, tc.fileCaps)
			s := startNsSidecarAs(t, func(srv *bpftest.Netns, devDir string) *exec.Cmd {
				// The dev CA was created by root: hand it to warden's user.
				if out, err := exec.Command("chown", "-R", uid+":"+uid, devDir).CombinedOutput(); err != nil {
					t.Fatalf("chown: %v %s", err, out)
				}
				openPath(t, devDir)
				return srv.Command("setpriv", "--reuid="+uid, "--regid="+uid, "--clear-groups", "--inh-caps=-all", bin)
			}, "WARDEN_RATE_LIMIT_MODE=auto", "WARDEN_CONN_RATE_LIMIT=1000")
			v := s.rateLimitView(t)
			if v.Mode != tc.mode {
				t.Fatalf("mode %q, want %q (fallback reason: %q)", v.Mode, tc.mode, v.FallbackReason)
			}
			if tc.fileCaps && s.programAttached(t) == "" {
				t.Fatal("no program attached")
			}
			if !tc.fileCaps && !strings.Contains(v.FallbackReason, "CAP_BPF") {
				t.Fatalf("fallback reason %q does not name the missing capability", v.FallbackReason)
			}
			// Attached or not, warden keeps no capability afterwards.
			if err := bpftest.HeldCapabilities(strconv.Itoa(s.cmd.Process.Pid)); err != nil || v.CapabilitiesKept != "" {
				t.Fatalf("after startup: %v (capabilities_kept %q)", err, v.CapabilitiesKept)
			}
		})
	}
}

// unprivilegedCopy copies the warden binary where any user can run it and,
// with fileCaps, gives it cap_bpf,cap_net_admin,cap_perfmon+p as deploy/image does
// (setcap's xattr, written directly: VFS_CAP_REVISION_2, no effective bit).
func unprivilegedCopy(t *testing.T, fileCaps bool) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "warden-caps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(wardenBin)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "warden")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if fileCaps {
		var v [20]byte
		binary.LittleEndian.PutUint32(v[0:], 0x02000000)                                     // VFS_CAP_REVISION_2, not effective
		binary.LittleEndian.PutUint32(v[4:], 1<<unix.CAP_NET_ADMIN)                          // permitted, capabilities 0-31
		binary.LittleEndian.PutUint32(v[12:], 1<<(unix.CAP_BPF-32)|1<<(unix.CAP_PERFMON-32)) // permitted, capabilities 32-63
		if err := unix.Setxattr(bin, "security.capability", v[:], 0); err != nil {
			t.Fatalf("set file capabilities: %v", err)
		}
	}
	return bin
}

// openPath lets other users reach p: t.TempDir's directories are 0700.
func openPath(t *testing.T, p string) {
	t.Helper()
	for d := p; strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}
