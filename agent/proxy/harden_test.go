package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/pep"
)

// rawApp is an app written at the socket: it reads request heads, ignores
// any body (as many apps do on GET), and answers each request with its
// target as the body, on keep-alive. What it ignores it reads as the next
// request: the CL.0 desync that warden must not let through.
type rawApp struct {
	addr     string
	mu       sync.Mutex
	targets  []string
	answered chan string
}

// startRawApp starts the app; with headBody it sends a body with its answer
// to HEAD; delay is how long it takes to answer a request for a secret (the
// smuggled one) and to send the body after a HEAD answer: 0 sends the stray
// bytes together with the answer they follow.
func startRawApp(t *testing.T, headBody bool, delay time.Duration) *rawApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &rawApp{addr: ln.Addr().String(), answered: make(chan string, 64)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go a.serve(c, headBody, delay)
		}
	}()
	return a
}

func (a *rawApp) serve(c net.Conn, headBody bool, delay time.Duration) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		for { // skip the headers, never the body
			h, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if h == "\r\n" || h == "\n" {
				break
			}
		}
		if len(f) < 2 {
			return
		}
		a.mu.Lock()
		a.targets = append(a.targets, f[1])
		a.mu.Unlock()
		body := "app answered " + f[1]
		if strings.Contains(f[1], "secret") {
			time.Sleep(delay)
		}
		answer := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body))
		switch {
		case f[0] != "HEAD":
			answer += body
		case headBody && delay == 0:
			answer += body // a body with its answer to HEAD, which warden does not read
		case headBody:
			_, _ = io.WriteString(c, answer)
			time.Sleep(delay)
			answer = body
		}
		_, _ = io.WriteString(c, answer)
		a.answered <- f[1]
	}
}

func (a *rawApp) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.targets...)
}

func (a *rawApp) waitAnswers(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-a.answered:
		case <-time.After(3 * time.Second):
			t.Fatalf("the app answered %d requests, want %d", i, n)
		}
	}
}

const smuggled = "GET /admin/secret HTTP/1.1\r\nHost: app\r\n\r\n"

func rawRequest(t *testing.T, conn net.Conn, req string) (int, string, http.Header) {
	t.Helper()
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(req, " ")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body), resp.Header
}

func TestBodyOnGetIsRefusedBeforeTheApp(t *testing.T) {
	app := startRawApp(t, false, 0)
	h := startProxy(t, func(o *Options) { o.UpstreamAddr = app.addr })
	for _, tt := range []struct{ name, req string }{
		{"GET with Content-Length", fmt.Sprintf("GET /public HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled)},
		{"GET chunked", fmt.Sprintf("GET /public HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled)},
		{"HEAD with Content-Length", fmt.Sprintf("HEAD /public HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled)},
		{"OPTIONS with Content-Length", fmt.Sprintf("OPTIONS /public HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, _, _ := rawRequest(t, h.dialRaw(t, clientID), tt.req)
			if status != http.StatusBadRequest {
				t.Errorf("status %d, want 400", status)
			}
		})
	}
	// An empty body is no body.
	if status, body, _ := rawRequest(t, h.dialRaw(t, clientID), "GET /public HTTP/1.1\r\nHost: app\r\nContent-Length: 0\r\n\r\n"); status != 200 || body != "app answered /public" {
		t.Errorf("GET with Content-Length: 0: %d %q", status, body)
	}
	if seen := app.seen(); len(seen) != 1 {
		t.Errorf("the app saw %q, want only the bodiless GET", seen)
	}
}

// desyncAttack is a request that makes an app allowed GET bodies answer
// more than warden asked: answers is how many answers the app sends.
type desyncAttack struct {
	name, attack string
	headBody     bool // the app sends a body after a HEAD response
	delay        time.Duration
	answers      int
}

func desyncAttacks() []desyncAttack {
	getSmuggling := fmt.Sprintf("GET /public HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled)
	return []desyncAttack{
		{"smuggled request in a GET body, answered later", getSmuggling, false, 50 * time.Millisecond, 2},
		{"smuggled request in a GET body, answered at once", getSmuggling, false, 0, 2},
		{"body after a HEAD response, later", "HEAD /public HTTP/1.1\r\nHost: app\r\n\r\n", true, 50 * time.Millisecond, 1},
		{"body with a HEAD response", "HEAD /public HTTP/1.1\r\nHost: app\r\n\r\n", true, 0, 1},
	}
}

// With bodies on GET allowed, the app desynchronizes: it answers the
// smuggled request too. That answer must reach nobody, and the connection
// holding it must never carry another request, whether the stray bytes
// come with the answer before them or after it.
func TestDesynchronizedAppConnectionIsNeverReused(t *testing.T) {
	for _, tt := range desyncAttacks() {
		t.Run(tt.name, func(t *testing.T) {
			app := startRawApp(t, tt.headBody, tt.delay)
			h := startProxy(t, func(o *Options) {
				o.UpstreamAddr = app.addr
				o.UpstreamMaxConns = 1 // the next request must draw the same pooled connection
				o.Hardening.AllowGetBody = true
			})
			attacker := h.dialRaw(t, clientID)
			status, body, _ := rawRequest(t, attacker, tt.attack)
			if status != 200 || strings.Contains(body, "/admin/secret") {
				t.Fatalf("attacker got %d %q", status, body)
			}
			app.waitAnswers(t, tt.answers) // the stray answer is on the pooled connection now

			victim := h.dialRaw(t, clientID)
			status, body, _ = rawRequest(t, victim, "GET /public/victim HTTP/1.1\r\nHost: app\r\n\r\n")
			if status != 200 || body != "app answered /public/victim" {
				t.Fatalf("another client got %d %q, want its own answer", status, body)
			}
			// The attacker's connection gets nothing more either.
			_ = attacker.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if extra, _ := io.ReadAll(attacker); strings.Contains(string(extra), "secret") {
				t.Fatalf("the attacker received the smuggled answer: %q", extra)
			}
			if !strings.Contains(h.logs.String(), `"event":"upstream_desync"`) || !strings.Contains(h.logs.String(), `"level":"warn"`) {
				t.Errorf("no upstream_desync warning: %s", h.logs)
			}
			if h.srv.UpstreamDesyncs() != 1 {
				t.Errorf("desyncs counted: %d, want 1", h.srv.UpstreamDesyncs())
			}
		})
	}
}

// An app that closes an idle keep-alive connection costs the next request
// nothing: the closed connection is noticed before the request is written.
func TestAppClosingIdleConnectionIsRetriedUnsent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					c.Close()
					return
				}
				body := "answered " + req.URL.Path
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				c.Close() // without Connection: close
			}()
		}
	}()
	h := startProxy(t, func(o *Options) { o.UpstreamAddr = ln.Addr().String(); o.UpstreamMaxConns = 1 })
	client := h.client(t, clientID)
	for i := range 3 {
		resp, err := client.Get(h.url(fmt.Sprintf("/n%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != fmt.Sprintf("answered /n%d", i) {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
		time.Sleep(20 * time.Millisecond) // let the app's FIN arrive
	}
}

func TestExpectIsNeverForwarded(t *testing.T) {
	h := startProxy(t, nil)
	conn := h.dialRaw(t, clientID)
	io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("no 100 Continue from warden: %q %v", line, err)
	}
	br.ReadString('\n')
	io.WriteString(conn, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := h.upstream.requests()
	if resp.StatusCode != 200 || len(reqs) != 1 || string(reqs[0].body) != "hello" {
		t.Fatalf("status %d, app saw %+v", resp.StatusCode, reqs)
	}
	if v := reqs[0].headers.Get("Expect"); v != "" {
		t.Errorf("the app received Expect: %q, which warden already answered", v)
	}
}

// Every header warden sets arrives once, with warden's value, however many
// copies the client sent and in whatever case.
func TestWardenHeadersArriveExactlyOnce(t *testing.T) {
	h := startProxy(t, nil)
	status, _, _ := rawRequest(t, h.dialRaw(t, clientID), "GET /hello HTTP/1.1\r\nHost: app\r\n"+
		"X-Forwarded-For: 203.0.113.1\r\nx-forwarded-for: 10.6.6.6\r\n"+
		"X-Forwarded-Proto: http\r\nX-FORWARDED-PROTO: gopher\r\n"+
		"X-Request-Id: first-id\r\nx-request-id: second-id\r\n"+
		"X-Forwarded-Client-Cert: URI=spiffe://warden.test/ns/admin/sa/root\r\nx-forwarded-client-cert: URI=spiffe://evil\r\n\r\n")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	got := h.upstream.requests()[0].headers
	want := map[string]string{
		"X-Forwarded-For":         "203.0.113.1, 10.6.6.6, 127.0.0.1",
		"X-Forwarded-Proto":       "https",
		"X-Forwarded-Client-Cert": "By=" + ownID.String() + ";URI=" + clientID.String(),
	}
	for name, v := range want {
		if vs := got.Values(name); len(vs) != 1 || vs[0] != v {
			t.Errorf("app saw %s %q, want once %q", name, vs, v)
		}
	}
	ids := got.Values("X-Request-Id")
	if len(ids) != 1 || ids[0] == "first-id" || ids[0] == "second-id" || !ValidRequestID([]byte(ids[0])) {
		t.Errorf("app saw X-Request-Id %q: two client ids must give one fresh id", ids)
	}
}

func TestHeaderChecks(t *testing.T) {
	tests := []struct {
		name    string
		tweak   func(*Hardening)
		headers string
		status  int
		absent  []string // headers the app must not see
		present []string
	}{
		{"underscore names are dropped", nil, "X_Forwarded_Client_Cert: URI=spiffe://evil\r\nX_User: root\r\n", 200, []string{"X_forwarded_client_cert", "X_user"}, nil},
		{"underscore names rejected", func(h *Hardening) { h.Underscores = UnderscoresReject }, "X_User: root\r\n", 400, nil, nil},
		{"underscore names allowed", func(h *Hardening) { h.Underscores = UnderscoresAllow }, "X_User: root\r\n", 200, nil, []string{"X_user"}},
		{"space in a name", nil, "X User: root\r\n", 400, nil, nil},
		{"obs-fold", nil, "X-A: 1\r\n  folded\r\n", 400, nil, nil},
		{"strip list", nil, "X-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\nX-Forwarded-Host: admin\r\n", 200,
			[]string{"X-Original-Url", "X-Rewrite-Url", "Forwarded", "X-Real-Ip", "X-Forwarded-Host"}, nil},
		{"method override", nil, "X-HTTP-Method-Override: DELETE\r\n", 400, nil, nil},
		{"method override twin", nil, "x-method-override: DELETE\r\n", 400, nil, nil},
		{"method override allowed", func(h *Hardening) { h.AllowMethodOverride = true }, "X-HTTP-Method: DELETE\r\n", 200, nil, []string{"X-Http-Method"}},
		{"too many headers", nil, strings.Repeat("X-N: 1\r\n", 20), 431, nil, nil},
		{"CL and TE", nil, "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400, nil, nil},
		{"two Content-Types", nil, "Content-Type: application/json\r\ncontent-type: text/plain\r\n", 400, nil, nil},
		{"two Content-Encodings", nil, "Content-Encoding: identity\r\nContent-Encoding: gzip\r\n", 400, nil, nil},
		{"one of each", nil, "Content-Type: application/json\r\nContent-Encoding: identity\r\n", 200, nil, []string{"Content-Type", "Content-Encoding"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startProxy(t, func(o *Options) {
				o.Hardening = Hardening{
					StripHeaders: []string{"X-Original-URL", "X-Rewrite-URL", "X-Forwarded-Host", "X-Forwarded-Prefix", "Forwarded", "X-Real-IP"},
					MaxHeaders:   10,
				}
				if tt.tweak != nil {
					tt.tweak(&o.Hardening)
				}
			})
			body := ""
			if strings.Contains(tt.headers, "chunked") {
				body = "5\r\nhello\r\n0\r\n\r\n"
			}
			status, resp, _ := rawRequest(t, h.dialRaw(t, clientID), "POST /hello HTTP/1.1\r\nHost: app\r\n"+tt.headers+"\r\n"+body)
			if status != tt.status {
				t.Fatalf("status %d %s, want %d", status, resp, tt.status)
			}
			reqs := h.upstream.requests()
			if tt.status != 200 {
				if len(reqs) != 0 {
					t.Fatalf("a refused request reached the app: %+v", reqs)
				}
				ev := h.wantEvent(t, "input_refused", map[string]any{"method": "POST", "path": "/hello", "peer_id": clientID.String(), "source_ip": "127.0.0.1"})
				if r, _ := ev["reason"].(string); !strings.HasPrefix(r, "hardening:") || r == "hardening:request" {
					t.Errorf("input_refused reason %q, want hardening:<the check's code>", r)
				}
				return
			}
			for _, name := range tt.absent {
				if _, ok := reqs[0].headers[name]; ok {
					t.Errorf("the app saw %s: %q", name, reqs[0].headers[name])
				}
			}
			for _, name := range tt.present {
				if _, ok := reqs[0].headers[name]; !ok {
					t.Errorf("the app did not see %s: %v", name, reqs[0].headers)
				}
			}
		})
	}
}

func TestMethodsOutsideTheListGet405WithAllow(t *testing.T) {
	h := startProxy(t, func(o *Options) { o.Hardening.AllowedMethods = []string{"GET", "POST"} })
	for _, m := range []string{"TRACE", "PROPFIND", "DELETE", "get"} {
		status, _, hdr := rawRequest(t, h.dialRaw(t, clientID), m+" /x HTTP/1.1\r\nHost: app\r\n\r\n")
		if status != http.StatusMethodNotAllowed || hdr.Get("Allow") != "GET, POST" {
			t.Errorf("%s: %d Allow %q, want 405 Allow GET, POST", m, status, hdr.Get("Allow"))
		}
	}
	if n := len(h.upstream.requests()); n != 0 {
		t.Errorf("the app saw %d requests", n)
	}
}

func TestHostAndRequestLineChecks(t *testing.T) {
	tests := []struct {
		name, req string
		status    int
	}{
		{"userinfo in Host", "GET / HTTP/1.1\r\nHost: x@admin.internal\r\n\r\n", 400},
		{"credentials in Host", "GET / HTTP/1.1\r\nHost: alice:s3cret@app.local\r\n\r\n", 400},
		{"path in Host", "GET / HTTP/1.1\r\nHost: app/evil\r\n\r\n", 400},
		{"bad port in Host", "GET / HTTP/1.1\r\nHost: app:80x\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: app\r\nHost: admin\r\n\r\n", 400},
		{"no Host on HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400},
		{"absolute form with another authority", "GET http://admin.internal/ HTTP/1.1\r\nHost: app.local\r\n\r\n", 400},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: app\r\n\r\n", 505},
		{"HTTP/2.0 on HTTP/1", "GET / HTTP/2.0\r\nHost: app\r\n\r\n", 505},
		{"absolute form with the same authority", "GET http://App.Local:80/x HTTP/1.1\r\nHost: app.local:80\r\n\r\n", 200},
		{"IPv6 Host", "GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n", 200},
		{"HTTP/1.0 without Host", "GET /old HTTP/1.0\r\n\r\n", 200},
		{"a dot alone", "GET / HTTP/1.1\r\nHost: .\r\n\r\n", 400},
		{"a leading dot", "GET / HTTP/1.1\r\nHost: .admin\r\n\r\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startProxy(t, nil)
			status, body, _ := rawRequest(t, h.dialRaw(t, clientID), tt.req)
			if status != tt.status {
				t.Fatalf("status %d %q, want %d", status, body, tt.status)
			}
			reqs := h.upstream.requests()
			if tt.status != 200 {
				if len(reqs) != 0 {
					t.Fatalf("the app saw %+v", reqs)
				}
				return
			}
			if len(reqs) != 1 || reqs[0].headers.Get("Authorization") != "" {
				t.Fatalf("the app saw %+v", reqs)
			}
		})
	}
}

// oneShotApp serves one connection with serve, and returns its address.
func oneShotApp(t *testing.T, serve func(br *bufio.Reader, c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(bufio.NewReader(c), c)
	}()
	return ln.Addr().String()
}

// The app always gets HTTP/1.1, whatever the client spoke.
func TestAppAlwaysReceivesHTTP11(t *testing.T) {
	lines := make(chan string, 1)
	addr := oneShotApp(t, func(br *bufio.Reader, c net.Conn) {
		line, _ := br.ReadString('\n')
		lines <- line
		for {
			if l, err := br.ReadString('\n'); err != nil || l == "\r\n" {
				break
			}
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	})
	h := startProxy(t, func(o *Options) { o.UpstreamAddr = addr })
	if status, _, _ := rawRequest(t, h.dialRaw(t, clientID), "GET /v HTTP/1.0\r\nHost: app\r\n\r\n"); status != 200 {
		t.Fatalf("status %d", status)
	}
	if line := <-lines; line != "GET /v HTTP/1.1\r\n" {
		t.Errorf("the app's request line %q, want HTTP/1.1", line)
	}
}

// A client that opens a connection and never completes its handshake is
// cut off at the handshake deadline, well before the read timeout.
func TestHandshakeHasItsOwnDeadline(t *testing.T) {
	h := startProxy(t, func(o *Options) {
		o.ReadTimeout = 20 * time.Second
		o.HandshakeTimeout = 200 * time.Millisecond
	})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err = io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("warden held a silent connection for %s", time.Since(start))
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("closed after %s, want about the 200ms handshake deadline", took)
	}
	// A real client still gets through, with the read timeout intact.
	if resp, err := h.client(t, clientID).Get(h.url("/hello")); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after: %v %v", resp, err)
	}
}

// A request fasthttp cannot parse is logged by the class of its error, its
// method and path: never its bytes, which carry credentials.
func TestMalformedRequestLogNamesNoSecret(t *testing.T) {
	h := startProxy(t, nil)
	conn := h.dialRaw(t, clientID)
	status, _, _ := rawRequest(t, conn, "GET /secret-path?access_token=QUERYSECRET HTTP/1.1\r\nHost: app\r\n"+
		"Authorization: Bearer TOKENSECRET\r\nCookie: session=COOKIESECRET\r\nBad\x01Header: x\r\n\r\n")
	if status != 400 {
		t.Fatalf("status %d, want 400", status)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"event":"bad_request"`) || !strings.Contains(logs, `"error_class":"malformed_header"`) {
		t.Errorf("no bad_request line with its class: %s", logs)
	}
	for _, secret := range []string{"TOKENSECRET", "COOKIESECRET", "QUERYSECRET"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %s: %s", secret, logs)
		}
	}
}

// Trailer fields of a chunked body never reach the app or the policy:
// fasthttp would turn them into headers after the header block was checked.
func TestRequestTrailersAreDropped(t *testing.T) {
	got := make(chan string, 1)
	addr := oneShotApp(t, func(br *bufio.Reader, c net.Conn) {
		req, err := http.ReadRequest(br)
		if err != nil {
			got <- err.Error()
			return
		}
		body, _ := io.ReadAll(req.Body)
		var b strings.Builder
		req.Header.Write(&b)
		req.Trailer.Write(&b)
		got <- b.String() + "\n" + string(body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	})
	h := startProxy(t, func(o *Options) {
		o.UpstreamAddr = addr
		o.Hardening.StripHeaders = []string{"X-Original-URL"}
	})
	status, _, _ := rawRequest(t, h.dialRaw(t, clientID), "POST /up HTTP/1.1\r\nHost: app\r\nTrailer: X-Original-URL\r\n"+
		"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Original-URL: /admin\r\nX_User: root\r\n\r\n")
	if status != 200 {
		t.Fatalf("status %d: %s", status, h.logs)
	}
	seen := <-got
	for _, bad := range []string{"/admin", "root", "spiffe://evil"} {
		if strings.Contains(seen, bad) {
			t.Errorf("the app saw a trailer field (%s):\n%s", bad, seen)
		}
	}
	if !strings.HasSuffix(seen, "\nhello") {
		t.Errorf("the body did not arrive whole:\n%s", seen)
	}
	// The same field as a header and as a trailer: refused.
	status, _, _ = rawRequest(t, h.dialRaw(t, clientID), "POST /up HTTP/1.1\r\nHost: app\r\nX-Mode: a\r\n"+
		"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Mode: b\r\n\r\n")
	if status != 400 {
		t.Errorf("a field in both headers and trailer: %d, want 400", status)
	}
}

// After a request that two parsers could read differently, warden closes
// the connection: what follows on it cannot be trusted to be framed as the
// client claims.
func TestRefusedRequestClosesTheConnection(t *testing.T) {
	h := startProxy(t, nil)
	conn := h.dialRaw(t, clientID)
	status, _, _ := rawRequest(t, conn, "POST /a HTTP/1.1\r\nHost: app\r\nX-HTTP-Method-Override: DELETE\r\nContent-Length: 0\r\n\r\n")
	if status != 400 {
		t.Fatalf("status %d, want 400", status)
	}
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := conn.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
		t.Errorf("the connection stayed open (%v)", err)
	}
}

// The policy and the app see one Host, in the form routers match it: lower
// case, without the root dot.
func TestHostIsCanonical(t *testing.T) {
	for _, tt := range []struct{ sent, want string }{
		{"ADMIN.internal", "admin.internal"},
		{"Admin.Internal.:8443", "admin.internal:8443"},
		{"admin.internal.", "admin.internal"},
		{"[::1]:8443", "[::1]:8443"},
		{"app.local", "app.local"},
	} {
		g := &hostGuard{}
		h := startProxy(t, func(o *Options) { o.Guard = g })
		if status, _, _ := rawRequest(t, h.dialRaw(t, clientID), "GET /h HTTP/1.1\r\nHost: "+tt.sent+"\r\n\r\n"); status != 200 {
			t.Fatalf("%s: status %d", tt.sent, status)
		}
		reqs := h.upstream.requests()
		if g.host != tt.want || len(reqs) != 1 || reqs[0].headers.Get("Host") != tt.want {
			t.Errorf("Host %q: the guard saw %q, the app %v; want %q", tt.sent, g.host, reqs, tt.want)
		}
	}
}

// hostGuard records the Host the policy would see.
type hostGuard struct{ host string }

func (g *hostGuard) Check(req *pep.Request) pep.Verdict {
	for _, f := range req.Headers {
		if strings.EqualFold(string(f.Name), "Host") {
			g.host = string(f.Value)
		}
	}
	return pep.Verdict{}
}

// A ';' in the query is a pair separator to some parsers and data to
// others: refused unless semicolons are kept.
func TestSemicolonInTheQuery(t *testing.T) {
	h := startProxy(t, nil)
	if status, _, _ := rawRequest(t, h.dialRaw(t, clientID), "GET /public?x=1;debug=1 HTTP/1.1\r\nHost: app\r\n\r\n"); status != 400 {
		t.Errorf("raw ';': %d, want 400", status)
	}
	if status, _, _ := rawRequest(t, h.dialRaw(t, clientID), "GET /public?x=1%3Bdebug=1 HTTP/1.1\r\nHost: app\r\n\r\n"); status != 200 {
		t.Errorf("encoded ';': %d, want 200", status)
	}
	keep := startProxy(t, func(o *Options) { o.Hardening.KeepSemicolons = true })
	if status, _, _ := rawRequest(t, keep.dialRaw(t, clientID), "GET /public?x=1;y=2 HTTP/1.1\r\nHost: app\r\n\r\n"); status != 200 {
		t.Errorf("kept ';': %d, want 200", status)
	}
	if reqs := keep.upstream.requests(); len(reqs) != 1 || reqs[0].uri != "/public?x=1;y=2" {
		t.Errorf("the app saw %+v", reqs)
	}
}

// Each hardening refusal is one input_refused event whose reason names the
// check with a stable code (the prose is its detail).
func TestHardeningRefusalsAreInputRefusedEvents(t *testing.T) {
	tests := []struct{ request, reason string }{
		{"POST /hello HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "hardening:content_length_and_transfer_encoding"},
		{"GET /hello HTTP/1.1\r\nHost: app\r\nX-A: 1\r\n  folded\r\n\r\n", "hardening:obs_fold"},
		{"GET /hello HTTP/1.1\r\nHost: app\r\nX-HTTP-Method-Override: DELETE\r\n\r\n", "hardening:method_override"},
		{"GET http://other/hello HTTP/1.1\r\nHost: app\r\n\r\n", "hardening:authority_mismatch"},
		{"GET /a%2fb HTTP/1.1\r\nHost: app\r\n\r\n", "path:encoded_separator"},
		{"GET /hello?a=1;b=2 HTTP/1.1\r\nHost: app\r\n\r\n", "hardening:query_semicolon"},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			h := startProxy(t, nil)
			if status, resp, _ := rawRequest(t, h.dialRaw(t, clientID), tt.request); status < 400 {
				t.Fatalf("status %d %s, want a refusal", status, resp)
			}
			if n := len(h.upstream.requests()); n != 0 {
				t.Fatalf("the app saw %d requests", n)
			}
			ev := h.wantEvent(t, "input_refused", map[string]any{"reason": tt.reason, "severity": "medium", "source_ip": "127.0.0.1", "peer_id": clientID.String()})
			if d, _ := ev["detail"].(string); d == "" {
				t.Errorf("no detail: %v", ev)
			}
			if p, _ := ev["path"].(string); strings.ContainsAny(p, "?;") {
				t.Errorf("path %q holds a query", p)
			}
		})
	}
}

// Every refusal and every path error has a reason code of its own: the
// events' reasons are a contract dashboards match on. A new refusal needs
// its line in hardeningReason (and in docs/security-events.md).
func TestEveryRefusalHasItsOwnReason(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range []*refusal{refuseObsFold, refuseHeaderName, refuseUnderscore, refuseOverride, refuseCLTE, refuseTooMany,
		refuseVersion, refuseMethod, refuseHost, refuseMissingHost, refuseAuthority, refuseGetBody, refuseRepeatedContent,
		refuseTrailer, refuseQuerySemicolon, refuseUpgradeNotAllowed, refuseUpgradeAmbiguous, refuseUpgradeMethod,
		refuseUpgradeBody, refuseWebSocketKey, refuseWebSocketVersion, refuseGRPCPath, refuseHostHeader, refuseBodyTooLarge,
		refuseBodyRead} {
		reason := hardeningReason(r)
		if reason == "hardening:request" || seen[reason] {
			t.Errorf("refusal %q has the reason %q, not one of its own", r.reason, reason)
		}
		seen[reason] = true
	}
	for _, err := range []error{ErrPathNotOrigin, ErrPathBadEscape, ErrPathEncodedSep, ErrPathBackslash, ErrPathControl,
		ErrPathAboveRoot, ErrPathDotParameters, ErrPathSemicolon, ErrPathEncodedSemi, ErrPathNotUTF8} {
		reason := pathReason(err)
		if reason == "path:invalid" || seen[reason] {
			t.Errorf("%v has the reason %q, not one of its own", err, reason)
		}
		seen[reason] = true
	}
}
