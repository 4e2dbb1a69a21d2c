package main

// WebSocket through the real binary: a real WebSocket client with a client
// SVID, a real WebSocket echo app (coder/websocket on both sides).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/warden-sidecar/warden/internal/testenv"
)

// wsPolicy allows /ws, and only as a WebSocket upgrade: the policy sees
// the Upgrade header like any other.
const wsPolicy = `package warden.authz
default allow := false
allow if {
	input.path == "/ws"
	input.headers.upgrade == "websocket"
}
`

// wsEchoApp is a WebSocket echo app on loopback; it counts the requests
// that reached it.
type wsEchoApp struct {
	addr string
	mu   sync.Mutex
	seen []string // path and X-Forwarded-Client-Cert of each request
}

func (a *wsEchoApp) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

func startWSEchoApp(t *testing.T) *wsEchoApp {
	t.Helper()
	a := &wsEchoApp{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen = append(a.seen, r.URL.Path+" "+r.Header.Get("X-Forwarded-Client-Cert"))
		a.mu.Unlock()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(16 << 20)
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return a
}

// wsSidecar is warden (dev identity) in front of app with wsPolicy, and a
// client holding an SVID.
type wsSidecar struct {
	*process
	addr, admin string
	client      *http.Client
}

func startWSSidecar(t *testing.T, app *wsEchoApp, env ...string) *wsSidecar {
	t.Helper()
	devDir := t.TempDir()
	clientDir := filepath.Join(t.TempDir(), "client")
	if out, err := devIssueCmd(t, devDir, "spiffe://warden.local/ns/default/sa/client", clientDir); err != nil {
		t.Fatalf("dev issue: %v\n%s", err, out)
	}
	p := startWarden(t, append([]string{
		"WARDEN_IDENTITY=dev", "WARDEN_DEV_DIR=" + devDir, "WARDEN_POLICY_BUNDLE=" + policyDir(t, wsPolicy),
		"WARDEN_INBOUND_ADDR=127.0.0.1:0", "WARDEN_ADMIN_ADDR=127.0.0.1:0", "WARDEN_UPSTREAM_ADDR=" + app.addr,
	}, env...)...)
	admin := "http://" + p.listenAddr(t, "admin")
	testenv.Poll(t, "readiness", 15*time.Second, func() bool { code, _ := get(t, admin+"/readyz"); return code == 200 })
	return &wsSidecar{process: p, addr: p.listenAddr(t, "inbound"), admin: admin, client: curlLikeClient(t, clientDir)}
}

func (s *wsSidecar) dial(t *testing.T, path string, subprotocols ...string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "wss://"+s.addr+path, &websocket.DialOptions{HTTPClient: s.client, Subprotocols: subprotocols})
	if c != nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

func TestWebSocketThroughWarden(t *testing.T) {
	app := startWSEchoApp(t)
	s := startWSSidecar(t, app, "WARDEN_IDLE_TIMEOUT=1s")

	// A bearer token as a subprotocol, as browsers' clients send one
	// (Kubernetes' convention): the suite's leak check holds every log,
	// the decision log included, to never show it.
	token := randomSecret(t, "bearer token in Sec-WebSocket-Protocol", "tok")
	c, resp, err := s.dial(t, "/ws", "base64url.bearer.authorization.k8s.io."+token)
	if err != nil {
		t.Fatalf("handshake through warden: %v", err)
	}
	rid := resp.Header.Get("X-Request-Id")
	testenv.Poll(t, "the open tunnel in /metrics", 10*time.Second, func() bool {
		return scrape(t, s.admin)["warden_upgraded_connections"] == 1
	})
	c.SetReadLimit(16 << 20)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello, app")); err != nil {
		t.Fatal(err)
	}
	if typ, got, err := c.Read(ctx); err != nil || typ != websocket.MessageText || string(got) != "hello, app" {
		t.Fatalf("text echo: %v %q %v", typ, got, err)
	}
	big := make([]byte, 4<<20)
	_, _ = rand.Read(big)
	if err := c.Write(ctx, websocket.MessageBinary, big); err != nil {
		t.Fatal(err)
	}
	if typ, got, err := c.Read(ctx); err != nil || typ != websocket.MessageBinary || !bytes.Equal(got, big) {
		t.Fatalf("binary echo of 4 MiB: type %v, %d bytes, %v", typ, len(got), err)
	}
	// Then nothing for longer than WARDEN_IDLE_TIMEOUT: warden closes it.
	start := time.Now()
	if _, _, err := c.Read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("idle tunnel: read %v after %s, want it closed by warden", err, time.Since(start))
	}
	testenv.Poll(t, "the closed tunnel in /metrics", 10*time.Second, func() bool {
		return scrape(t, s.admin)["warden_upgraded_connections"] == 0
	})
	want := "/ws By=spiffe://warden.local/ns/default/sa/app;URI=spiffe://warden.local/ns/default/sa/client"
	if got := app.requests(); len(got) != 1 || got[0] != want {
		t.Errorf("app saw %q, want %q", got, want)
	}
	s.find(t, func(l map[string]any) bool {
		r := requestLine(l)
		return r != nil && r["path"] == "/ws" && r["status"] == float64(101) && r["request_id"] == rid
	})
	closed := s.find(t, func(l map[string]any) bool { return l["event"] == "upgrade_closed" && l["request_id"] == rid })
	if closed["reason"] != "idle_timeout" || closed["bytes_from_client"].(float64) < 4<<20 || closed["bytes_from_app"].(float64) < 4<<20 {
		t.Errorf("upgrade_closed line %v: want reason idle_timeout and the 4 MiB counted both ways", closed)
	}
	s.find(t, func(l map[string]any) bool {
		w := decision(l)
		return w != nil && w["request_id"] == rid
	})
}

// The policy's denial of an upgrade is answered like any denial, and the
// app never hears of it; a plain GET of the WebSocket path is denied too,
// which shows the policy saw the Upgrade header.
func TestDeniedWebSocketNeverReachesTheApp(t *testing.T) {
	app := startWSEchoApp(t)
	s := startWSSidecar(t, app)
	for _, path := range []string{"/admin/ws", "/ws/../admin/ws"} {
		if _, resp, err := s.dial(t, path); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("upgrade to %s: %v %v, want 403", path, resp, err)
		}
	}
	resp, err := s.client.Get("https://" + s.addr + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("plain GET /ws: %d, want 403 (the policy allows only the upgrade)", resp.StatusCode)
	}
	if got := app.requests(); len(got) != 0 {
		t.Errorf("app saw %q", got)
	}
}

func TestWebSocketRefusedWhenUpgradesAreOff(t *testing.T) {
	app := startWSEchoApp(t)
	s := startWSSidecar(t, app, "WARDEN_ALLOW_UPGRADE=")
	_, resp, err := s.dial(t, "/ws")
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("upgrade with WARDEN_ALLOW_UPGRADE empty: %v %v, want 400", resp, err)
	}
	if got := app.requests(); len(got) != 0 {
		t.Errorf("app saw %q", got)
	}
	s.find(t, func(l map[string]any) bool {
		return l["event"] == "input_refused" && l["reason"] == "hardening:upgrade_not_allowed" &&
			strings.Contains(l["detail"].(string), "WARDEN_ALLOW_UPGRADE")
	})
}

// SIGTERM with a WebSocket open: warden closes it at the drain deadline
// and exits 0.
func TestDrainClosesOpenWebSockets(t *testing.T) {
	app := startWSEchoApp(t)
	s := startWSSidecar(t, app, "WARDEN_DRAIN_TIMEOUT=1s")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := s.echoOnce(ctx, t, "before the drain")
	s.terminate(t)
	if _, _, err := c.Read(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WebSocket after warden exited: %v, want closed", err)
	}
	s.find(t, func(l map[string]any) bool { return l["event"] == "upgrade_closed" && l["reason"] == "shutdown" })
}

// upgradeSmugglePolicy allows /public, nothing under /admin.
const upgradeSmugglePolicy = `package warden.authz
default allow := false
allow if input.path == "/public"
`

// An attacker hides a request behind an upgrade, hoping warden hands the
// rest of the connection to the app as a tunnel: behind one the app does
// not switch for (the recording app answers 200 to everything), behind one
// the policy denies, and as the body of one. Whatever warden answers, the
// connection closes after it, and the hidden request never reaches the app.
func TestAttackUpgradeSmuggling(t *testing.T) {
	const ws = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	hidden := "GET /admin/secret HTTP/1.1\r\nHost: app.local\r\n\r\n"
	tests := []struct {
		name   string
		raw    string
		status int
		code   string // warden's error code; "" for the app's answer
		app    []string
	}{
		{"a request behind an upgrade the app does not switch for",
			"GET /public HTTP/1.1\r\nHost: app.local\r\n" + ws + "\r\n" + hidden, 200, "", []string{"/public"}},
		{"a request behind an upgrade the policy denies",
			"GET /admin/ws HTTP/1.1\r\nHost: app.local\r\n" + ws + "\r\n" + hidden, 403, "forbidden", nil},
		{"a request as the body of an upgrade",
			fmt.Sprintf("GET /public HTTP/1.1\r\nHost: app.local\r\n%sContent-Length: %d\r\n\r\n%s", ws, len(hidden), hidden), 400, "bad_request", nil},
		{"a request as the chunked body of an upgrade",
			fmt.Sprintf("GET /public HTTP/1.1\r\nHost: app.local\r\n%sTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", ws, len(hidden), hidden), 400, "bad_request", nil},
	}
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_POLICY_BUNDLE="+policyDir(t, upgradeSmugglePolicy))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(app.requests())
			c := s.dial(t)
			got := c.do(tt.raw)
			if got.status != tt.status || (tt.code != "" && got.code() != tt.code) {
				t.Errorf("got %s, want %d %q", got, tt.status, tt.code)
			}
			// The attacker goes on as if the upgrade had gone through.
			_, _ = io.WriteString(c, hidden)
			if rest, _ := io.ReadAll(c.br); len(rest) != 0 {
				t.Errorf("after the answer the connection carried %q", rest)
			}
			var targets []string
			for _, r := range app.requests()[before:] {
				targets = append(targets, r.target)
			}
			if strings.Join(targets, ",") != strings.Join(tt.app, ",") {
				t.Errorf("app saw %q, want %q", targets, tt.app)
			}
		})
	}
}

// An open WebSocket that neither side closes keeps the inbound drain busy
// to its deadline; the outbound listener, drained after it, must still
// stop cleanly (its idle keep-alive connections closed), and warden exit 0.
func TestDrainWithWebSocketAndOutboundExitsZero(t *testing.T) {
	app := startWSEchoApp(t)
	dest := startApp(t, appOptions{})
	s := startWSSidecar(t, app, "WARDEN_DRAIN_TIMEOUT=2s", "WARDEN_OUTBOUND_ADDR=127.0.0.1:0",
		// Any TLS-less address works: the route is only there to start the
		// outbound listener, whose keep-alive connection from the app idles.
		"WARDEN_OUTBOUND_ROUTES=orders="+dest.addr+"|spiffe://warden.local/ns/default/sa/orders")
	out := s.listenAddr(t, "outbound")
	ob, err := net.Dial("tcp", out)
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	// One request on a kept connection, which then idles.
	if _, err := io.WriteString(ob, "GET /x HTTP/1.1\r\nHost: unknown\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(bufio.NewReader(ob), nil); err != nil || resp.StatusCode != 403 {
		t.Fatalf("outbound request: %v %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s.echoOnce(ctx, t, "open")
	s.terminate(t)
}

// echoOnce opens a WebSocket through warden and sees msg echoed on it.
func (s *wsSidecar) echoOnce(ctx context.Context, t *testing.T, msg string) *websocket.Conn {
	t.Helper()
	c, _, err := s.dial(t, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// terminate sends warden SIGTERM and wants it to exit 0 within 15 s.
func (s *wsSidecar) terminate(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("warden exited with %v, want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("warden still running 15s after SIGTERM")
	}
}
