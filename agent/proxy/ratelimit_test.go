package proxy

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/ratelimit"
)

// dialFrom opens an mTLS connection to the proxy from a given loopback
// source address (all of 127.0.0.0/8 is local on Linux), so that one test
// can be several sources.
func (h *harness) dialFrom(t *testing.T, src string) (*tls.Conn, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := tls.DialWithDialer(d, "tcp", h.addr, h.clientTLS(t, clientID))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// getOn sends GET / on an open connection and returns the response.
func getOn(t *testing.T, c *tls.Conn) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://warden/", nil)
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestUserspaceConnRateClosesExcessAtAccept(t *testing.T) {
	lim := ratelimit.NewUserspace(0, ratelimit.Limits{ConnRate: 1, ConnBurst: 3}, 1024)
	h := startProxy(t, func(o *Options) { o.Limiter = lim })

	ok := 0
	first := time.Now().Unix()
	for range 6 {
		if _, err := h.dialFrom(t, "127.0.0.1"); err == nil {
			ok++
		}
	}
	last := time.Now().Unix()
	if ok != 3 {
		t.Fatalf("6 handshakes from one source at 1/s, burst 3: %d succeeded, want 3", ok)
	}
	h.wantSampled(t, "rate_limited", first, last, map[string]any{"reason": "rate_limit:connection", "source_ip": "127.0.0.1", "severity": "low"})
	// Another source is unaffected by the first one's excess.
	c, err := h.dialFrom(t, "127.0.0.2")
	if err != nil {
		t.Fatalf("a second source was refused: %v", err)
	}
	if resp := getOn(t, c); resp.StatusCode != 200 {
		t.Fatalf("second source got %d", resp.StatusCode)
	}
	st := lim.Status()
	if st.Counters.Dropped.ConnRate != 3 {
		t.Fatalf("conn_rate drops %d, want 3", st.Counters.Dropped.ConnRate)
	}
	if len(st.TopSources) != 1 || st.TopSources[0] != (ratelimit.SourceDrops{IP: "127.0.0.1", Dropped: 3}) {
		t.Fatalf("top sources %+v", st.TopSources)
	}
}

func TestUserspaceRequestRateAnswers429(t *testing.T) {
	lim := ratelimit.NewUserspace(0, ratelimit.Limits{PacketRate: 1, PacketBurst: 2}, 1024)
	h := startProxy(t, func(o *Options) { o.Limiter = lim })
	c, err := h.dialFrom(t, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var codes []int
	var retry string
	first := time.Now().Unix()
	for range 7 {
		resp := getOn(t, c)
		codes = append(codes, resp.StatusCode)
		retry = resp.Header.Get("Retry-After")
	}
	last := time.Now().Unix()
	if !slices.Equal(codes, []int{200, 200, 429, 429, 429, 429, 429}) {
		t.Fatalf("statuses %v, want 200 200 and 429 five times", codes)
	}
	// Five refusals, one event per source and second.
	h.wantSampled(t, "rate_limited", first, last, map[string]any{"reason": "rate_limit:request", "source_ip": "127.0.0.1",
		"severity": "low", "method": "GET", "path": "/", "peer_id": clientID.String()})
	if retry != "1" {
		t.Fatalf("Retry-After %q, want 1 (one request per second)", retry)
	}
	// The connection stays usable, and a new connection has its own bucket.
	c2, err := h.dialFrom(t, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if resp := getOn(t, c2); resp.StatusCode != 200 {
		t.Fatalf("a fresh connection got %d", resp.StatusCode)
	}
	if n := len(h.upstream.requests()); n != 3 {
		t.Fatalf("the app saw %d requests, want 3 (the 429 never reaches it)", n)
	}
}

func TestUserspaceBlockedSource(t *testing.T) {
	lim := ratelimit.NewUserspace(0, ratelimit.Limits{}, 1024)
	h := startProxy(t, func(o *Options) { o.Limiter = lim })
	before, err := h.dialFrom(t, "127.0.0.3")
	if err != nil {
		t.Fatal(err)
	}
	if resp := getOn(t, before); resp.StatusCode != 200 {
		t.Fatalf("before the block: %d", resp.StatusCode)
	}
	if err := lim.Block(netip.MustParseAddr("127.0.0.3"), 700*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := h.dialFrom(t, "127.0.0.3"); err == nil {
		t.Fatal("a blocked source completed a handshake")
	}
	if resp := getOn(t, before); resp.StatusCode != 429 {
		t.Fatalf("a request on a connection opened before the block got %d, want 429", resp.StatusCode)
	}
	if _, err := h.dialFrom(t, "127.0.0.4"); err != nil {
		t.Fatalf("another source refused: %v", err)
	}
	// The entry expires by itself.
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := h.dialFrom(t, "127.0.0.3")
		if err == nil {
			if resp := getOn(t, c); resp.StatusCode != 200 {
				t.Fatalf("after expiry: %d", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("source still blocked 3 s after a 700 ms block")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wantSampled checks a sampled event: one per second the burst spanned
// (first to last, Unix seconds), each with the fields want.
func (h *harness) wantSampled(t *testing.T, name string, first, last int64, want map[string]any) {
	t.Helper()
	evs := h.eventsNamed(t, name)
	if n := int64(len(evs)); n < 1 || n > last-first+1 {
		t.Fatalf("%d %s events for one source within %d s, want 1 per second:\n%s", n, name, last-first+1, h.events)
	}
	for _, ev := range evs {
		for k, v := range want {
			if ev[k] != v {
				t.Errorf("%s: %s = %v, want %v", name, k, ev[k], v)
			}
		}
	}
}
