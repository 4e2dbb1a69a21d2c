package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stepApp is an app that answers each request with "answered <target>",
// out of step when asked: a target containing "slow" is answered late, one
// containing "drop" is answered and then the connection closed without
// warning, one containing "bye" is answered with Connection: close. It
// counts its open connections.
type stepApp struct {
	ln       net.Listener
	addr     string
	open     atomic.Int64
	peak     atomic.Int64
	accepted atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]bool
	seen     []string
	dropped  map[string]bool // the "drop" targets whose connection is closed
}

func startStepApp(t *testing.T, addr string) *stepApp {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	a := &stepApp{ln: ln, addr: ln.Addr().String(), conns: map[net.Conn]bool{}, dropped: map[string]bool{}}
	t.Cleanup(a.stop)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.accepted.Add(1)
			if n := a.open.Add(1); n > a.peak.Load() {
				a.peak.Store(n) // a test's peak, not exact under races: only an upper bound matters
			}
			a.mu.Lock()
			a.conns[c] = true
			a.mu.Unlock()
			go a.serve(c)
		}
	}()
	return a
}

// stop closes the listener and every connection: the app restarts or dies.
func (a *stepApp) stop() {
	a.ln.Close()
	a.mu.Lock()
	for c := range a.conns {
		c.Close()
	}
	a.mu.Unlock()
}

func (a *stepApp) serve(c net.Conn) {
	defer func() {
		a.mu.Lock()
		delete(a.conns, c)
		a.mu.Unlock()
		a.open.Add(-1)
		c.Close()
	}()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		target := req.URL.RequestURI()
		a.mu.Lock()
		a.seen = append(a.seen, target)
		a.mu.Unlock()
		if strings.Contains(target, "slow") {
			time.Sleep(150 * time.Millisecond)
		}
		body := "answered " + target
		head := "HTTP/1.1 200 OK\r\n"
		if strings.Contains(target, "bye") {
			head += "Connection: close\r\n"
		}
		fmt.Fprintf(c, "%sContent-Length: %d\r\n\r\n%s", head, len(body), body)
		if strings.Contains(target, "drop") {
			c.Close()
			a.mu.Lock()
			a.dropped[target] = true
			a.mu.Unlock()
			return
		}
		if strings.Contains(target, "bye") {
			return
		}
	}
}

// pipeline writes the requests for targets on conn at once and reads their
// answers in order; a failure is an answer ("error: ..."), so that it can
// run on any goroutine.
func pipeline(t *testing.T, conn net.Conn, targets []string) []string {
	t.Helper()
	var reqs strings.Builder
	for _, tg := range targets {
		fmt.Fprintf(&reqs, "GET %s HTTP/1.1\r\nHost: app\r\n\r\n", tg)
	}
	got := make([]string, len(targets))
	if _, err := io.WriteString(conn, reqs.String()); err != nil {
		got[0] = "error: " + err.Error()
		return got
	}
	br := bufio.NewReader(conn)
	for i := range targets {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			got[i] = "error: " + err.Error()
			return got
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got[i] = fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	return got
}

func (a *stepApp) hasDropped(target string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dropped[target]
}

// Two clients pipeline requests while the app answers them out of step (a
// slow answer, a connection dropped after an answer, Connection: close):
// each client gets its own answers, in order, with or without affinity.
// A batch ends at each drop, and the next is sent once the app has closed
// that connection: a request written while the app is closing its
// connection without saying so is lost (502), whoever proxies it, and
// warden never sends a request twice.
func TestPipelinedClientsGetTheirOwnAnswers(t *testing.T) {
	for _, affinity := range []bool{true, false} {
		t.Run(fmt.Sprintf("affinity %v", affinity), func(t *testing.T) {
			app := startStepApp(t, "127.0.0.1:0")
			h := startProxy(t, func(o *Options) { o.UpstreamAddr, o.UpstreamAffinity = app.addr, affinity })
			plans := [][]string{
				{"/a/slow", "/a/1", "/a/drop", "/a/2", "/a/slow2", "/a/3", "/a/bye"},
				{"/b/1", "/b/slow", "/b/2", "/b/drop", "/b/3", "/b/drop2", "/b/4", "/b/slow2", "/b/bye"},
			}
			got := make([][]string, len(plans))
			var wg sync.WaitGroup
			for i, plan := range plans {
				conn := h.dialRaw(t, clientID)
				wg.Go(func() {
					for len(plan) > 0 {
						n := len(plan)
						for j, tg := range plan {
							if strings.Contains(tg, "drop") {
								n = j + 1
								break
							}
						}
						got[i] = append(got[i], pipeline(t, conn, plan[:n])...)
						if last := plan[n-1]; strings.Contains(last, "drop") {
							eventually(func() bool { return app.hasDropped(last) })
						}
						plan = plan[n:]
					}
				})
			}
			wg.Wait()
			for i, plan := range plans {
				for j, tg := range plan {
					if want := "200 answered " + tg; got[i][j] != want {
						t.Errorf("client %d, request %d: got %q, want %q (all: %q)", i, j, got[i][j], want, got[i])
					}
				}
			}
			if n := len(app.seen); n != len(plans[0])+len(plans[1]) {
				t.Errorf("the app saw %d requests, want each once: %q", n, app.seen)
			}
		})
	}
}

// A pinned app connection the app closed or lost to a restart is noticed
// before the next request is written, and replaced: the client sees
// nothing of it.
func TestPinnedConnectionSurvivesAppRestart(t *testing.T) {
	app := startStepApp(t, "127.0.0.1:0")
	h := startProxy(t, func(o *Options) { o.UpstreamAddr = app.addr })
	conn := h.dialRaw(t, clientID)
	if got := pipeline(t, conn, []string{"/before"}); got[0] != "200 answered /before" {
		t.Fatalf("got %q", got)
	}
	app.stop()
	restarted := startStepApp(t, app.addr)
	for i := range 3 {
		tg := fmt.Sprintf("/after/%d", i)
		if got := pipeline(t, conn, []string{tg}); got[0] != "200 answered "+tg {
			t.Fatalf("after the app restarted: got %q", got)
		}
	}
	if n := restarted.accepted.Load(); n != 1 {
		t.Errorf("the restarted app accepted %d connections, want 1 (pinned again)", n)
	}
}

// Pinned connections and the shared pool together stay within
// UpstreamMaxConns, however many clients there are.
func TestAffinityKeepsWithinUpstreamMaxConns(t *testing.T) {
	app := startStepApp(t, "127.0.0.1:0")
	h := startProxy(t, func(o *Options) { o.UpstreamAddr, o.UpstreamMaxConns = app.addr, 4 })
	const clients, each = 10, 5
	var wg sync.WaitGroup
	errs := make(chan string, clients*each)
	for c := range clients {
		conn := h.dialRaw(t, clientID)
		wg.Go(func() {
			for i := range each {
				tg := fmt.Sprintf("/c%d/%d", c, i)
				if got := pipeline(t, conn, []string{tg}); got[0] != "200 answered "+tg {
					errs <- got[0]
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("got %q", e)
	}
	if p := app.peak.Load(); p > 4 {
		t.Errorf("the app saw %d connections open at once, WARDEN_UPSTREAM_MAX_CONNS is 4", p)
	}
	if n := h.srv.pins.open.Load(); n != 2 {
		t.Errorf("%d pinned connections, want 2 (half of 4; the other clients used the pool)", n)
	}
}

// The desynchronization checks hold on pinned connections: a stray answer
// left on the attacker's own app connection never reaches it as the
// answer to its next request.
func TestDesynchronizedPinnedConnectionIsNeverReused(t *testing.T) {
	for _, tt := range desyncAttacks() {
		t.Run(tt.name, func(t *testing.T) {
			app := startRawApp(t, tt.headBody, tt.delay)
			h := startProxy(t, func(o *Options) {
				o.UpstreamAddr = app.addr
				o.Hardening.AllowGetBody = true
			})
			attacker := h.dialRaw(t, clientID)
			status, body, _ := rawRequest(t, attacker, tt.attack)
			if status != 200 || strings.Contains(body, "/admin/secret") {
				t.Fatalf("attacker got %d %q", status, body)
			}
			app.waitAnswers(t, tt.answers) // the stray answer is on the attacker's pinned connection now
			if h.srv.pins.open.Load() != 1 {
				t.Fatalf("%d pinned connections, want the attacker's", h.srv.pins.open.Load())
			}
			status, body, _ = rawRequest(t, attacker, "GET /public/again HTTP/1.1\r\nHost: app\r\n\r\n")
			if status != 200 || body != "app answered /public/again" {
				t.Fatalf("the attacker's next request got %d %q, want its own answer", status, body)
			}
			if h.srv.UpstreamDesyncs() != 1 {
				t.Errorf("desyncs counted: %d, want 1", h.srv.UpstreamDesyncs())
			}
		})
	}
}
