package outbound

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
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
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/spiffe"
	"github.com/warden-sidecar/warden/spiffe/spiffetest"
)

var (
	td        = spiffeid.RequireTrustDomainFromString("warden.test")
	partnerTD = spiffeid.RequireTrustDomainFromString("partner.test")
	ownID     = spiffeid.RequireFromPath(td, "/ns/shop/sa/frontend")
	ordersID  = spiffeid.RequireFromPath(td, "/ns/shop/sa/orders")
	partnerID = spiffeid.RequireFromPath(partnerTD, "/payments")
)

// seen is what a destination reports about the request it got.
type seen struct {
	PeerID    string   `json:"peer_id"`
	Host      string   `json:"host"`
	URI       string   `json:"uri"`
	RequestID string   `json:"request_id"`
	Headers   []string `json:"headers"`
}

// destination is an mTLS fasthttp server standing in for another pod's
// warden: it presents svid, verifies clients against bundles and answers
// with what it saw. /slow waits until the test ends.
func destination(t *testing.T, svid *x509svid.SVID, bundles x509bundle.Source) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/slow" {
			<-done
		}
		cs := ctx.TLSConnectionState()
		peer, _ := spiffe.PeerID(cs)
		var hdrs []string
		for k := range ctx.Request.Header.All() {
			hdrs = append(hdrs, string(k))
		}
		b, _ := json.Marshal(seen{PeerID: peer.String(), Host: string(ctx.Host()), URI: string(ctx.RequestURI()),
			RequestID: string(ctx.Request.Header.Peek("X-Request-Id")), Headers: hdrs})
		ctx.Response.Header.Set("Connection", "X-Hop")
		ctx.Response.Header.Set("X-Hop", "1")
		ctx.SetBody(b)
	}}
	go func() { _ = srv.Serve(tls.NewListener(ln, spiffe.ServerTLSConfig(svid, bundles))) }()
	t.Cleanup(func() { close(done); _ = srv.Shutdown() })
	return ln.Addr().String()
}

type fixture struct {
	addr      string // the outbound listener
	ca        *spiffetest.CA
	ordersDst string
	logs      *lockedBuffer // the outbound proxy's log, at debug level
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newFixture(t *testing.T, timeout time.Duration) *fixture {
	t.Helper()
	ca, partner := spiffetest.NewCA(t, td), spiffetest.NewCA(t, partnerTD)
	bundles := x509bundle.NewSet(ca.Bundle(), partner.Bundle())
	orders := destination(t, ca.SVID(ordersID, time.Hour), bundles)
	payments := destination(t, partner.SVID(partnerID, time.Hour), bundles)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	logs := &lockedBuffer{}
	s := New(Options{
		Routes: []Route{
			{Host: "orders", Addr: orders, ID: ordersID},
			{Host: "payments:8443", Addr: payments, ID: partnerID},
			{Host: "impostor", Addr: orders, ID: spiffeid.RequireFromPath(td, "/ns/shop/sa/billing")},
			{Host: "down", Addr: closedAddr, ID: ordersID},
		},
		SVID:    ca.SVID(ownID, time.Hour),
		Bundles: bundles,
		Timeout: timeout, MaxConnsPerRoute: 8,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
		MaxHeaderBytes: 8192, MaxRequestBodyBytes: 1 << 20, MaxConnections: 64,
		Log: zerolog.New(logs).Level(zerolog.DebugLevel),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return &fixture{addr: ln.Addr().String(), ca: ca, ordersDst: orders, logs: logs}
}

// send writes raw as the app would and reads one response.
func send(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestOutbound(t *testing.T) {
	f := newFixture(t, 500*time.Millisecond)
	tests := []struct {
		name     string
		raw      string
		status   int
		peer     string // the SPIFFE ID the destination saw
		uri      string
		host     string
		errBody  string // the exact JSON error, with REQID for the request id
		reqID    string
		noHeader []string // headers the destination must not see
	}{
		{
			name:   "a routed Host goes over mTLS with the pod's SVID",
			raw:    "GET /orders/7?x=1 HTTP/1.1\r\nHost: orders\r\nX-Request-Id: app-req-1\r\n\r\n",
			status: 200, peer: ownID.String(), uri: "/orders/7?x=1", host: "orders", reqID: "app-req-1",
		},
		{
			name:   "a Host with a port matches a route without one, in any case",
			raw:    "GET / HTTP/1.1\r\nHost: ORDERS:8080\r\n\r\n",
			status: 200, peer: ownID.String(), uri: "/", host: "orders:8080",
		},
		{
			name:   "an absolute-form request, as to an HTTP proxy, is forwarded in origin form",
			raw:    "GET http://orders/a/../b HTTP/1.1\r\nHost: orders\r\n\r\n",
			status: 200, peer: ownID.String(), uri: "/a/../b", host: "orders",
		},
		{
			name:   "a route to a federated trust domain verifies with its bundle",
			raw:    "GET /pay HTTP/1.1\r\nHost: payments:8443\r\n\r\n",
			status: 200, peer: ownID.String(), uri: "/pay", host: "payments:8443",
		},
		{
			name:   "hop-by-hop headers stay on this hop",
			raw:    "GET / HTTP/1.1\r\nHost: orders\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nProxy-Authorization: Basic eA==\r\nTe: trailers\r\nUpgrade: h2c\r\n\r\n",
			status: 200, peer: ownID.String(), uri: "/", host: "orders",
			noHeader: []string{"X-Secret", "Keep-Alive", "Proxy-Authorization", "Te", "Upgrade"},
		},
		{
			name:    "a Host without a route is refused: no open proxy",
			raw:     "GET / HTTP/1.1\r\nHost: example.com\r\nX-Request-Id: r-1\r\n\r\n",
			status:  403,
			errBody: `{"error":"unknown_destination","request_id":"r-1"}`,
		},
		{
			name:    "a route's port must match when the route names one",
			raw:     "GET / HTTP/1.1\r\nHost: payments:9000\r\n\r\n",
			status:  403,
			errBody: `{"error":"unknown_destination","request_id":"REQID"}`,
		},
		{
			name:    "an IP address as Host is refused",
			raw:     "GET / HTTP/1.1\r\nHost: " + f.ordersDst + "\r\n\r\n",
			status:  403,
			errBody: `{"error":"unknown_destination","request_id":"REQID"}`,
		},
		{
			name:    "a destination presenting another SPIFFE ID is not sent the request",
			raw:     "GET / HTTP/1.1\r\nHost: impostor\r\n\r\n",
			status:  502,
			errBody: `{"error":"destination_unverified","request_id":"REQID"}`,
		},
		{
			name:    "an unreachable destination is a 502",
			raw:     "GET / HTTP/1.1\r\nHost: down\r\n\r\n",
			status:  502,
			errBody: `{"error":"destination_unavailable","request_id":"REQID"}`,
		},
		{
			name:    "a destination slower than the timeout is a 504",
			raw:     "GET /slow HTTP/1.1\r\nHost: orders\r\n\r\n",
			status:  504,
			errBody: `{"error":"destination_timeout","request_id":"REQID"}`,
		},
		{
			name:    "CONNECT tunnels are refused",
			raw:     "CONNECT orders:443 HTTP/1.1\r\nHost: orders:443\r\n\r\n",
			status:  405,
			errBody: `{"error":"connect_not_supported","request_id":"REQID"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := send(t, f.addr, tt.raw)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			id := resp.Header.Get("X-Request-Id")
			if id == "" || (tt.reqID != "" && id != tt.reqID) {
				t.Errorf("X-Request-Id %q, want %q or a generated one", id, tt.reqID)
			}
			if tt.errBody != "" {
				want := strings.ReplaceAll(tt.errBody, "REQID", id) + "\n"
				if body != want || resp.Header.Get("Content-Type") != "application/json" {
					t.Errorf("body %q (%s), want %q", body, resp.Header.Get("Content-Type"), want)
				}
				return
			}
			var got seen
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if got.PeerID != tt.peer || got.URI != tt.uri || got.Host != tt.host || got.RequestID != id {
				t.Errorf("destination saw %+v; want peer %s uri %s host %s request id %s", got, tt.peer, tt.uri, tt.host, id)
			}
			for _, h := range tt.noHeader {
				for _, g := range got.Headers {
					if strings.EqualFold(g, h) {
						t.Errorf("destination got hop-by-hop header %s", h)
					}
				}
			}
			if resp.Header.Get("X-Hop") != "" {
				t.Error("a header the destination named in Connection reached the app")
			}
		})
	}
}

func TestRouteLookupDoesNotAllocate(t *testing.T) {
	s := New(Options{Routes: []Route{{Host: "orders", Addr: "127.0.0.1:1", ID: ordersID}}, Log: zerolog.New(io.Discard)})
	c := &conn{}
	host := []byte("Orders:8080")
	allocs := testing.AllocsPerRun(100, func() {
		if s.route(c, host) == nil {
			panic("no route")
		}
	})
	if allocs != 0 {
		t.Errorf("route lookup allocates %v times", allocs)
	}
	for _, miss := range []string{"ordersx", "[::1]", "[::1]:80", "x:orders", ""} {
		if s.route(c, []byte(miss)) != nil {
			t.Errorf("%q matched a route", miss)
		}
	}
}

// The app's outbound requests carry its credentials for the destination:
// neither a request fasthttp cannot parse nor an ordinary one puts them in
// warden's log, fasthttp's debug messages included.
func TestOutboundLogsNoCredential(t *testing.T) {
	f := newFixture(t, 2*time.Second)
	resp, _ := send(t, f.addr, "GET /x?access_token=QUERYSECRET HTTP/1.1\r\nHost: orders\r\n"+
		"Authorization: Bearer TOKENSECRET\r\nCookie: s=COOKIESECRET\r\nBad\x01Header: x\r\n\r\n")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed request: %d, want 400", resp.StatusCode)
	}
	resp, _ = send(t, f.addr, "GET /x;jsessionid=SESSIONSECRET HTTP/1.1\r\nHost: orders\r\nAuthorization: Bearer TOKENSECRET\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("request with path parameters: %d, want 200", resp.StatusCode)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `"event":"bad_request"`) || !strings.Contains(logs, `"error_class"`) {
		t.Errorf("no bad_request line with its class: %s", logs)
	}
	for _, secret := range []string{"QUERYSECRET", "TOKENSECRET", "COOKIESECRET", "SESSIONSECRET"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %s: %s", secret, logs)
		}
	}
}
