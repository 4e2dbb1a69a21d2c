package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/internal/secevent"
	"github.com/warden-sidecar/warden/spiffe"
)

var (
	ownID      = spiffeid.RequireFromString("spiffe://warden.test/ns/default/sa/app")
	clientID   = spiffeid.RequireFromString("spiffe://warden.test/ns/default/sa/client")
	intruderID = spiffeid.RequireFromString("spiffe://warden.test/ns/other/sa/intruder")
)

// upstream is a real fasthttp app on loopback that records what reached it.
type upstream struct {
	addr string
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method, path string
	uri          string // the request target as received
	headers      http.Header
	body         []byte
}

func (u *upstream) requests() []recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]recorded(nil), u.reqs...)
}

func startUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		rec := recorded{method: string(ctx.Method()), path: string(ctx.Path()), uri: string(ctx.Request.Header.RequestURI()), headers: http.Header{}, body: append([]byte(nil), ctx.PostBody()...)}
		for k, v := range ctx.Request.Header.All() {
			rec.headers.Add(string(k), string(v))
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, rec)
		u.mu.Unlock()
		switch string(ctx.Path()) {
		case "/slow":
			time.Sleep(700 * time.Millisecond)
			ctx.SetBodyString("slow done")
		case "/big":
			ctx.SetBody(bigBody)
		case "/hop":
			ctx.Response.Header.Set("Connection", "X-Internal")
			ctx.Response.Header.Set("X-Internal", "secret")
			ctx.Response.Header.Set("Keep-Alive", "timeout=5")
			ctx.SetBodyString("hop")
		default:
			ctx.Response.Header.Set("X-App", "demo")
			fmt.Fprintf(ctx, "hello %s %s", ctx.Method(), ctx.Path())
		}
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return u
}

var bigBody = []byte(strings.Repeat("0123456789abcdef", 1<<19)) // 8 MiB

type harness struct {
	ca       *spiffe.DevCA
	addr     string
	upstream *upstream
	srv      *Server
	logs     *syncBuffer
	events   *syncBuffer // the security events (Options.Events)
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func defaultOptions(upstreamAddr string) Options {
	return Options{
		UpstreamAddr:        upstreamAddr,
		UpstreamTimeout:     300 * time.Millisecond,
		UpstreamMaxConns:    64,
		UpstreamAffinity:    true,
		ReadTimeout:         2 * time.Second,
		WriteTimeout:        2 * time.Second,
		IdleTimeout:         5 * time.Second,
		MaxHeaderBytes:      4096,
		MaxRequestBodyBytes: 64 << 10,
		MaxConnections:      100,
		OwnID:               func() spiffeid.ID { return ownID },
	}
}

func startProxy(t testing.TB, tweak func(*Options)) *harness {
	t.Helper()
	ca, err := spiffe.LoadOrCreateDevCA(t.TempDir(), ownID.TrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	src, err := spiffe.NewDevSource(ca, ownID, nil)
	if err != nil {
		t.Fatal(err)
	}
	peers, err := spiffe.ParsePeerMatcher("spiffe://warden.test/ns/default/*", ownID.TrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{ca: ca, upstream: startUpstream(t), logs: &syncBuffer{}, events: &syncBuffer{}}
	opts := defaultOptions(h.upstream.addr)
	opts.AllowPeer = peers.Allowed
	opts.Log = zerolog.New(h.logs)
	opts.Events = secevent.New(h.events, func() string { return ownID.String() })
	if tweak != nil {
		tweak(&opts)
	}
	h.srv = New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	cfg := spiffe.ServerTLSConfig(src, src)
	if opts.HTTP2 {
		cfg.NextProtos = []string{ProtoH2, ProtoHTTP11}
	}
	go func() {
		_ = h.srv.Serve(NewListener(ln, cfg, opts.Limiter, opts.HandshakeTimeout))
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = h.srv.Shutdown(ctx)
	})
	return h
}

// clientTLS is the TLS config of a client holding an SVID for id that
// expects warden to be ownID.
func (h *harness) clientTLS(t testing.TB, id spiffeid.ID) *tls.Config {
	t.Helper()
	svid, err := h.ca.Issue(id, spiffe.IssueOptions{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return spiffe.ClientTLSConfig(svid, h.ca.Bundle(), tlsconfig.AuthorizeID(ownID))
}

func (h *harness) client(t *testing.T, id spiffeid.ID) *http.Client {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: h.clientTLS(t, id)}, Timeout: 5 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func (h *harness) url(path string) string { return "https://" + h.addr + path }

type errorBody struct {
	Error     string `json:"error"`
	RequestID string `json:"request_id"`
}

func readError(t *testing.T, resp *http.Response) errorBody {
	t.Helper()
	defer resp.Body.Close()
	var body errorBody
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", raw, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	if body.RequestID == "" || resp.Header.Get("X-Request-Id") != body.RequestID {
		t.Errorf("error request_id %q, X-Request-Id header %q: want the same, non-empty", body.RequestID, resp.Header.Get("X-Request-Id"))
	}
	return body
}

func TestAllowedPeerReachesAppWithWardenHeaders(t *testing.T) {
	h := startProxy(t, nil)
	req, _ := http.NewRequest(http.MethodGet, h.url("/hello?x=1"), nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	resp, err := h.client(t, clientID).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello GET /hello" {
		t.Fatalf("got %d %q, want 200 from the app", resp.StatusCode, body)
	}
	if resp.Header.Get("X-App") != "demo" {
		t.Errorf("app's response header lost: %v", resp.Header)
	}
	reqs := h.upstream.requests()
	if len(reqs) != 1 {
		t.Fatalf("app saw %d requests, want 1", len(reqs))
	}
	got := reqs[0].headers
	want := map[string]string{
		"X-Forwarded-Client-Cert": "By=" + ownID.String() + ";URI=" + clientID.String(),
		"X-Forwarded-For":         "203.0.113.7, 127.0.0.1",
		"X-Forwarded-Proto":       "https",
	}
	for k, v := range want {
		if got.Get(k) != v {
			t.Errorf("app saw %s = %q, want %q", k, got.Get(k), v)
		}
	}
	id := got.Get("X-Request-Id")
	if !ValidRequestID([]byte(id)) || resp.Header.Get("X-Request-Id") != id {
		t.Errorf("generated request id %q (response %q): want a valid id echoed to the client", id, resp.Header.Get("X-Request-Id"))
	}
	if !strings.Contains(h.logs.String(), `"event":"access"`) || !strings.Contains(h.logs.String(), `"peer_id":"`+clientID.String()+`"`) {
		t.Errorf("no access log line with the peer id: %s", h.logs)
	}
}

func TestSpoofedIdentityHeadersAreReplaced(t *testing.T) {
	h := startProxy(t, nil)
	conn := h.dialRaw(t, clientID)
	// Two forged XFCC headers in odd casing, and a Connection header that
	// tries to make warden drop its own X-Forwarded-Client-Cert afterwards.
	fmt.Fprint(conn, "GET /hello HTTP/1.1\r\nHost: app\r\n"+
		"x-forwarded-client-cert: By=spiffe://warden.test/x;URI=spiffe://warden.test/ns/admin/sa/root\r\n"+
		"X-FORWARDED-CLIENT-CERT: URI=spiffe://evil.test/root\r\n"+
		"X-Request-Id: client-chosen-id.42\r\n"+
		"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=9\r\nProxy-Authorization: Basic c2VjcmV0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	reqs := h.upstream.requests()
	if len(reqs) != 1 {
		t.Fatalf("app saw %d requests, want 1", len(reqs))
	}
	got := reqs[0].headers
	if v := got.Values("X-Forwarded-Client-Cert"); len(v) != 1 || v[0] != "By="+ownID.String()+";URI="+clientID.String() {
		t.Errorf("app saw XFCC %q, want only warden's", v)
	}
	if got.Get("X-Request-Id") != "client-chosen-id.42" {
		t.Errorf("valid client request id not kept: %q", got.Get("X-Request-Id"))
	}
	for _, hop := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization"} {
		if got.Get(hop) != "" {
			t.Errorf("hop-by-hop header %s reached the app: %q", hop, got.Get(hop))
		}
	}
}

func TestInvalidRequestIDIsReplaced(t *testing.T) {
	h := startProxy(t, nil)
	for _, bad := range []string{`x"}{"admin":true`, strings.Repeat("a", MaxRequestIDLen+1), "id with spaces"} {
		req, _ := http.NewRequest(http.MethodGet, h.url("/"), nil)
		req.Header.Set("X-Request-Id", bad)
		resp, err := h.client(t, clientID).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Request-Id"); got == bad || !ValidRequestID([]byte(got)) {
			t.Errorf("request id %q came back as %q, want a fresh valid one", bad, got)
		}
	}
}

func TestResponseHopByHopHeadersRemoved(t *testing.T) {
	h := startProxy(t, nil)
	resp, err := h.client(t, clientID).Get(h.url("/hop"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Internal") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("hop-by-hop response headers reached the client: %v", resp.Header)
	}
}

func TestRefusedPeerGets403AndAppSeesNothing(t *testing.T) {
	h := startProxy(t, nil)
	resp, err := h.client(t, intruderID).Get(h.url("/hello"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", resp.StatusCode)
	}
	if e := readError(t, resp); e.Error != "peer_not_allowed" {
		t.Errorf("error code %q, want peer_not_allowed", e.Error)
	}
	if n := len(h.upstream.requests()); n != 0 {
		t.Errorf("app saw %d requests from a refused peer", n)
	}
	if !strings.Contains(h.logs.String(), `"event":"access","method":"GET","path":"/hello","status":403`) {
		t.Errorf("refused request not in the access log with its path: %s", h.logs)
	}
	h.wantEvent(t, "peer_denied", map[string]any{"severity": "high", "reason": "peer_not_allowed", "peer_id": intruderID.String(),
		"source_ip": "127.0.0.1", "method": "GET", "path": "/hello", "request_id": resp.Header.Get("X-Request-Id")})
	if strings.Contains(h.logs.String(), "peer_refused") {
		t.Errorf("the old peer_refused line is still written: %s", h.logs)
	}
}

func TestPeerFromUntrustedDomainFailsHandshake(t *testing.T) {
	h := startProxy(t, nil)
	other, err := spiffe.LoadOrCreateDevCA(t.TempDir(), spiffeid.RequireTrustDomainFromString("evil.test"))
	if err != nil {
		t.Fatal(err)
	}
	svid, err := other.Issue(spiffeid.RequireFromString("spiffe://evil.test/ns/default/sa/client"), spiffe.IssueOptions{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cfg := spiffe.ClientTLSConfig(svid, h.ca.Bundle(), tlsconfig.AuthorizeID(ownID))
	if err := handshake(h.addr, cfg); err == nil {
		t.Fatal("handshake with an SVID from an untrusted CA succeeded")
	}
	if n := len(h.upstream.requests()); n != 0 {
		t.Errorf("app saw %d requests", n)
	}
}

func TestClientWithoutCertificateFailsHandshake(t *testing.T) {
	h := startProxy(t, nil)
	cfg := tlsconfig.TLSClientConfig(h.ca.Bundle(), tlsconfig.AuthorizeID(ownID))
	if err := handshake(h.addr, cfg); err == nil {
		t.Fatal("handshake without a client certificate succeeded")
	}
	if !eventually(func() bool { return len(h.eventsNamed(t, "tls_handshake_failed")) > 0 }) {
		t.Fatalf("failed handshake not logged: %s", h.events)
	}
	h.wantEvent(t, "tls_handshake_failed", map[string]any{"severity": "low", "reason": "tls:error", "source_ip": "127.0.0.1"})
}

// eventsNamed parses the security events named name written so far.
func (h *harness) eventsNamed(t *testing.T, name string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(h.events.String()), "\n") {
		if line == "" {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("security event %q is not JSON: %v", line, err)
		}
		if ev["event_type"] != "security" {
			t.Errorf("event without event_type security: %s", line)
		}
		if ev["event"] == name {
			out = append(out, ev)
		}
	}
	return out
}

// wantEvent checks that exactly one event named name was written, with the
// fields want, and warden's own SPIFFE ID.
func (h *harness) wantEvent(t *testing.T, name string, want map[string]any) map[string]any {
	t.Helper()
	evs := h.eventsNamed(t, name)
	if len(evs) != 1 {
		t.Fatalf("%d %s events, want 1:\n%s", len(evs), name, h.events)
	}
	ev := evs[0]
	want["spiffe_id"] = ownID.String()
	for k, v := range want {
		if ev[k] != v {
			t.Errorf("%s: %s = %v, want %v", name, k, ev[k], v)
		}
	}
	return ev
}

// handshake completes a TLS handshake and one read, which is where a TLS 1.3
// client learns that the server refused its certificate.
func handshake(addr string, cfg *tls.Config) error {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func TestUpstreamDownGives502(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	h := startProxy(t, func(o *Options) { o.UpstreamAddr = dead })
	resp, err := h.client(t, clientID).Get(h.url("/hello"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	e := readError(t, resp)
	if e.Error != "upstream_unavailable" {
		t.Errorf("error %q, want upstream_unavailable", e.Error)
	}
	if strings.Contains(fmt.Sprint(e), dead) {
		t.Errorf("client learned the upstream address: %+v", e)
	}
}

func TestSlowUpstreamGives504(t *testing.T) {
	h := startProxy(t, nil) // upstream timeout 300ms; /slow takes 700ms
	resp, err := h.client(t, clientID).Get(h.url("/slow"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504", resp.StatusCode)
	}
	if e := readError(t, resp); e.Error != "upstream_timeout" {
		t.Errorf("error %q, want upstream_timeout", e.Error)
	}
	if n := len(h.upstream.requests()); n != 1 {
		t.Errorf("app saw %d requests: a timed-out request must not be retried", n)
	}
}

func TestBodyOverLimitGives413(t *testing.T) {
	h := startProxy(t, nil) // limit 64 KiB
	for _, chunked := range []bool{false, true} {
		body := io.Reader(strings.NewReader(strings.Repeat("x", 65<<10)))
		if chunked {
			body = io.MultiReader(body) // unknown length: sent chunked
		}
		req, _ := http.NewRequest(http.MethodPost, h.url("/upload"), body)
		resp, err := h.client(t, clientID).Do(req)
		if err != nil {
			t.Fatalf("chunked=%v: %v", chunked, err)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked=%v: status %d, want 413", chunked, resp.StatusCode)
		}
		if e := readError(t, resp); e.Error != "body_too_large" {
			t.Errorf("error %q, want body_too_large", e.Error)
		}
	}
	if n := len(h.upstream.requests()); n != 0 {
		t.Errorf("app saw %d oversized requests", n)
	}
	// A body within the limit passes whole.
	resp, err := h.client(t, clientID).Post(h.url("/upload"), "text/plain", strings.NewReader(strings.Repeat("y", 60<<10)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if reqs := h.upstream.requests(); resp.StatusCode != 200 || len(reqs) != 1 || len(reqs[0].body) != 60<<10 {
		t.Errorf("body within the limit: status %d, app saw %d requests", resp.StatusCode, len(reqs))
	}
}

func TestHeadersOverLimitGive431(t *testing.T) {
	h := startProxy(t, nil) // 4 KiB header limit
	req, _ := http.NewRequest(http.MethodGet, h.url("/hello"), nil)
	req.Header.Set("X-Big", strings.Repeat("h", 8<<10))
	resp, err := h.client(t, clientID).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
	if e := readError(t, resp); e.Error != "headers_too_large" {
		t.Errorf("error %q, want headers_too_large", e.Error)
	}
	if n := len(h.upstream.requests()); n != 0 {
		t.Errorf("app saw %d requests", n)
	}
}

func TestLargeResponseStreamsWhole(t *testing.T) {
	// The upstream timeout covers the whole response, as Envoy's route
	// timeout does: give the 8 MiB time under the race detector.
	h := startProxy(t, func(o *Options) { o.UpstreamTimeout = 20 * time.Second })
	resp, err := h.client(t, clientID).Get(h.url("/big"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(got) != string(bigBody) {
		t.Fatalf("status %d, %d of %d bytes, err %v", resp.StatusCode, len(got), len(bigBody), err)
	}
}

// A request smuggling attempt: Content-Length and Transfer-Encoding together,
// with a second request hidden in the chunked body. The app must see one
// request with the chunked body, framed unambiguously, and never the hidden one.
func TestSmuggledRequestNeverReachesApp(t *testing.T) {
	h := startProxy(t, nil)
	conn := h.dialRaw(t, clientID)
	smuggled := "GET /admin HTTP/1.1\r\nHost: app\r\n\r\n"
	chunk := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled)
	fmt.Fprintf(conn, "POST /form HTTP/1.1\r\nHost: app\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n%s", chunk)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	t.Logf("CL+TE request answered with %d", resp.StatusCode)
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if extra, err := http.ReadResponse(br, nil); err == nil {
		extra.Body.Close()
		t.Errorf("a second response came back: the hidden request was served (%d)", extra.StatusCode)
	}
	for _, r := range h.upstream.requests() {
		if r.path == "/admin" {
			t.Fatalf("smuggled request reached the app: %+v", r)
		}
	}
	if reqs := h.upstream.requests(); resp.StatusCode == 200 && (len(reqs) != 1 || string(reqs[0].body) != smuggled) {
		t.Errorf("app saw %+v, want one POST carrying the chunked body", reqs)
	}
}

func TestSlowClientIsDisconnected(t *testing.T) {
	h := startProxy(t, func(o *Options) { o.ReadTimeout = 300 * time.Millisecond })
	conn := h.dialRaw(t, clientID)
	// Half a request line, then silence (slowloris).
	fmt.Fprint(conn, "GET /hel")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("warden kept a silent client open for %s", time.Since(start))
	}
	if n := len(h.upstream.requests()); n != 0 {
		t.Errorf("app saw %d requests", n)
	}
}

func TestReconnectingClientResumesSession(t *testing.T) {
	h := startProxy(t, nil)
	cfg := h.clientTLS(t, clientID)
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	if err := handshake(h.addr, cfg); err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", h.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	resumed := conn.ConnectionState().DidResume
	conn.Close()
	if !resumed {
		t.Fatal("second connection did not resume the session: handshake reuse is off")
	}
}

func (h *harness) dialRaw(t *testing.T, id spiffeid.ID) *tls.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", h.addr, h.clientTLS(t, id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	return conn
}

func eventually(cond func() bool) bool {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

var (
	_ x509bundle.Source = (*spiffe.DevSource)(nil)
	_ x509svid.Source   = (*spiffe.DevSource)(nil)
)

func TestAppSeesTheNormalizedPath(t *testing.T) {
	h := startProxy(t, nil)
	conn := h.dialRaw(t, clientID)
	br := bufio.NewReader(conn)
	for _, tt := range []struct{ raw, want string }{
		{"/a//b/./c/../d?x=%2F&y=1", "/a/b/d?x=%2F&y=1"},
		{"/api/%61dmin", "/api/admin"},
		{"/caf%c3%a9", "/caf%C3%A9"},
	} {
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: app\r\n\r\n", tt.raw)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		reqs := h.upstream.requests()
		last := reqs[len(reqs)-1]
		if resp.StatusCode != 200 || last.uri != tt.want {
			t.Errorf("%q: status %d, app saw %q, want %q", tt.raw, resp.StatusCode, last.uri, tt.want)
		}
	}
}

func TestAmbiguousPathGets400BeforeTheApp(t *testing.T) {
	h := startProxy(t, nil)
	for _, raw := range []string{"/public/..;/admin", "/a%2F..%2Fadmin", "/../etc/passwd", "/a%252e%252e/x", "/a%00"} {
		conn := h.dialRaw(t, clientID)
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: app\r\n\r\n", raw)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: status %d, want 400", raw, resp.StatusCode)
		}
		if e := readError(t, resp); e.Error != "bad_request" {
			t.Errorf("%q: error %q", raw, e.Error)
		}
	}
	if n := len(h.upstream.requests()); n != 0 {
		t.Errorf("app saw %d requests with ambiguous paths", n)
	}
}

// pathGuard denies paths under /admin and tags what it allows, trying to
// replace warden's own identity header too.
type pathGuard struct{ seen []string }

func (g *pathGuard) Check(req *pep.Request) pep.Verdict {
	g.seen = append(g.seen, string(req.Path)+" "+req.PeerID)
	if strings.HasPrefix(string(req.Path), "/admin") {
		return pep.Verdict{Status: http.StatusUnauthorized, Code: "unauthorized",
			ClientHeaders: []pep.Header{{Name: "WWW-Authenticate", Value: "Bearer"}}}
	}
	return pep.Verdict{AppHeaders: []pep.Header{{Name: "X-Policy", Value: "checked"}, {Name: "x-forwarded-client-cert", Value: "forged"}}}
}

func TestGuardDecidesOnTheNormalizedPath(t *testing.T) {
	g := &pathGuard{}
	h := startProxy(t, func(o *Options) { o.Guard = g })
	client := h.client(t, clientID)
	resp, err := client.Get(h.url("/public/%2e%2e/admin/users"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "Bearer" || readError(t, resp).Error != "unauthorized" {
		t.Fatalf("status %d, challenge %q: want the guard's 401 with its header", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	resp, err = client.Get(h.url("/public/x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := h.upstream.requests()
	if resp.StatusCode != 200 || len(reqs) != 1 || reqs[0].headers.Get("X-Policy") != "checked" {
		t.Fatalf("allowed request: status %d, app saw %+v", resp.StatusCode, reqs)
	}
	if xfcc := reqs[0].headers.Values("X-Forwarded-Client-Cert"); len(xfcc) != 1 || xfcc[0] == "forged" {
		t.Errorf("a verdict replaced warden's identity header: %q", xfcc)
	}
	want := []string{"/admin/users " + clientID.String(), "/public/x " + clientID.String()}
	if strings.Join(g.seen, ",") != strings.Join(want, ",") {
		t.Errorf("guard saw %q, want %q", g.seen, want)
	}
}

// Framing attacks beyond CL+TE: whatever warden answers, the app sees at
// most the one outer request, and no hidden request is ever answered.
func TestAmbiguousFramingNeverSmuggles(t *testing.T) {
	hidden := "GET /admin HTTP/1.1\r\nHost: app\r\n\r\n"
	tests := []struct{ name, req string }{
		{"two different Content-Lengths", "POST /form HTTP/1.1\r\nHost: app\r\nContent-Length: 0\r\nContent-Length: 34\r\n\r\n" + hidden},
		{"Content-Length list", "POST /form HTTP/1.1\r\nHost: app\r\nContent-Length: 0, 34\r\n\r\n" + hidden},
		{"obfuscated Transfer-Encoding", "POST /form HTTP/1.1\r\nHost: app\r\nContent-Length: 34\r\nTransfer-Encoding: xchunked\r\n\r\n" + hidden},
		{"chunked not last", "POST /form HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked, identity\r\nContent-Length: 0\r\n\r\n" + hidden},
		{"space before colon", "POST /form HTTP/1.1\r\nHost: app\r\nTransfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n" + hidden},
		// Bare LF framing, the hidden request as the body: warden re-frames
		// with CRLF and Content-Length, so the app cannot read it as a request.
		{"bare LF line endings", "POST /form HTTP/1.1\nHost: app\nContent-Length: 34\n\n" + hidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startProxy(t, nil)
			conn := h.dialRaw(t, clientID)
			fmt.Fprint(conn, tt.req)
			br := bufio.NewReader(conn)
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			answers := 0
			for {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					break
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				answers++
				_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			}
			for _, r := range h.upstream.requests() {
				if r.path == "/admin" {
					t.Fatalf("hidden request reached the app (%d answers)", answers)
				}
			}
			if n := len(h.upstream.requests()); n > 1 || answers > 1 {
				t.Errorf("app saw %d requests, client got %d answers: want at most one each", n, answers)
			}
		})
	}
}
