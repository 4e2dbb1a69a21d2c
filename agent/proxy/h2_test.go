package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/ratelimit"
)

// countingGuard counts the requests it decides and allows them with one
// header for the app; concurrent streams call it at once.
type countingGuard struct {
	mu   sync.Mutex
	seen map[string]int
}

func (g *countingGuard) Check(r *pep.Request) pep.Verdict {
	g.mu.Lock()
	g.seen[string(r.Path)]++
	g.mu.Unlock()
	return pep.Verdict{AppHeaders: []pep.Header{{Name: "X-User", Value: "alice"}}}
}

// Many streams of one HTTP/2 connection at once share its peer and its
// limiter slot and each get the whole pipeline: for the race detector
// (go test -race), which the end-to-end tests cannot give, since they run
// the binary.
func TestHTTP2ConcurrentStreamsShareTheConnection(t *testing.T) {
	g := &countingGuard{seen: map[string]int{}}
	h := startProxy(t, func(o *Options) {
		o.HTTP2, o.H2MaxStreams = true, 100
		o.Guard = g
		o.Limiter = ratelimit.NewUserspace(0, ratelimit.Limits{PacketRate: 1_000_000}, 1024)
	})
	cfg := h.clientTLS(t, clientID)
	cfg.NextProtos = []string{ProtoH2}
	c := &http.Client{Transport: &http2.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("/s/%d/../%d", i, i)
			req, _ := http.NewRequest("POST", h.url(path), strings.NewReader("body"))
			req.Header.Set("X-Forwarded-Client-Cert", "forged")
			resp, err := c.Do(req)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("hello POST /s/%d", i); resp.StatusCode != 200 || string(b) != want || resp.ProtoMajor != 2 || resp.Header.Get(HeaderRequestID) == "" {
				errs <- fmt.Errorf("%s: %s %d %q", path, resp.Proto, resp.StatusCode, b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	reqs := h.upstream.requests()
	if len(reqs) != n {
		t.Fatalf("the app got %d requests, want %d", len(reqs), n)
	}
	want := "By=" + ownID.String() + ";URI=" + clientID.String()
	for _, r := range reqs {
		if r.headers.Get("X-Forwarded-Client-Cert") != want || r.headers.Get("X-User") != "alice" || string(r.body) != "body" {
			t.Errorf("the app got %s with XFCC %q, X-User %q, body %q", r.uri, r.headers.Values("X-Forwarded-Client-Cert"), r.headers.Get("X-User"), r.body)
		}
	}
	if len(g.seen) != n {
		t.Errorf("the guard decided %d paths, want %d", len(g.seen), n)
	}
}

// Connections over MaxConnections are closed before their handshake while
// HTTP/2 connections hold the slots, and the refusals are logged once a
// second, not once each.
func TestHTTP2ConnectionsOverTheLimitAreRefused(t *testing.T) {
	h := startProxy(t, func(o *Options) { o.HTTP2, o.MaxConnections = true, 1 })
	cfg := h.clientTLS(t, clientID)
	cfg.NextProtos = []string{ProtoH2}
	held, err := tls.Dial("tcp", h.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := held.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if c, err := tls.Dial("tcp", h.addr, cfg); err == nil {
			c.Close()
			t.Fatal("a connection over MaxConnections completed its handshake")
		}
	}
	if n := strings.Count(h.logs.String(), `"event":"connection_refused"`); n < 1 || n > 2 {
		t.Errorf("%d connection_refused lines for 5 refusals within a second or two, want 1 or 2", n)
	}
}
