package outbound

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/signature"
	"github.com/warden-sidecar/warden/agent/token"
	"github.com/warden-sidecar/warden/spiffe"
	"github.com/warden-sidecar/warden/spiffe/spiffetest"
)

var grpcID = spiffeid.RequireFromPath(td, "/ns/shop/sa/grpc")

// h2Destination is a net/http server over mTLS that offers protos in ALPN
// (default h2 only) and requires a client certificate, standing in for an
// HTTP/2 (gRPC) peer or, with http/1.1, an HTTP/1.1 one. /echo answers
// what it saw, with a gRPC-style trailer; /stream echoes each chunk of the
// request body as it arrives.
func h2Destination(t *testing.T, svid *x509svid.SVID, bundles x509bundle.Source, protos ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if len(protos) == 0 {
		protos = []string{"h2"}
	}
	cfg := spiffe.ServerTLSConfig(svid, bundles)
	cfg.NextProtos = protos
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			<-r.Context().Done() // until warden gives up on it
			return
		case "/big":
			_, _ = w.Write(bigBody)
			return
		case "/stream":
			w.Header().Set("Content-Type", "application/grpc")
			w.WriteHeader(200)
			rc := http.NewResponseController(w)
			_ = rc.Flush()
			buf := make([]byte, 1024)
			for {
				n, err := r.Body.Read(buf)
				if n > 0 {
					_, _ = w.Write(buf[:n])
					_ = rc.Flush()
				}
				if err != nil {
					break
				}
			}
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
			return
		}
		peer, _ := spiffe.PeerID(r.TLS)
		var hdrs []string
		for k := range r.Header {
			hdrs = append(hdrs, k)
		}
		body, _ := io.ReadAll(r.Body)
		b, _ := json.Marshal(map[string]any{
			"peer_id": peer.String(), "proto": r.Proto, "host": r.Host, "uri": r.RequestURI,
			"request_id": r.Header.Get("X-Request-Id"), "te": r.Header.Get("Te"), "headers": hdrs, "body": string(body),
		})
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = w.Write(b)
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set(http.TrailerPrefix+"Grpc-Message", "all good")
	})}
	go func() { _ = srv.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// noALPNDestination is an mTLS HTTP/1.1 server that takes part in no ALPN
// negotiation at all (as servers that predate it).
func noALPNDestination(t *testing.T, svid *x509svid.SVID, bundles x509bundle.Source) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := spiffe.ServerTLSConfig(svid, bundles)
	cfg.NextProtos = nil
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go func() { _ = srv.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

type h2Fixture struct {
	addr string
	logs *lockedBuffer
}

// newH2Fixture is the outbound proxy with h2 routes: grpc (an h2
// destination), legacy (HTTP/1.1, the former syntax's meaning), noh2 (an
// h2 route to a destination offering only http/1.1) and wrongid (an h2
// destination with another SPIFFE ID than the route's).
func newH2Fixture(t *testing.T, timeout ...time.Duration) *h2Fixture {
	t.Helper()
	to := 5 * time.Second
	if len(timeout) > 0 {
		to = timeout[0]
	}
	ca := spiffetest.NewCA(t, td)
	bundles := x509bundle.NewSet(ca.Bundle())
	grpc := h2Destination(t, ca.SVID(grpcID, time.Hour), bundles)
	// Explicitly HTTP/1.1 only: what ServerTLSConfig offers may change.
	legacy := h2Destination(t, ca.SVID(ordersID, time.Hour), bundles, "http/1.1")
	noALPN := noALPNDestination(t, ca.SVID(ordersID, time.Hour), bundles)
	logs := &lockedBuffer{}
	s := New(Options{
		Routes: []Route{
			{Host: "grpc", Addr: grpc, ID: grpcID, HTTP2: true},
			{Host: "legacy", Addr: legacy, ID: ordersID},
			{Host: "noh2", Addr: legacy, ID: ordersID, HTTP2: true},
			{Host: "noalpn", Addr: noALPN, ID: ordersID, HTTP2: true},
			{Host: "wrongid", Addr: grpc, ID: ordersID, HTTP2: true},
		},
		SVID: ca.SVID(ownID, time.Hour), Bundles: bundles,
		Timeout: to, MaxConnsPerRoute: 8,
		ReadTimeout: time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
		MaxHeaderBytes: 8192, MaxRequestBodyBytes: 1 << 20, MaxConnections: 64,
		Log: zerolog.New(logs).Level(zerolog.DebugLevel),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve returned %v after Shutdown", err)
		}
	})
	return &h2Fixture{addr: ln.Addr().String(), logs: logs}
}

// h2cClient speaks HTTP/2 with prior knowledge, as a gRPC client does in
// plaintext, to the outbound listener whatever the URL's host.
func h2cClient(t *testing.T, addr string) *http.Client {
	t.Helper()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: &p,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type h2Seen struct {
	PeerID    string   `json:"peer_id"`
	Proto     string   `json:"proto"`
	Host      string   `json:"host"`
	URI       string   `json:"uri"`
	RequestID string   `json:"request_id"`
	TE        string   `json:"te"`
	Headers   []string `json:"headers"`
	Body      string   `json:"body"`
}

func TestH2cAppReachesH2DestinationWithTrailers(t *testing.T) {
	f := newH2Fixture(t)
	c := h2cClient(t, f.addr)
	req, _ := http.NewRequest("POST", "http://grpc/echo/a%2Fb?x=1", strings.NewReader("ping"))
	req.Header.Set("Te", "trailers")
	req.Header.Set("X-Request-Id", "app-h2-1")
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Fatalf("app got %s %d %s", resp.Proto, resp.StatusCode, body)
	}
	var got h2Seen
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if got.Proto != "HTTP/2.0" || got.PeerID != ownID.String() || got.Host != "grpc" || got.URI != "/echo/a%2Fb?x=1" ||
		got.RequestID != "app-h2-1" || got.TE != "trailers" || got.Body != "ping" {
		t.Errorf("destination saw %+v", got)
	}
	if resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("Grpc-Message") != "all good" {
		t.Errorf("trailers %v, want Grpc-Status 0 and Grpc-Message", resp.Trailer)
	}
	if resp.Header.Get("X-Request-Id") != "app-h2-1" {
		t.Errorf("X-Request-Id %q", resp.Header.Get("X-Request-Id"))
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `"event":"access","protocol":"h2c","method":"POST","host":"grpc","path":"/echo/a%2Fb","status":200`) {
		t.Errorf("no access line for the h2c request:\n%s", logs)
	}
}

// A stream flows both ways as it is written: each chunk the app sends comes
// back before the next is sent, which a proxy buffering either body would
// deadlock on.
func TestH2StreamFlowsBothWays(t *testing.T) {
	f := newH2Fixture(t)
	c := h2cClient(t, f.addr)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://grpc/stream", pr)
	req.Header.Set("Te", "trailers")
	done := make(chan *http.Response, 1)
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Do(req)
		if err != nil {
			errc <- err
			return
		}
		done <- resp
	}()
	if _, err := pw.Write([]byte("msg-0")); err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	select {
	case resp = <-done:
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("no response head while the request body is still open")
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	for i := range 200 {
		if i > 0 {
			if _, err := fmt.Fprintf(pw, "msg-%d", i); err != nil {
				t.Fatal(err)
			}
		}
		want := fmt.Sprintf("msg-%d", i)
		if _, err := io.ReadFull(resp.Body, buf[:len(want)]); err != nil || string(buf[:len(want)]) != want {
			t.Fatalf("message %d: got %q, %v", i, buf[:len(want)], err)
		}
	}
	pw.Close()
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("after the last message: %q %v", rest, err)
	}
	if resp.Trailer.Get("Grpc-Status") != "0" {
		t.Errorf("trailer Grpc-Status %q", resp.Trailer.Get("Grpc-Status"))
	}
}

func TestH2RoutesAndFailures(t *testing.T) {
	f := newH2Fixture(t)
	c := h2cClient(t, f.addr)
	tests := []struct {
		name   string
		h2c    bool // the app speaks h2c; else HTTP/1.1
		host   string
		status int
		code   string // the JSON error; "" for a destination's answer
		proto  string // what the destination spoke
		log    string
	}{
		{"h2c app, h2 route", true, "grpc", 200, "", "HTTP/2.0", ""},
		{"HTTP/1.1 app, h2 route", false, "grpc", 200, "", "HTTP/2.0", ""},
		{"h2c app, a route in the former syntax (HTTP/1.1)", true, "legacy", 200, "", "HTTP/1.1", ""},
		{"h2c app, no route", true, "example.com", 403, "unknown_destination", "", `"event":"outbound_refused"`},
		// A server offering only http/1.1 refuses the handshake (RFC 7301's
		// no_application_protocol alert); one without ALPN completes it, and
		// warden refuses to speak h2 to it.
		{"h2c app, h2 route to a destination offering http/1.1", true, "noh2", 502, "destination_unavailable", "", "tls: no application protocol"},
		{"HTTP/1.1 app, h2 route to a destination offering http/1.1", false, "noh2", 502, "destination_unavailable", "", "tls: no application protocol"},
		{"h2c app, h2 route to a destination without ALPN", true, "noalpn", 502, "destination_unavailable", "", "did not negotiate h2"},
		{"h2c app, h2 destination with another SPIFFE ID", true, "wrongid", 502, "destination_unverified", "", `"error_code":"destination_unverified"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var status int
			var hdr http.Header
			var body string
			if tt.h2c {
				resp, err := c.Get("http://" + tt.host + "/echo")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				status, hdr, body = resp.StatusCode, resp.Header, string(b)
				if resp.ProtoMajor != 2 {
					t.Errorf("app got %s", resp.Proto)
				}
			} else {
				resp, b := send(t, f.addr, "GET /echo HTTP/1.1\r\nHost: "+tt.host+"\r\n\r\n")
				status, hdr, body = resp.StatusCode, resp.Header, b
			}
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			id := hdr.Get("X-Request-Id")
			if tt.code != "" {
				want := `{"error":"` + tt.code + `","request_id":"` + id + "\"}\n"
				if body != want || hdr.Get("Content-Type") != "application/json" || id == "" {
					t.Errorf("body %q, want %q", body, want)
				}
			} else {
				var got h2Seen
				if err := json.Unmarshal([]byte(body), &got); err != nil {
					t.Fatalf("%v: %s", err, body)
				}
				if got.PeerID != ownID.String() || got.RequestID != id || got.Proto != tt.proto {
					t.Errorf("destination saw %+v, want %s from %s", got, tt.proto, ownID)
				}
			}
			if tt.log != "" && !strings.Contains(f.logs.String(), tt.log) {
				t.Errorf("no log line with %s:\n%s", tt.log, f.logs.String())
			}
		})
	}
}

// Both protocols share the listener: an HTTP/1.1 request that starts like
// the preface (PUT, POST, PATCH, PRI) still goes to fasthttp.
func TestHTTP1RequestsStartingWithPStillWork(t *testing.T) {
	f := newH2Fixture(t)
	for _, m := range []string{"POST", "PUT", "PATCH"} {
		resp, body := send(t, f.addr, m+" /echo HTTP/1.1\r\nHost: grpc\r\nContent-Length: 2\r\n\r\nhi")
		var got h2Seen
		if err := json.Unmarshal([]byte(body), &got); resp.StatusCode != 200 || err != nil || got.Body != "hi" {
			t.Errorf("%s: %d %s", m, resp.StatusCode, body)
		}
	}
	// A connection that sends a few bytes of the preface and stops is cut
	// off by the read timeout, not held forever; others are served meanwhile.
	stalled, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	_, _ = stalled.Write([]byte("PRI * HTTP/2"))
	if resp, _ := send(t, f.addr, "GET /echo HTTP/1.1\r\nHost: legacy\r\n\r\n"); resp.StatusCode != 200 {
		t.Errorf("while another connection stalls in the preface: %d", resp.StatusCode)
	}
	_ = stalled.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := stalled.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Errorf("stalled preface: read %d, %v; want the connection closed by warden", n, err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// With a signing key, an h2c app's request is read whole (up to the body
// limit), signed, and verifies at the destination as it arrives over h2;
// a body over the limit gets 413 and is not sent.
func TestH2cRequestIsSigned(t *testing.T) {
	secret := bytes.Repeat([]byte("k"), 32)
	keys := token.StaticKeys{"outbound": {Secret: secret}}
	verifier, err := signature.NewVerifier(signature.Options{Keys: keys, Required: true, ReplayEntries: 64})
	if err != nil {
		t.Fatal(err)
	}
	ca := spiffetest.NewCA(t, td)
	bundles := x509bundle.NewSet(ca.Bundle())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := spiffe.ServerTLSConfig(ca.SVID(grpcID, time.Hour), bundles)
	cfg.NextProtos = []string{"h2"}
	var reached atomic.Int32
	dst := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		body, _ := io.ReadAll(r.Body)
		var fields []pep.Field
		for k, vs := range r.Header {
			for _, v := range vs {
				fields = append(fields, pep.Field{Name: []byte(k), Value: []byte(v)})
			}
		}
		_, err := verifier.Verify(&signature.Request{Method: []byte(r.Method), Scheme: "https", Authority: []byte(r.Host),
			RawTarget: []byte(r.RequestURI), Headers: fields, Body: body})
		if err != nil || r.ProtoMajor != 2 {
			http.Error(w, fmt.Sprintf("%s: %v", r.Proto, err), http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "verified %d bytes", len(body))
	})}
	go func() { _ = dst.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() { _ = dst.Close() })

	signer, err := signature.NewHMACSigner(secret, "outbound", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{
		Routes: []Route{{Host: "grpc", Addr: ln.Addr().String(), ID: grpcID, HTTP2: true}},
		SVID:   ca.SVID(ownID, time.Hour), Bundles: bundles,
		Timeout: 5 * time.Second, MaxConnsPerRoute: 8,
		ReadTimeout: time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
		MaxHeaderBytes: 8192, MaxRequestBodyBytes: 1 << 10, MaxConnections: 64,
		Signer: func() (*signature.Signer, error) { return signer, nil },
		Log:    zerolog.New(io.Discard),
	})
	oln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(oln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	c := h2cClient(t, oln.Addr().String())
	post := func(body string) (int, string) {
		// An io.Reader of unknown length: the app streams it.
		resp, err := c.Post("http://grpc/orders?id=7", "application/json", io.MultiReader(strings.NewReader(body)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := post(`{"item":"tea"}`); status != 200 || body != "verified 14 bytes" {
		t.Errorf("signed h2c request: %d %s", status, body)
	}
	if status, body := post(strings.Repeat("x", 2<<10)); status != 413 || !strings.Contains(body, `"error":"body_too_large"`) {
		t.Errorf("body over the limit: %d %s", status, body)
	}
	if n := reached.Load(); n != 1 {
		t.Errorf("destination reached %d times, want once (the over-limit body is not sent)", n)
	}
}

// bigBody is a large response of known content.
var bigBody = bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB

// An h2 route keeps the outbound proxy's timeout (504 destination_timeout)
// and streams a large response whole, to an h2c app and to an HTTP/1.1 one.
func TestH2TimeoutAndLargeResponse(t *testing.T) {
	f := newH2Fixture(t, 2*time.Second)
	c := h2cClient(t, f.addr)
	resp, err := c.Get("http://grpc/slow")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 504 || !strings.Contains(string(b), `"error":"destination_timeout"`) {
		t.Errorf("h2c app, slow h2 destination: %d %s", resp.StatusCode, b)
	}
	if resp, b := send(t, f.addr, "GET /slow HTTP/1.1\r\nHost: grpc\r\n\r\n"); resp.StatusCode != 504 || !strings.Contains(b, `"error":"destination_timeout"`) {
		t.Errorf("HTTP/1.1 app, slow h2 destination: %d %s", resp.StatusCode, b)
	}

	resp, err = c.Get("http://grpc/big")
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(b, bigBody) {
		t.Errorf("h2c app, 8 MiB: %d bytes, %v", len(b), err)
	}
	if resp, b := send(t, f.addr, "GET /big HTTP/1.1\r\nHost: grpc\r\n\r\n"); resp.StatusCode != 200 || b != string(bigBody) {
		t.Errorf("HTTP/1.1 app, 8 MiB: %d, %d bytes", resp.StatusCode, len(b))
	}
}

// failingListener's Accept fails as a listener out of file descriptors does.
type failingListener struct{ net.Listener }

func (failingListener) Accept() (net.Conn, error) {
	return nil, errors.New("accept4: too many open files")
}

// A listener that stops accepting is Serve's error, not a clean stop.
func TestServeReportsAcceptFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := New(Options{ReadTimeout: time.Second, Timeout: time.Second, MaxHeaderBytes: 4096, Log: zerolog.Nop()})
	done := make(chan error, 1)
	go func() { done <- s.Serve(failingListener{ln}) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "too many open files") {
			t.Errorf("Serve returned %v, want the accept error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running after its listener failed")
	}
}
