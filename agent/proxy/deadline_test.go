package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestLazyDeadlineNeverEarlyAtMostSlackLate(t *testing.T) {
	const slack = 100 * time.Millisecond
	base := time.Unix(1_700_000_000, 0)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	type step struct {
		set     time.Time
		arm     bool      // a deadline must be set on the connection
		armedAt time.Time // and it is this one
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"the first deadline is armed, a slack late", []step{{at(1000), true, at(1100)}}},
		{"a later one within the slack rides on the armed one", []step{{at(1000), true, at(1100)}, {at(1050), false, time.Time{}}, {at(1100), false, time.Time{}}}},
		{"one past the armed one is armed", []step{{at(1000), true, at(1100)}, {at(1101), true, at(1201)}}},
		{"an earlier one beyond the slack is armed", []step{{at(1000), true, at(1100)}, {at(500), true, at(600)}}},
		{"zero clears the armed one", []step{{at(1000), true, at(1100)}, {time.Time{}, true, time.Time{}}, {time.Time{}, false, time.Time{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d lazyDeadline
			for i, s := range tc.steps {
				d.set(s.set)
				got, ok := d.arm(slack)
				if ok != s.arm || (ok && !got.Equal(s.armedAt)) {
					t.Fatalf("step %d: arm = %v, %v; want %v, %v", i, got, ok, s.armedAt, s.arm)
				}
				if !s.set.IsZero() && (d.armed.Before(s.set) || d.armed.Sub(s.set) > slack) {
					t.Fatalf("step %d: armed %v for a deadline of %v: more than %v late or early", i, d.armed, s.set, slack)
				}
			}
			if _, ok := d.arm(slack); ok {
				t.Fatal("nothing was set, yet arm wants to set a deadline")
			}
		})
	}
}

// get sends a keep-alive GET on conn and reads its response.
func get(t *testing.T, conn net.Conn, br *bufio.Reader, path string) *http.Response {
	t.Helper()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: app\r\n\r\n", path)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// The timeouts still hold once the deadlines of a keep-alive connection are
// coalesced (from its first request on): each is checked on the third
// request of a connection.
func TestTimeoutsHoldOnKeepAliveConnections(t *testing.T) {
	t.Run("a client that goes silent mid-request is disconnected after the read timeout", func(t *testing.T) {
		h := startProxy(t, func(o *Options) { o.ReadTimeout, o.IdleTimeout = 300*time.Millisecond, 20*time.Second })
		conn := h.dialRaw(t, clientID)
		br := bufio.NewReader(conn)
		for range 2 {
			if resp := get(t, conn, br, "/a"); resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
		fmt.Fprint(conn, "GET /hel")
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, br)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("warden kept a client silent mid-request open for 5 s (read timeout 300 ms, idle timeout 20 s)")
		}
		if n := len(h.upstream.requests()); n != 2 {
			t.Errorf("app saw %d requests, want 2", n)
		}
	})
	t.Run("an idle keep-alive connection is closed after the idle timeout", func(t *testing.T) {
		h := startProxy(t, func(o *Options) { o.IdleTimeout, o.ReadTimeout = 300*time.Millisecond, 20*time.Second })
		conn := h.dialRaw(t, clientID)
		br := bufio.NewReader(conn)
		for range 3 {
			get(t, conn, br, "/a")
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, br)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("warden kept an idle connection open for 5 s (idle timeout 300 ms)")
		}
	})
	t.Run("a slow app gets 504 on a reused app connection", func(t *testing.T) {
		h := startProxy(t, func(o *Options) { o.UpstreamMaxConns = 1 })
		conn := h.dialRaw(t, clientID)
		br := bufio.NewReader(conn)
		for range 2 {
			get(t, conn, br, "/a")
		}
		if resp := get(t, conn, br, "/slow"); resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("status %d, want 504 (the app takes 700 ms, the upstream timeout is 300 ms)", resp.StatusCode)
		}
	})
}
