package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/agent/pep"
)

// wsApp is a real WebSocket echo server (coder/websocket) on loopback that
// records the handshakes that reached it. /ws/quiet accepts and then only
// waits for the client to go.
type wsApp struct {
	addr string
	mu   sync.Mutex
	reqs []*http.Request
}

func (a *wsApp) handshakes() []*http.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*http.Request(nil), a.reqs...)
}

func startWSApp(t *testing.T) *wsApp {
	t.Helper()
	a := &wsApp{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.reqs = append(a.reqs, r.Clone(context.Background()))
		a.mu.Unlock()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(64 << 20)
		ctx := r.Context()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return a
}

// dialWS opens a WebSocket through the proxy with a client SVID.
func (h *harness) dialWS(t *testing.T, path string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return websocket.Dial(ctx, "wss://"+h.addr+path, &websocket.DialOptions{HTTPClient: h.client(t, clientID)})
}

func TestWebSocketEchoesThroughTheProxy(t *testing.T) {
	app := startWSApp(t)
	g := &pathGuard{}
	h := startProxy(t, func(o *Options) {
		o.UpstreamAddr, o.AllowUpgrade, o.Guard = app.addr, []string{"websocket"}, g
	})
	c, resp, err := h.dialWS(t, "/chat/%2e%2e/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("handshake answer %d, X-Request-Id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	c.SetReadLimit(64 << 20)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := c.Write(ctx, websocket.MessageText, []byte("hello through warden")); err != nil {
		t.Fatal(err)
	}
	typ, got, err := c.Read(ctx)
	if err != nil || typ != websocket.MessageText || string(got) != "hello through warden" {
		t.Fatalf("text echo: %v %q %v", typ, got, err)
	}
	big := make([]byte, 8<<20)
	_, _ = rand.Read(big)
	if err := c.Write(ctx, websocket.MessageBinary, big); err != nil {
		t.Fatal(err)
	}
	typ, got, err = c.Read(ctx)
	if err != nil || typ != websocket.MessageBinary || !bytes.Equal(got, big) {
		t.Fatalf("binary echo of %d bytes: type %v, %d bytes back, equal %v, %v", len(big), typ, len(got), bytes.Equal(got, big), err)
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("closing handshake through the tunnel: %v", err)
	}

	hs := app.handshakes()
	if len(hs) != 1 {
		t.Fatalf("app saw %d handshakes, want 1", len(hs))
	}
	r := hs[0]
	if r.URL.Path != "/ws" || r.Header.Get("X-Forwarded-Client-Cert") != "By="+ownID.String()+";URI="+clientID.String() ||
		r.Header.Get("X-Policy") != "checked" || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		t.Errorf("app saw %s with headers %v: want the normalized path, warden's identity and the verdict's header", r.URL.Path, r.Header)
	}
	if want := "/ws " + clientID.String(); len(g.seen) != 1 || g.seen[0] != want {
		t.Errorf("guard saw %q, want %q", g.seen, want)
	}
	if !eventually(func() bool { return strings.Contains(h.logs.String(), `"event":"upgrade_closed"`) }) {
		t.Fatalf("no upgrade_closed line:\n%s", h.logs.String())
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"event":"access","method":"GET","path":"/ws","status":101`) {
		t.Errorf("no access line with status 101:\n%s", logs)
	}
	if !strings.Contains(logs, `"reason":"app_closed"`) && !strings.Contains(logs, `"reason":"client_closed"`) {
		t.Errorf("upgrade_closed without the closing side:\n%s", logs)
	}
	if h.srv.Tunnels() != 0 {
		t.Errorf("%d tunnels still open after both sides closed", h.srv.Tunnels())
	}
}

// A tunnel where nothing flows either way for the idle timeout is closed;
// one where bytes flow stays open past it.
func TestIdleTunnelIsClosed(t *testing.T) {
	app := startWSApp(t)
	h := startProxy(t, func(o *Options) {
		o.UpstreamAddr, o.AllowUpgrade, o.IdleTimeout = app.addr, []string{"websocket"}, 400*time.Millisecond
	})
	c, _, err := h.dialWS(t, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Busy for three idle periods: a message every 100ms keeps it open.
	for start := time.Now(); time.Since(start) < 1200*time.Millisecond; {
		if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			t.Fatalf("busy tunnel closed after %s: %v", time.Since(start), err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatalf("busy tunnel closed after %s: %v", time.Since(start), err)
		}
		readCtx, stop := context.WithTimeout(ctx, 100*time.Millisecond)
		<-readCtx.Done()
		stop()
	}
	// Then silent: warden closes it, and the client's read ends.
	start := time.Now()
	_, _, err = c.Read(ctx)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("idle tunnel: read returned %v after %s, want the connection closed by warden", err, time.Since(start))
	}
	if !eventually(func() bool { return strings.Contains(h.logs.String(), `"reason":"idle_timeout"`) }) {
		t.Errorf("no upgrade_closed line with reason idle_timeout:\n%s", h.logs.String())
	}
}

// An upgrade the policy denies gets the policy's status and never reaches
// the app.
func TestDeniedUpgradeNeverReachesTheApp(t *testing.T) {
	app := startWSApp(t)
	h := startProxy(t, func(o *Options) {
		o.UpstreamAddr, o.AllowUpgrade, o.Guard = app.addr, []string{"websocket"}, &pathGuard{}
	})
	_, resp, err := h.dialWS(t, "/admin/ws")
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("denied upgrade: %v, %+v; want the policy's 401", err, resp)
	}
	if n := len(app.handshakes()); n != 0 {
		t.Errorf("app saw %d handshakes of a denied upgrade", n)
	}
}

// wsRequest is a WebSocket handshake for path with extra header lines.
func wsRequest(path string, extra ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + strings.Join(extra, "") + "\r\n"
}

// Upgrade requests warden does not tunnel are refused with a clear status
// before anything reaches the app, and the connection closes.
func TestRefusedUpgradesNeverReachTheApp(t *testing.T) {
	tests := []struct {
		name   string
		allow  []string
		req    string
		status int
		code   string
	}{
		{"no upgrades allowed", nil, wsRequest("/ws"), 400, "upgrade_not_allowed"},
		{"protocol not allowed", []string{"websocket"}, strings.Replace(wsRequest("/ws"), "Upgrade: websocket", "Upgrade: h2c", 1), 400, "upgrade_not_allowed"},
		{"two protocols", []string{"websocket"}, strings.Replace(wsRequest("/ws"), "Upgrade: websocket", "Upgrade: websocket, foo", 1), 400, "bad_request"},
		{"two Upgrade lines", []string{"websocket"}, wsRequest("/ws", "Upgrade: websocket\r\n"), 400, "bad_request"},
		{"POST", []string{"websocket"}, strings.Replace(wsRequest("/ws"), "GET", "POST", 1), 400, "bad_request"},
		{"a body", []string{"websocket"}, wsRequest("/ws", fmt.Sprintf("Content-Length: %d\r\n", len(hiddenAdmin))) + hiddenAdmin, 400, "bad_request"},
		{"a chunked body", []string{"websocket"}, wsRequest("/ws", "Transfer-Encoding: chunked\r\n") + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(hiddenAdmin), hiddenAdmin), 400, "bad_request"},
		{"no key", []string{"websocket"}, strings.Replace(wsRequest("/ws"), "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1), 400, "bad_request"},
		{"short key", []string{"websocket"}, strings.Replace(wsRequest("/ws"), "dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=", 1), 400, "bad_request"},
		{"long key", []string{"websocket"}, strings.Replace(wsRequest("/ws"), "dGhlIHNhbXBsZSBub25jZQ==", strings.Repeat("QUFB", 200), 1), 400, "bad_request"},
		{"key of 16 bytes without padding", []string{"websocket"}, strings.Replace(wsRequest("/ws"), "dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ", 1), 400, "bad_request"},
		{"old version", []string{"websocket"}, strings.Replace(wsRequest("/ws"), "Version: 13", "Version: 8", 1), 426, "unsupported_websocket_version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startProxy(t, func(o *Options) { o.AllowUpgrade = tt.allow })
			conn := h.dialRaw(t, clientID)
			fmt.Fprint(conn, tt.req)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if body := readError(t, resp); resp.StatusCode != tt.status || body.Error != tt.code {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body.Error, tt.status, tt.code)
			}
			if tt.status == 426 && resp.Header.Get("Sec-WebSocket-Version") != "13" {
				t.Errorf("426 without Sec-WebSocket-Version: 13")
			}
			if _, err := br.ReadByte(); err == nil {
				t.Error("connection still open after a refused upgrade")
			}
			if n := len(h.upstream.requests()); n != 0 {
				t.Errorf("app saw %d requests", n)
			}
		})
	}
}

const hiddenAdmin = "GET /admin HTTP/1.1\r\nHost: app\r\n\r\n"

// RFC 9110 section 7.8: Upgrade in an HTTP/1.0 request is ignored. The
// request goes on as an ordinary one, without Upgrade, and the connection
// closes after it.
func TestUpgradeOnHTTP10IsIgnored(t *testing.T) {
	h := startProxy(t, func(o *Options) { o.AllowUpgrade = []string{"websocket"} })
	conn := h.dialRaw(t, clientID)
	fmt.Fprint(conn, strings.Replace(wsRequest("/ws"), "HTTP/1.1", "HTTP/1.0", 1)+hiddenAdmin)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if rest, _ := io.ReadAll(br); resp.StatusCode != 200 || len(rest) != 0 {
		t.Errorf("got %d and then %q, want 200 and the connection closed", resp.StatusCode, rest)
	}
	reqs := h.upstream.requests()
	if len(reqs) != 1 || reqs[0].path != "/ws" || reqs[0].headers.Get("Upgrade") != "" {
		t.Errorf("app saw %+v, want /ws once without Upgrade", reqs)
	}
}

// An attacker sends an upgrade with a request right behind it, hoping
// warden tunnels the rest of the connection (as proxies that trust the
// client's Upgrade do) once the upgrade is answered: by the app, which
// does not switch (200), or by the policy (401). The answer goes back, the
// connection closes, and the hidden request is neither decided nor sent.
func TestRefusedUpgradeCannotSmuggleARequest(t *testing.T) {
	tests := []struct {
		name, path string
		status     int
	}{
		// The fasthttp app ignores Upgrade: it answers 200, not 101.
		{"the app does not switch", "/public", 200},
		{"the policy denies", "/admin/ws", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &pathGuard{}
			h := startProxy(t, func(o *Options) { o.AllowUpgrade, o.Guard = []string{"websocket"}, g })
			conn := h.dialRaw(t, clientID)
			hidden := "GET /public/hidden HTTP/1.1\r\nHost: app\r\n\r\n"
			fmt.Fprint(conn, wsRequest(tt.path)+hidden)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !resp.Close {
				t.Errorf("got %d (close %v), want %d and the connection closed", resp.StatusCode, resp.Close, tt.status)
			}
			// The client keeps sending, as if the upgrade had gone through.
			fmt.Fprint(conn, hidden)
			if rest, _ := io.ReadAll(br); len(rest) != 0 {
				t.Errorf("after the refused upgrade the client got %q", rest)
			}
			for _, r := range h.upstream.requests() {
				if r.path != "/public" {
					t.Errorf("app saw %s %s", r.method, r.path)
				}
			}
			if want := tt.path + " " + clientID.String(); len(g.seen) != 1 || g.seen[0] != want {
				t.Errorf("guard saw %q, want only the upgrade request", g.seen)
			}
		})
	}
}

// maskedFrame is a client's WebSocket frame (RFC 6455 section 5.2), FIN set.
func maskedFrame(opcode byte, payload []byte) []byte {
	f := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n < 1<<16:
		f = append(f, 0x80|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	key := [4]byte{1, 2, 3, 4}
	f = append(f, key[:]...)
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}

// A client may send frames right behind its handshake, before the 101: they
// are neither lost nor read as a request, but reach the app after it.
func TestFramesSentBeforeThe101ReachTheApp(t *testing.T) {
	app := startWSApp(t)
	h := startProxy(t, func(o *Options) { o.UpstreamAddr, o.AllowUpgrade = app.addr, []string{"websocket"} })
	conn := h.dialRaw(t, clientID)
	msg := []byte("sent before the 101")
	if _, err := conn.Write(append([]byte(wsRequest("/ws")), maskedFrame(1, msg)...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	// Sec-WebSocket-Accept of the RFC's sample key (section 1.3).
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("Sec-WebSocket-Accept %q", got)
	}
	var head [2]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, head[1]&0x7f)
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	if head[0] != 0x81 || string(got) != string(msg) {
		t.Errorf("echo frame %x %q, want a text frame %q", head[0], got, msg)
	}
}

// Draining closes the tunnels still open when its deadline comes, so that
// warden exits, and refuses new ones meanwhile.
func TestShutdownBoundsOpenTunnels(t *testing.T) {
	app := startWSApp(t)
	h := startProxy(t, func(o *Options) { o.UpstreamAddr, o.AllowUpgrade = app.addr, []string{"websocket"} })
	c, _, err := h.dialWS(t, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if !eventually(func() bool { return h.srv.Tunnels() == 1 }) {
		t.Fatalf("%d tunnels open, want 1", h.srv.Tunnels())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = h.srv.Shutdown(ctx) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown still waiting for the tunnel 5s after its 300ms deadline")
	}
	if h.srv.Tunnels() != 0 {
		t.Errorf("%d tunnels open after Shutdown", h.srv.Tunnels())
	}
	readCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if _, _, err := c.Read(readCtx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("client's read after the drain: %v, want the connection closed", err)
	}
	if !strings.Contains(h.logs.String(), `"reason":"shutdown"`) {
		t.Errorf("no upgrade_closed line with reason shutdown:\n%s", h.logs.String())
	}
}

var _ pep.Checker = (*pathGuard)(nil)

// upgradeRewriter is a verdict that tries to change the protocol the app
// is offered.
type upgradeRewriter struct{}

func (upgradeRewriter) Check(*pep.Request) pep.Verdict {
	return pep.Verdict{AppHeaders: []pep.Header{{Name: "Upgrade", Value: "h2c"}, {Name: "Connection", Value: "close"}}}
}

// The app is offered exactly the protocol the client asked for and the
// policy decided on, whatever headers a verdict sets.
func TestVerdictCannotChangeTheUpgradeProtocol(t *testing.T) {
	app := startWSApp(t)
	h := startProxy(t, func(o *Options) {
		o.UpstreamAddr, o.AllowUpgrade, o.Guard = app.addr, []string{"websocket"}, upgradeRewriter{}
	})
	c, _, err := h.dialWS(t, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	c.CloseNow()
	hs := app.handshakes()
	if len(hs) != 1 || hs[0].Header.Values("Upgrade")[0] != "websocket" || len(hs[0].Header.Values("Upgrade")) != 1 ||
		!strings.EqualFold(hs[0].Header.Get("Connection"), "Upgrade") {
		t.Errorf("app was offered %v", hs)
	}
}

// Handshakes as browsers write them: Firefox's "Connection: keep-alive,
// Upgrade", a protocol in another case.
func TestBrowserHandshakesSwitch(t *testing.T) {
	app := startWSApp(t)
	h := startProxy(t, func(o *Options) { o.UpstreamAddr, o.AllowUpgrade = app.addr, []string{"websocket"} })
	for _, req := range []string{
		strings.Replace(wsRequest("/ws"), "Connection: Upgrade", "Connection: keep-alive, Upgrade", 1),
		strings.Replace(wsRequest("/ws"), "Upgrade: websocket", "Upgrade: WebSocket", 1),
	} {
		conn := h.dialRaw(t, clientID)
		fmt.Fprint(conn, req)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
			t.Errorf("%q: %v %v", strings.SplitN(req, "\r\n", 4)[2:3], resp, err)
		}
		conn.Close()
	}
}

// rawSwitchingApp answers every connection's request head with head, in
// one write, and then keeps the connection until the test ends.
func rawSwitchingApp(t *testing.T, head string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if l == "\r\n" {
						break
					}
				}
				_, _ = io.WriteString(c, head)
				<-done
			}()
		}
	}()
	t.Cleanup(func() { close(done); ln.Close() })
	return ln.Addr().String()
}

// unmaskedFrame is a server's WebSocket text frame (under 126 bytes).
func unmaskedFrame(payload string) string {
	return string([]byte{0x81, byte(len(payload))}) + payload
}

// The app's first frame, sent in the same segment as its 101, reaches the
// client right behind it; a 101 to another protocol than the one asked for
// is not relayed, nor anything after it.
func TestAppAnswersToTheUpgrade(t *testing.T) {
	const switching = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
	t.Run("first frame in the 101's segment", func(t *testing.T) {
		app := rawSwitchingApp(t, fmt.Sprintf(switching, "websocket")+unmaskedFrame("hello early"))
		h := startProxy(t, func(o *Options) { o.UpstreamAddr, o.AllowUpgrade = app, []string{"websocket"} })
		conn := h.dialRaw(t, clientID)
		fmt.Fprint(conn, wsRequest("/ws"))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("%v %v", resp, err)
		}
		frame := make([]byte, 2+len("hello early"))
		if _, err := io.ReadFull(br, frame); err != nil || string(frame) != unmaskedFrame("hello early") {
			t.Errorf("first frame %q, %v", frame, err)
		}
	})
	t.Run("101 to another protocol", func(t *testing.T) {
		app := rawSwitchingApp(t, fmt.Sprintf(switching, "h2c")+"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		h := startProxy(t, func(o *Options) { o.UpstreamAddr, o.AllowUpgrade = app, []string{"websocket"} })
		conn := h.dialRaw(t, clientID)
		fmt.Fprint(conn, wsRequest("/ws"))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if body := readError(t, resp); resp.StatusCode != 502 || body.Error != "upstream_unavailable" {
			t.Errorf("got %d %q, want 502 upstream_unavailable", resp.StatusCode, body.Error)
		}
		if rest, _ := io.ReadAll(br); len(rest) != 0 {
			t.Errorf("the client got the app's bytes after the refusal: %q", rest)
		}
	})
}

// FuzzCheckWebSocket: any handshake fields are refused or accepted without
// a panic, and accepted only as RFC 6455 has them.
func FuzzCheckWebSocket(f *testing.F) {
	f.Add("dGhlIHNhbXBsZSBub25jZQ==", "13")
	f.Add("dGhlIHNhbXBsZSBub25jZQ", "13")
	f.Add(strings.Repeat("QUFB", 40), "13")
	f.Add("dGhlIHNhbXBsZSBub25jZQ==", " 13 ")
	f.Add("!!!!!!!!!!!!!!!!!!!!!!==", "8")
	f.Fuzz(func(t *testing.T, key, version string) {
		var h fasthttp.RequestHeader
		raw := "GET /ws HTTP/1.1\r\nHost: app\r\nSec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: " + version + "\r\n\r\n"
		if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return // not a header block fasthttp would hand warden
		}
		if checkWebSocket(&h) != nil {
			return
		}
		k := strings.Trim(string(h.Peek("Sec-WebSocket-Key")), " \t")
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(b) != 16 || strings.Trim(string(h.Peek("Sec-WebSocket-Version")), " \t") != "13" {
			t.Errorf("accepted key %q version %q", h.Peek("Sec-WebSocket-Key"), h.Peek("Sec-WebSocket-Version"))
		}
	})
}
