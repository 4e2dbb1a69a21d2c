package main

// HTTP/2 without gRPC through the real binary: the same port, the same
// decisions and the same headers as HTTP/1.1; the ALPN switches; the
// protocol to the app.

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/internal/testenv"
)

// h1Do sends one request over a new HTTP/1.1 connection (ALPN http/1.1).
func h1Do(t *testing.T, addr string, cfg *tls.Config, method, path string, body []byte, fields ...string) h2Response {
	t.Helper()
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequest(method, "https://"+addr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(fields); i += 2 {
		req.Header.Add(fields[i], fields[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := tr.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s over HTTP/1.1: %v", method, path, err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Fatalf("HTTP/1.1 client got %s", resp.Proto)
	}
	b, _ := io.ReadAll(resp.Body)
	return h2Response{status: resp.StatusCode, header: resp.Header, trailer: resp.Trailer, body: b}
}

// An HTTP/2 client and an HTTP/1.1 client on the same port get the same
// answers, and the app receives the same request from both: the identity
// headers warden owns, the normalized path, the hardening refusals and the
// body limit are one pipeline.
func TestHTTP2SameDecisionsAsHTTP1(t *testing.T) {
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_POLICY_BUNDLE="+policyDir(t, desyncPolicy), "WARDEN_MAX_REQUEST_BODY_BYTES=1024")
	wantXFCC := "By=spiffe://warden.local/ns/default/sa/app;URI=spiffe://warden.local/ns/default/sa/client"
	protocols := []struct {
		name string
		do   func(t *testing.T, addr string, cfg *tls.Config, method, path string, body []byte, fields ...string) h2Response
	}{{"HTTP/1.1", h1Do}, {"HTTP/2", h2Do}}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			before := app.received()
			r := p.do(t, s.addr, s.tls, "GET", "/x/../public?q=1", nil,
				"X-Forwarded-Client-Cert", "By=forged;URI=spiffe://warden.local/ns/default/sa/admin",
				"X-Forwarded-For", "203.0.113.7", "X-Request-Id", "client-id-1", "X-Forwarded-Proto", "http")
			if r.status != 200 || string(r.body) != "app answered /public?q=1" || r.header.Get("X-Request-Id") != "client-id-1" {
				t.Fatalf("allowed request: %d %q, request id %q", r.status, r.body, r.header.Get("X-Request-Id"))
			}
			got := app.last(t)
			if got.target != "/public?q=1" || got.proto != "HTTP/1.1" {
				t.Errorf("the app got %q", got.line)
			}
			for name, want := range map[string]string{
				"X-Forwarded-Client-Cert": wantXFCC, "X-Forwarded-For": "203.0.113.7, 127.0.0.1",
				"X-Request-Id": "client-id-1", "X-Forwarded-Proto": "https",
			} {
				if v := got.values(name); len(v) != 1 || v[0] != want {
					t.Errorf("the app got %s %q, want exactly %q", name, v, want)
				}
			}

			refusals := []struct {
				what         string
				method, path string
				body         []byte
				fields       []string
				status       int
				code         string
			}{
				{"the policy's denial", "GET", "/admin/secret", nil, nil, 403, "forbidden"},
				{"a method override", "GET", "/public", nil, []string{"X-HTTP-Method-Override", "DELETE"}, 400, "bad_request"},
				{"an ambiguous path", "GET", "/public/%2e%2e%2fadmin", nil, nil, 400, "bad_request"},
				{"a body on GET", "GET", "/public", []byte("GET /admin/secret HTTP/1.1\r\n\r\n"), nil, 400, "bad_request"},
				{"a body over WARDEN_MAX_REQUEST_BODY_BYTES", "POST", "/public", make([]byte, 2048), nil, 413, "body_too_large"},
				{"a method outside WARDEN_ALLOWED_METHODS", "TRACE", "/public", nil, nil, 405, "method_not_allowed"},
			}
			for _, rf := range refusals {
				n := app.received()
				r := p.do(t, s.addr, s.tls, rf.method, rf.path, rf.body, rf.fields...)
				a := answer{status: r.status, body: string(r.body)}
				wantRefused(t, rf.what, a, rf.status, rf.code)
				if r.header.Get("X-Request-Id") == "" || r.header.Get("Content-Type") != "application/json" {
					t.Errorf("%s: headers %v", rf.what, r.header)
				}
				if app.received() != n {
					t.Errorf("%s reached the app", rf.what)
				}
			}

			// Cookie sent as two fields (an HTTP/2 client splits it, RFC 9113
			// §8.2.3) reaches the app as one line, as from HTTP/1.1.
			before++
			if r := p.do(t, s.addr, s.tls, "GET", "/public", nil, "Cookie", "a=1", "Cookie", "b=2"); r.status != 200 {
				t.Errorf("cookies: %d", r.status)
			}
			if c := app.last(t).values("Cookie"); len(c) != 1 || c[0] != "a=1; b=2" {
				t.Errorf("the app got Cookie lines %q, want one \"a=1; b=2\"", c)
			}

			r = p.do(t, s.addr, s.tls, "POST", "/public", []byte(`{"a":1}`), "Content-Type", "application/json")
			if got := app.last(t); r.status != 200 || string(got.body) != `{"a":1}` || len(got.values("Content-Length")) != 1 {
				t.Errorf("a body within the limit: %d, the app got %q %q", r.status, got.body, got.values("Content-Length"))
			}
			if app.received() != before+2 {
				t.Errorf("the app got %d requests, want 2", app.received()-before)
			}
		})
	}
	// Both protocols' requests are in the same log: their decision lines,
	// finished with the response (WARDEN_ACCESS_LOG=combined).
	for _, path := range []string{"/public", "/admin/secret"} {
		testenv.Poll(t, "a line per protocol for "+path, 10*time.Second, func() bool {
			return countLines(s.process, func(l map[string]any) bool { r := requestLine(l); return r != nil && r["path"] == path }) >= 2
		})
	}
}

func countLines(p *process, match func(map[string]any) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.logs {
		if match(l) {
			n++
		}
	}
	return n
}

// dialALPN completes a TLS handshake offering protos and returns the
// protocol chosen, or the handshake's error.
func dialALPN(addr string, cfg *tls.Config, protos ...string) (*tls.Conn, error) {
	cfg = cfg.Clone()
	cfg.NextProtos = protos
	return tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
}

// WARDEN_INBOUND_PROTOCOLS turns either protocol off.
func TestHTTP2InboundProtocols(t *testing.T) {
	app := startApp(t, appOptions{})
	t.Run("http/1.1 alone: h2 is not offered", func(t *testing.T) {
		s := startSidecar(t, app, "WARDEN_INBOUND_PROTOCOLS=http/1.1")
		if c, err := dialALPN(s.addr, s.tls, "h2"); err == nil {
			c.Close()
			t.Error("a client offering only h2 completed its handshake")
		}
		c, err := dialALPN(s.addr, s.tls, "h2", "http/1.1")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Errorf("negotiated %q, want http/1.1", p)
		}
		if r := h1Do(t, s.addr, s.tls, "GET", "/x", nil); r.status != 200 {
			t.Errorf("HTTP/1.1: %d", r.status)
		}
	})
	t.Run("h2 alone: HTTP/1.1 is refused", func(t *testing.T) {
		s := startSidecar(t, app, "WARDEN_INBOUND_PROTOCOLS=h2")
		before := app.received()
		for _, protos := range [][]string{{"http/1.1"}, nil} {
			c, err := dialALPN(s.addr, s.tls, protos...)
			if err != nil {
				continue // refused in the handshake: as good
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprint(c, rawGET("/x"))
			if b, _ := io.ReadAll(c); len(b) != 0 {
				t.Errorf("ALPN %q: HTTP/1.1 answered %q", protos, b)
			}
			c.Close()
		}
		if app.received() != before {
			t.Error("an HTTP/1.1 request reached the app")
		}
		s.find(t, func(l map[string]any) bool { return l["event"] == "protocol_refused" })
		if r := h2Do(t, s.addr, s.tls, "GET", "/x", nil); r.status != 200 {
			t.Errorf("HTTP/2: %d", r.status)
		}
	})
}

// protoApp answers every request with the protocol it arrived in, over
// HTTP/1.1 and h2c on one port.
func protoApp(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s XFCC=%s", r.Proto, r.URL.RequestURI(), r.Header.Get("X-Forwarded-Client-Cert"))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// WARDEN_UPSTREAM_PROTOCOL picks how the app is spoken to, whatever the
// client spoke: an HTTP/1.1 client reaches an h2c app too.
func TestHTTP2UpstreamProtocol(t *testing.T) {
	appAddr := protoApp(t)
	grpcCT := []string{"Content-Type", "application/grpc"}
	tests := []struct {
		mode    string
		client  string
		fields  []string
		wantApp string
	}{
		{"http1", "HTTP/2", nil, "HTTP/1.1"},
		{"h2c", "HTTP/2", nil, "HTTP/2.0"},
		{"h2c", "HTTP/1.1", nil, "HTTP/2.0"},
		{"auto", "HTTP/2", nil, "HTTP/1.1"},
		{"auto", "HTTP/2", grpcCT, "HTTP/2.0"},
		{"auto", "HTTP/1.1", nil, "HTTP/1.1"},
	}
	sidecars := map[string]*sidecar{}
	for _, tt := range tests {
		s := sidecars[tt.mode]
		if s == nil {
			s = startSidecar(t, &recordingApp{addr: appAddr}, "WARDEN_UPSTREAM_PROTOCOL="+tt.mode)
			sidecars[tt.mode] = s
		}
		do := h2Do
		if tt.client == "HTTP/1.1" {
			do = h1Do
		}
		path := "/a/./b"
		if tt.fields != nil {
			path = "/pkg.Svc/Get"
		}
		r := do(t, s.addr, s.tls, "POST", path, []byte("x"), tt.fields...)
		want := tt.wantApp + " "
		if r.status != 200 || !strings.HasPrefix(string(r.body), want) || !strings.Contains(string(r.body), "URI=spiffe://warden.local/ns/default/sa/client") {
			t.Errorf("%s, %s client %v: %d %q, want the app to see %s", tt.mode, tt.client, tt.fields, r.status, r.body, tt.wantApp)
		}
		if tt.fields == nil && !strings.Contains(string(r.body), " /a/b ") {
			t.Errorf("%s, %s client: the app got another path: %q", tt.mode, tt.client, r.body)
		}
		if r.header.Get("X-Request-Id") == "" {
			t.Errorf("%s, %s client: no X-Request-Id on the answer", tt.mode, tt.client)
		}
	}
}

// SIGTERM while an HTTP/2 request is in flight: the stream finishes (x/net
// sends GOAWAY and lets open streams complete), then warden exits 0.
func TestHTTP2DrainOnSIGTERM(t *testing.T) {
	w := startDevSidecar(t, "WARDEN_DRAIN_TIMEOUT=10s")
	addr := strings.TrimPrefix(w.inbound, "https://")
	cfg := w.client.Transport.(*http.Transport).TLSClientConfig
	done := make(chan h2Response, 1)
	go func() { done <- h2Do(t, addr, cfg, "GET", "/slow", nil) }()
	select {
	case <-w.slowStarted:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request never reached the app")
	}
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.status != 200 || !strings.HasPrefix(string(r.body), "app saw /slow") {
		t.Errorf("in-flight HTTP/2 request during the drain: %d %q", r.status, r.body)
	}
	select {
	case err := <-w.done:
		if err != nil {
			t.Errorf("warden exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("warden did not exit after draining")
	}
}
