package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/pep"
)

// blockingGuard answers /decoy with 404 and, as the agent's Blocker does
// on a decoy hit, closes the source's open connections from within Check.
type blockingGuard struct {
	srv    func() *Server
	closed int
}

func (g *blockingGuard) Check(req *pep.Request) pep.Verdict {
	if string(req.Path) != "/decoy" {
		return pep.Verdict{}
	}
	ip := netip.MustParseAddr(req.ClientIP)
	g.closed = g.srv().CloseSource(netip.PrefixFrom(ip, 32))
	return pep.Verdict{Status: http.StatusNotFound, Code: "not_found", Stage: pep.StageHoneypot}
}

// getPath sends GET path on c and reads the response.
func getPath(t *testing.T, c *tls.Conn, path string) (*http.Response, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://warden"+path, nil)
	if err := req.Write(c); err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, err
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, nil
}

// waitClosed reads from c until warden closes it (EOF or a reset), or
// fails after the deadline; a read timeout means it is still open.
func waitClosed(t *testing.T, c *tls.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: still open (read: %v)", what, err)
	}
}

// A source's open connections are closed when it is blocked: the idle
// keep-alive one at once, the one that asked for the decoy after its 404
// was written whole; another source's connection stays open.
func TestCloseSourceClosesItsOpenConnections(t *testing.T) {
	g := &blockingGuard{}
	h := startProxy(t, func(o *Options) { o.Guard = g })
	g.srv = func() *Server { return h.srv }

	idle, err := h.dialFrom(t, "127.0.0.5")
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := getPath(t, idle, "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("before the block: %v, %v", resp, err)
	}
	other, err := h.dialFrom(t, "127.0.0.6")
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := getPath(t, other, "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("other source: %v, %v", resp, err)
	}
	hitter, err := h.dialFrom(t, "127.0.0.5")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := getPath(t, hitter, "/decoy")
	if err != nil || resp.StatusCode != 404 || resp.Header.Get("Connection") != "" {
		t.Fatalf("the decoy's own answer: %v, %v; want a whole 404 without Connection: close", resp, err)
	}
	if g.closed != 2 {
		t.Errorf("CloseSource closed %d connections, want the source's 2", g.closed)
	}
	waitClosed(t, idle, "the blocked source's idle keep-alive connection")
	waitClosed(t, hitter, "the connection that asked for the decoy")
	if resp, err := getPath(t, other, "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("another source's connection after the block: %v, %v", resp, err)
	}
	for _, r := range h.upstream.requests() {
		if r.path != "/" {
			t.Errorf("the app saw %s", r.path)
		}
	}
	if !eventually(func() bool { h.srv.conns.mu.Lock(); defer h.srv.conns.mu.Unlock(); return len(h.srv.conns.conns) == 1 }) {
		t.Error("closed connections are still tracked")
	}
}
