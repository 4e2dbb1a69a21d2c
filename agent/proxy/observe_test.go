package proxy

import (
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/warden-sidecar/warden/agent/pep"
)

// countingObserver writes down what the proxy tells it.
type countingObserver struct {
	mu         sync.Mutex
	requests   []RequestStats
	handshakes []HandshakeResult
}

func (o *countingObserver) Request(r RequestStats) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.requests = append(o.requests, r)
}

func (o *countingObserver) Handshake(r HandshakeResult) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.handshakes = append(o.handshakes, r)
}

func (o *countingObserver) last(t *testing.T) RequestStats {
	t.Helper()
	var last RequestStats
	if !eventually(func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		if len(o.requests) == 0 {
			return false
		}
		last = o.requests[len(o.requests)-1]
		o.requests = o.requests[:0]
		return true
	}) {
		t.Fatal("the observer was told about no request")
	}
	return last
}

func (o *countingObserver) handshakesSoFar() []HandshakeResult {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.handshakes)
}

// Each request's outcome reaches the observer once, with the stage that
// refused it and, for requests sent to the app, the time spent waiting for
// it within the total.
func TestObserverIsToldEachRequest(t *testing.T) {
	obs := &countingObserver{}
	h := startProxy(t, func(o *Options) { o.Guard = &pathGuard{}; o.Observer = obs })
	client := h.client(t, clientID)
	get := func(path string) int {
		t.Helper()
		resp, err := client.Get(h.url(path))
		if err != nil {
			t.Fatal(err)
		}
		// Read to the end, so that the client keeps the connection.
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	if code := get("/slow"); code != http.StatusGatewayTimeout {
		t.Fatalf("/slow: %d", code)
	}
	r := obs.last(t)
	if r.Outcome != OutcomeError || r.Status != 504 || !r.Forwarded || r.Upstream < 250*time.Millisecond || r.Total < r.Upstream {
		t.Errorf("timed-out request: %+v, want an error forwarded for about the upstream timeout (300ms)", r)
	}

	if code := get("/hello"); code != 200 {
		t.Fatalf("/hello: %d", code)
	}
	if r := obs.last(t); r.Outcome != OutcomeAllow || r.Status != 200 || !r.Forwarded || r.Upstream <= 0 || r.Total <= r.Upstream {
		t.Errorf("allowed request: %+v", r)
	}

	if code := get("/admin/x"); code != 401 {
		t.Fatalf("/admin/x: %d", code)
	}
	if r := obs.last(t); r.Outcome != OutcomeDeny || r.Stage != "" || r.Status != 401 || r.Forwarded || r.Total <= 0 {
		t.Errorf("request the guard refused: %+v", r)
	}

	if code := get("/a/%2e%2e%2f/b"); code != 400 {
		t.Fatalf("ambiguous path: %d", code)
	}
	if r := obs.last(t); r.Outcome != OutcomeInvalid || r.Status != 400 || r.Forwarded {
		t.Errorf("ambiguous path: %+v", r)
	}

	req, _ := http.NewRequest(http.MethodGet, h.url("/hello"), nil)
	req.Header.Set("X-Big", strings.Repeat("h", 8<<10))
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 431 {
		t.Fatalf("oversized header block: %v %v", resp, err)
	}
	if r := obs.last(t); r.Outcome != OutcomeInvalid || r.Status != 431 || r.Total != 0 {
		t.Errorf("unreadable request: %+v, want invalid and untimed", r)
	}

	if resp, err := h.client(t, intruderID).Get(h.url("/hello")); err != nil || resp.StatusCode != 403 {
		t.Fatalf("intruder: %v %v", resp, err)
	}
	if r := obs.last(t); r.Outcome != OutcomeDeny || r.Stage != pep.StagePeer || r.Status != 403 {
		t.Errorf("refused peer: %+v", r)
	}

	// Three clients so far, one handshake each; then one without a
	// certificate, and one that never starts its handshake.
	if err := handshake(h.addr, tlsconfig.TLSClientConfig(h.ca.Bundle(), tlsconfig.AuthorizeID(ownID))); err == nil {
		t.Fatal("handshake without a client certificate succeeded")
	}
	want := []HandshakeResult{HandshakeOK, HandshakeOK, HandshakeError}
	if !eventually(func() bool { return slices.Equal(obs.handshakesSoFar(), want) }) {
		t.Errorf("handshakes %v, want %v", obs.handshakesSoFar(), want)
	}
}

// A client that opens a connection and never speaks is a handshake that
// timed out.
func TestObserverIsToldHandshakeTimeouts(t *testing.T) {
	obs := &countingObserver{}
	h := startProxy(t, func(o *Options) { o.Observer = obs; o.HandshakeTimeout = 100 * time.Millisecond })
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !eventually(func() bool { return slices.Equal(obs.handshakesSoFar(), []HandshakeResult{HandshakeTimeout}) }) {
		t.Errorf("handshakes %v, want one timeout", obs.handshakesSoFar())
	}
}
