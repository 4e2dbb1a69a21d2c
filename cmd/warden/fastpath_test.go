package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/warden-sidecar/warden/bpf/bpftest"
	"github.com/warden-sidecar/warden/internal/cgroup2"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// The fast path end to end: warden and an app (this test binary, as a
// child) run in a network namespace and a cgroup the test creates; clients
// come from a second namespace over a veth pair, so the server namespace's
// own lo carries only what goes between warden and the app.

const fastPathAppEnv = "WARDEN_TEST_FASTPATH_APP"

// fastPathBody is the body the app sends for n bytes: different for each
// size, so that a response mixed up with another shows.
func fastPathBody(n int) []byte {
	r := rand.New(rand.NewPCG(uint64(n), 5))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// chunkedSizes are the pieces /chunked flushes one by one.
var chunkedSizes = []int{1, 517, 16 << 10, 3, 40 << 10, 100 << 10}

func chunkedBody() []byte {
	var b []byte
	for _, n := range chunkedSizes {
		b = append(b, fastPathBody(n)...)
	}
	return b
}

// fastPathApp serves, on addr, with net/http (reads with read(2), as most
// apps do):
//
//	/bytes/N   N bytes, with Content-Length
//	/chunked   chunkedBody, flushed in chunkedSizes pieces (chunked encoding)
//	/stream    32 KiB chunks until the write fails or 60 s pass
//	/streams   how many /stream handlers run now
//	/close     a head promising 1 MiB, 64 KiB of it, then close
//	/reset     the same, then a reset (SO_LINGER 0)
func fastPathApp(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var streams atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		w.Header().Set("X-App-Proto", r.Proto)
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(fastPathBody(n))
	})
	mux.HandleFunc("GET /chunked", func(w http.ResponseWriter, _ *http.Request) {
		for _, n := range chunkedSizes {
			_, _ = w.Write(fastPathBody(n))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		streams.Add(1)
		defer streams.Add(-1)
		chunk := fastPathBody(32 << 10)
		for end := time.Now().Add(60 * time.Second); time.Now().Before(end); {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			if r.Context().Err() != nil {
				return
			}
		}
	})
	mux.HandleFunc("GET /streams", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, streams.Load())
	})
	broken := func(reset bool) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			c, bw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 1<<20)
			_, _ = bw.Write(fastPathBody(1 << 20)[:64<<10])
			_ = bw.Flush()
			if reset {
				_ = c.(*net.TCPConn).SetLinger(0)
			}
			_ = c.Close()
		}
	}
	mux.HandleFunc("GET /close", broken(false))
	mux.HandleFunc("GET /reset", broken(true))
	// HTTP/1.1 and HTTP/2 with prior knowledge (h2c), for
	// WARDEN_UPSTREAM_PROTOCOL=h2c.
	srv := &http.Server{Handler: mux, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	_ = srv.Serve(ln)
	return 0
}

type fastPathBed struct {
	srv, cli *bpftest.Netns
	link     *bpftest.Link
	cg       *bpftest.Cgroup
	appAddr  string
	devDir   string
	tls      *tls.Config
	admin    string
}

// newFastPathBed creates the namespaces, the cgroup and the app in both.
func newFastPathBed(t *testing.T) *fastPathBed { return newFastPathBedApp(t, nil) }

// newFastPathBedApp is newFastPathBed with the app's cgroup chosen by
// appCgroup, given the bed's, when not nil.
func newFastPathBedApp(t *testing.T, appCgroup func(*fastPathBed) func(*exec.Cmd) *exec.Cmd) *fastPathBed {
	t.Helper()
	bpftest.RequirePrivileged(t)
	testenv.NeedTool(t, "nsenter", "util-linux")
	b := &fastPathBed{srv: bpftest.NewNetns(t), cli: bpftest.NewNetns(t), cg: bpftest.NewCgroup(t)}
	b.link = bpftest.Veth(t, b.srv, b.cli)
	b.appAddr = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	b.admin = net.JoinHostPort(b.link.A4.String(), "15000")

	app := b.inNamespace(os.Args[0], "-test.run=^$")
	if appCgroup != nil {
		app = appCgroup(b)(app)
	}
	app.Env = append(os.Environ(), fastPathAppEnv+"="+b.appAddr)
	testenv.StartProcess(t, "app", app)
	testenv.Poll(t, "the app listens", 20*time.Second, func() bool {
		return b.srv.Do(func() error {
			c, err := net.DialTimeout("tcp", b.appAddr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}) == nil
	})

	b.devDir = t.TempDir()
	clientDir := filepath.Join(t.TempDir(), "client")
	if out, err := devIssueCmd(t, b.devDir, "spiffe://warden.local/ns/default/sa/client", clientDir); err != nil {
		t.Fatalf("dev issue: %v\n%s", err, out)
	}
	b.tls = clientTLS(t, clientDir)
	b.tls.ServerName = "localhost"
	return b
}

// inNamespace is a command run in the server namespace and the cgroup.
// nsenter, not `ip netns exec`, which mounts a fresh /sys and with it
// hides the cgroup hierarchy.
func (b *fastPathBed) inNamespace(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + b.srv.Name, name}, args...)...)
	return b.cg.Into(cmd)
}

// startWarden starts warden in the namespace and cgroup, in front of the
// app, with env on top.
func (b *fastPathBed) startWarden(t *testing.T, env ...string) *process {
	t.Helper()
	p := startWardenCmd(t, b.inNamespace(wardenBin), append([]string{
		"WARDEN_IDENTITY=dev", "WARDEN_DEV_DIR=" + b.devDir,
		fmt.Sprintf("WARDEN_INBOUND_ADDR=%s:%d", b.link.A4, nsInboundPort), "WARDEN_ADMIN_ADDR=" + b.admin,
		"WARDEN_UPSTREAM_ADDR=" + b.appAddr, "WARDEN_FAST_PATH_CGROUP=" + b.cg.Path,
	}, env...)...)
	p.listenAddr(t, "inbound")
	return p
}

// client is an HTTP client in the client namespace; with keep-alive, so
// that warden's upstream connections are reused as in production.
func (b *fastPathBed) client(timeout time.Duration) *http.Client {
	tr := &http.Transport{TLSClientConfig: b.tls, DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		var c net.Conn
		err := b.cli.Do(func() (err error) {
			c, err = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	}}
	return &http.Client{Timeout: timeout, Transport: tr}
}

func (b *fastPathBed) url(path string) string {
	return fmt.Sprintf("https://%s:%d%s", b.link.A4, nsInboundPort, path)
}

// response is what a client sees of a response, but the headers that
// differ from one run to another (Date, X-Request-Id).
type response struct {
	status   int
	appProto string // what the app was spoken to in (/bytes only)
	chunked  bool
	length   int64
	body     []byte
}

func fpFetch(c *http.Client, url string) (response, error) {
	resp, err := c.Get(url)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, appProto: resp.Header.Get("X-App-Proto"), length: resp.ContentLength, body: body,
		chunked: len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"}
	return r, err
}

type fastPathView struct {
	Mode               string `json:"mode"`
	Active             bool   `json:"active"`
	Reason             string `json:"reason"`
	Cgroup             string `json:"cgroup"`
	Sockets            uint64 `json:"sockets"`
	MessagesRedirected uint64 `json:"messages_redirected"`
	BytesRedirected    uint64 `json:"bytes_redirected"`
	Fallbacks          uint64 `json:"fallbacks"`
}

// adminGet reads an admin endpoint from the client namespace.
func (b *fastPathBed) adminGet(t *testing.T, path string) []byte {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		var c net.Conn
		err := b.cli.Do(func() (err error) { c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr); return err })
		return c, err
	}}
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: tr}).Get("http://" + b.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return body
}

// view reads /fastpath from the client namespace.
func (b *fastPathBed) view(t *testing.T) fastPathView {
	t.Helper()
	var v fastPathView
	if err := json.Unmarshal(b.adminGet(t, "/fastpath"), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// loBytes is what the server namespace's lo carried so far.
func (b *fastPathBed) loBytes(t *testing.T) uint64 {
	t.Helper()
	out, err := exec.Command("ip", "-n", b.srv.Name, "-s", "-j", "link", "show", "lo").Output()
	if err != nil {
		t.Fatalf("ip link show lo: %v", err)
	}
	var v []struct {
		Stats64 struct {
			TX struct {
				Bytes uint64 `json:"bytes"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &v); err != nil || len(v) != 1 {
		t.Fatalf("ip -j link show lo: %v: %s", err, out)
	}
	return v[0].Stats64.TX.Bytes
}

// sockOpsOnCgroup is how many sock_ops programs are attached to the cgroup.
func (b *fastPathBed) sockOpsOnCgroup(t *testing.T) int {
	t.Helper()
	r, err := link.QueryPrograms(link.QueryOptions{Target: b.cg.FD(), Attach: ebpf.AttachCGroupSockOps})
	if err != nil {
		t.Fatal(err)
	}
	return len(r.Programs)
}

// stop signals warden and waits for it to exit.
func fpStop(t *testing.T, p *process, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("warden did not exit after %s", sig)
	}
}

var fastPathCases = []struct{ path string }{
	{"/bytes/0"}, {"/bytes/1024"}, {"/bytes/65536"}, {"/bytes/1048576"}, {"/chunked"},
}

func wantBody(path string) []byte {
	if path == "/chunked" {
		return chunkedBody()
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(path, "/bytes/"))
	return fastPathBody(n)
}

// TestFastPathOnAndOffAnswerAlike: the same requests through warden with
// the fast path off and on get byte-identical responses; on, the counters
// show the bytes went by the sockhash and the namespace's lo hardly saw
// them.
func TestFastPathOnAndOffAnswerAlike(t *testing.T) {
	b := newFastPathBed(t)
	const rounds = 3
	var total uint64
	for _, c := range fastPathCases {
		total += uint64(len(wantBody(c.path)))
	}
	got := map[string][]response{}
	lo := map[string]uint64{}
	for _, mode := range []string{"off", "sockmap"} {
		p := b.startWarden(t, "WARDEN_FAST_PATH="+mode)
		if v := b.view(t); v.Active != (mode == "sockmap") || v.Mode != mode {
			t.Fatalf("%s: /fastpath %+v", mode, v)
		}
		hc := b.client(20 * time.Second)
		before := b.loBytes(t)
		for range rounds {
			for _, c := range fastPathCases {
				r, err := fpFetch(hc, b.url(c.path))
				if err != nil {
					t.Fatalf("%s %s: %v", mode, c.path, err)
				}
				if r.status != 200 || !bytes.Equal(r.body, wantBody(c.path)) {
					t.Fatalf("%s %s: status %d, %d bytes, want 200 and the app's %d bytes", mode, c.path, r.status, len(r.body), len(wantBody(c.path)))
				}
				r.body = nil // compared above; the rest is compared across modes
				got[mode] = append(got[mode], r)
			}
		}
		lo[mode] = b.loBytes(t) - before
		if mode == "sockmap" {
			v := b.view(t)
			t.Logf("sockmap: %+v; lo carried %d bytes (off: %d) for %d bytes of bodies", v, lo[mode], lo["off"], rounds*total)
			if v.BytesRedirected < rounds*total || v.MessagesRedirected == 0 {
				t.Errorf("/fastpath: %d bytes redirected, want at least the %d bytes of the bodies", v.BytesRedirected, rounds*total)
			}
			if v.Sockets == 0 || v.Sockets%2 != 0 {
				t.Errorf("/fastpath: %d sockets, want both ends of the pooled connections", v.Sockets)
			}
			if v.Fallbacks != 0 {
				t.Errorf("/fastpath: %d fallbacks, want none (every connection was made after the attach)", v.Fallbacks)
			}
			// /metrics reads the same counters.
			metrics := string(b.adminGet(t, "/metrics"))
			for name, want := range map[string]uint64{
				"warden_fastpath_bytes_redirected_total": v.BytesRedirected, "warden_fastpath_messages_redirected_total": v.MessagesRedirected,
				"warden_fastpath_fallbacks_total": v.Fallbacks, "warden_fastpath_sockets": v.Sockets,
			} {
				line := name + " " + strconv.FormatFloat(float64(want), 'g', -1, 64) + "\n"
				if !strings.Contains(metrics, "\n"+line) {
					t.Errorf("/metrics has no %q", line)
				}
			}
		}
		hc.CloseIdleConnections()
		fpStop(t, p, syscall.SIGTERM)
	}
	if fmt.Sprint(got["off"]) != fmt.Sprint(got["sockmap"]) {
		t.Errorf("responses differ:\noff:     %v\nsockmap: %v", got["off"], got["sockmap"])
	}
	if lo["off"] < rounds*total {
		t.Errorf("with the fast path off lo carried %d bytes, fewer than the %d of the bodies: not a loopback measurement", lo["off"], rounds*total)
	}
	// Handshakes, ACKs and FINs only: well under a tenth of off's.
	if lo["sockmap"] > lo["off"]/10 {
		t.Errorf("with the fast path on lo carried %d bytes, against %d off: the bytes did not skip it", lo["sockmap"], lo["off"])
	}
	if n := b.sockOpsOnCgroup(t); n != 0 {
		t.Errorf("%d sock_ops programs left on the cgroup after warden exited", n)
	}
}

// TestFastPathH2CUpstream: HTTP/2 to the app (what gRPC apps speak) goes
// by the fast path byte for byte too.
func TestFastPathH2CUpstream(t *testing.T) {
	b := newFastPathBed(t)
	b.startWarden(t, "WARDEN_FAST_PATH=sockmap", "WARDEN_UPSTREAM_PROTOCOL=h2c")
	hc := b.client(20 * time.Second)
	var total uint64
	for _, c := range fastPathCases {
		r, err := fpFetch(hc, b.url(c.path))
		if err != nil || r.status != 200 || !bytes.Equal(r.body, wantBody(c.path)) {
			t.Fatalf("%s over h2c: %v, status %d, %d bytes", c.path, err, r.status, len(r.body))
		}
		if c.path != "/chunked" && r.appProto != "HTTP/2.0" {
			t.Fatalf("%s: the app was spoken to in %q, want HTTP/2.0", c.path, r.appProto)
		}
		total += uint64(len(r.body))
	}
	if v := b.view(t); v.BytesRedirected < total || v.Fallbacks != 0 {
		t.Fatalf("/fastpath: %+v, want at least the %d bytes of the bodies redirected and no fallback", v, total)
	}
}

// TestFastPathFaults: an app that breaks off a response, warden killed in
// the middle of a stream and started again: every client gets an answer or
// an error within its deadline, never other bytes, and the next requests
// are whole.
func TestFastPathFaults(t *testing.T) {
	b := newFastPathBed(t)
	// What a client sees of a broken-off response, off and on: the same.
	seen := map[string][]string{}
	var p *process
	var hc *http.Client
	for _, mode := range []string{"off", "sockmap"} {
		p = b.startWarden(t, "WARDEN_FAST_PATH="+mode)
		hc = b.client(15 * time.Second)
		for _, path := range []string{"/close", "/reset"} {
			t.Run(mode+": app breaks off "+path, func(t *testing.T) {
				start := time.Now()
				r, err := fpFetch(hc, b.url(path))
				if err == nil && r.status == 200 && len(r.body) == 1<<20 {
					t.Fatalf("a broken-off response arrived whole")
				}
				if !bytes.HasPrefix(fastPathBody(1<<20), r.body) {
					t.Fatalf("%d bytes that are not the app's", len(r.body))
				}
				t.Logf("%s: status %d, %d bytes, %v, in %s", path, r.status, len(r.body), err, time.Since(start).Round(time.Millisecond))
				seen[mode] = append(seen[mode], fmt.Sprintf("%s: %d, %d bytes, %v", path, r.status, len(r.body), err))
				for _, c := range fastPathCases {
					r, err := fpFetch(hc, b.url(c.path))
					if err != nil || !bytes.Equal(r.body, wantBody(c.path)) {
						t.Fatalf("after %s, %s: %v, %d bytes", path, c.path, err, len(r.body))
					}
				}
			})
		}
		if mode == "off" {
			hc.CloseIdleConnections()
			fpStop(t, p, syscall.SIGTERM)
		}
	}
	if fmt.Sprint(seen["off"]) != fmt.Sprint(seen["sockmap"]) {
		t.Errorf("broken-off responses differ:\noff:     %v\nsockmap: %v", seen["off"], seen["sockmap"])
	}

	t.Run("warden killed while a client streams, then started again", func(t *testing.T) {
		resp, err := hc.Get(b.url("/stream"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		chunk := fastPathBody(32 << 10)
		buf := make([]byte, 1<<20)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(buf); i += len(chunk) {
			if !bytes.Equal(buf[i:i+len(chunk)], chunk) {
				t.Fatalf("stream corrupted at %d", i)
			}
		}
		if v := b.view(t); v.BytesRedirected < 1<<20 {
			t.Fatalf("the stream did not go by the fast path: %+v", v)
		}
		fpStop(t, p, syscall.SIGKILL)
		// The client's read ends (the connection to warden is gone) well
		// within the client's timeout.
		start := time.Now()
		_, err = io.Copy(io.Discard, resp.Body)
		if err == nil {
			t.Fatal("the stream ended cleanly although warden was killed")
		}
		t.Logf("stream after the kill: %v after %s", err, time.Since(start).Round(time.Millisecond))
		testenv.Poll(t, "no sock_ops program on the cgroup", 10*time.Second, func() bool { return b.sockOpsOnCgroup(t) == 0 })

		hc.CloseIdleConnections()
		b.startWarden(t, "WARDEN_FAST_PATH=sockmap")
		for _, c := range fastPathCases {
			r, err := fpFetch(hc, b.url(c.path))
			if err != nil || r.status != 200 || !bytes.Equal(r.body, wantBody(c.path)) {
				t.Fatalf("after the restart, %s: %v, status %d, %d bytes", c.path, err, r.status, len(r.body))
			}
		}
		if v := b.view(t); v.BytesRedirected == 0 || !v.Active {
			t.Fatalf("the restarted warden's fast path: %+v", v)
		}
		// The app's stream handler saw its writes fail and ended.
		testenv.Poll(t, "the app's stream handler ends", 20*time.Second, func() bool {
			r, err := fpFetch(hc, b.url("/streams"))
			return err == nil && string(r.body) == "0"
		})
	})
}

// TestFastPathStartup: sockmap refuses to start where it cannot attach,
// naming the variable; auto starts without it and says why, once.
func TestFastPathStartup(t *testing.T) {
	bpftest.RequirePrivileged(t)
	notCgroup := t.TempDir()
	t.Run("sockmap fails", func(t *testing.T) {
		p := startWarden(t, "WARDEN_IDENTITY=dev", "WARDEN_DEV_DIR="+t.TempDir(),
			"WARDEN_INBOUND_ADDR=127.0.0.1:0", "WARDEN_ADMIN_ADDR=127.0.0.1:0",
			"WARDEN_FAST_PATH=sockmap", "WARDEN_FAST_PATH_CGROUP="+notCgroup)
		select {
		case err := <-p.done:
			if err == nil {
				t.Fatal("warden exited 0")
			}
		case <-time.After(30 * time.Second):
			t.Fatal("warden started although WARDEN_FAST_PATH=sockmap could not attach")
		}
		want := "WARDEN_FAST_PATH=sockmap: WARDEN_FAST_PATH_CGROUP " + notCgroup + ": bpf: fast path: " + notCgroup + " is not in a cgroup v2 file system"
		if !strings.Contains(p.rawLog(), want) {
			t.Fatalf("log does not say %q:\n%s", want, p.rawLog())
		}
	})
	t.Run("auto starts without it", func(t *testing.T) {
		p := startWarden(t, "WARDEN_IDENTITY=dev", "WARDEN_DEV_DIR="+t.TempDir(),
			"WARDEN_INBOUND_ADDR=127.0.0.1:0", "WARDEN_ADMIN_ADDR=127.0.0.1:0",
			"WARDEN_FAST_PATH=auto", "WARDEN_FAST_PATH_CGROUP="+notCgroup)
		admin := "http://" + p.listenAddr(t, "admin")
		p.listenAddr(t, "inbound")
		var off []map[string]any
		for _, l := range p.logLines() {
			if l["event"] == "fast_path_off" {
				off = append(off, l)
			}
		}
		if len(off) != 1 || off[0]["level"] != "info" || !strings.Contains(fmt.Sprint(off[0]["reason"]), "WARDEN_FAST_PATH_CGROUP "+notCgroup) {
			t.Fatalf("fast_path_off lines: %v, want one info line naming WARDEN_FAST_PATH_CGROUP", off)
		}
		code, body := get(t, admin+"/fastpath")
		var v fastPathView
		if code != 200 || json.Unmarshal([]byte(body), &v) != nil || v.Active || v.Mode != "auto" || v.Reason != off[0]["reason"] {
			t.Fatalf("/fastpath: %d %s", code, body)
		}
	})
}

// TestFastPathAutoInAContainerKeepsTCP: warden at the root of its own
// cgroup namespace, with the cgroup2 file system mounted inside it, as a
// container runtime starts it in a pod: auto can't reach the app's cgroup,
// says so once and serves over TCP.
func TestFastPathAutoInAContainerKeepsTCP(t *testing.T) {
	bpftest.RequirePrivileged(t)
	testenv.NeedTool(t, "unshare", "util-linux")
	cg := bpftest.NewCgroup(t)
	mnt, err := cgroup2.Mount()
	if err != nil {
		t.Fatal(err)
	}
	cmd := cg.Into(exec.Command("unshare", "--cgroup", "--mount", "--propagation", "private", "sh", "-c",
		"umount -l "+mnt+" && mount -t cgroup2 cgroup2 "+mnt+" && exec "+wardenBin))
	p := startWardenCmd(t, cmd, "WARDEN_IDENTITY=dev", "WARDEN_DEV_DIR="+t.TempDir(),
		"WARDEN_INBOUND_ADDR=127.0.0.1:0", "WARDEN_ADMIN_ADDR=127.0.0.1:0")
	admin := "http://" + p.listenAddr(t, "admin")
	p.listenAddr(t, "inbound")
	off := p.find(t, func(l map[string]any) bool { return l["event"] == "fast_path_off" })
	want := "cgroup2: the process is at the root of its own cgroup namespace"
	if !strings.HasPrefix(fmt.Sprint(off["reason"]), want) || off["level"] != "info" {
		t.Fatalf("fast_path_off: %v, want an info line whose reason starts %q", off, want)
	}
	code, body := get(t, admin+"/fastpath")
	var v fastPathView
	if code != 200 || json.Unmarshal([]byte(body), &v) != nil || v.Active || v.Mode != "auto" || v.Reason != off["reason"] {
		t.Fatalf("/fastpath: %d %s", code, body)
	}
	if n := len(sockOps(t, cg)); n != 0 {
		t.Fatalf("%d sock_ops programs on warden's cgroup", n)
	}
}

func sockOps(t *testing.T, cg *bpftest.Cgroup) []link.AttachedProgram {
	t.Helper()
	r, err := link.QueryPrograms(link.QueryOptions{Target: cg.FD(), Attach: ebpf.AttachCGroupSockOps})
	if err != nil {
		t.Fatal(err)
	}
	return r.Programs
}
