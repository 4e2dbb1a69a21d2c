package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Two clients pipeline requests through the real binary while the app
// answers out of step (a late answer, a connection closed after an answer):
// each client gets its own answers, in order, and the app sees each request
// once, with connection affinity and with the shared pool. A batch ends at
// each dropped connection, and the next is sent once the app has closed it:
// a request written while the app closes its connection without saying so
// is lost (502), whoever proxies it, since warden never sends a request
// twice.
func TestPipelinedClientsGetTheirOwnAnswers(t *testing.T) {
	const policy = `package warden.authz
default allow := false
allow if startswith(input.path, "/p/")
`
	for _, affinity := range []string{"on", "off"} {
		t.Run("WARDEN_UPSTREAM_AFFINITY="+affinity, func(t *testing.T) {
			app := startApp(t, appOptions{outOfStep: true})
			s := startSidecar(t, app, "WARDEN_POLICY_BUNDLE="+policyDir(t, policy), "WARDEN_UPSTREAM_AFFINITY="+affinity)
			plans := [][]string{
				{"/p/a/slow", "/p/a/1", "/p/a/drop", "/p/a/2", "/p/a/slow2", "/p/a/3"},
				{"/p/b/1", "/p/b/slow", "/p/b/2", "/p/b/drop", "/p/b/3", "/p/b/drop2", "/p/b/4", "/p/b/slow2"},
			}
			got := make([][]string, len(plans))
			var wg sync.WaitGroup
			for i, plan := range plans {
				c := s.dial(t)
				wg.Go(func() {
					for len(plan) > 0 {
						n := len(plan)
						for j, tg := range plan {
							if strings.Contains(tg, "drop") {
								n = j + 1
								break
							}
						}
						got[i] = append(got[i], pipelined(c.Conn, c.br, plan[:n])...)
						if last := plan[n-1]; strings.Contains(last, "drop") {
							deadline := time.Now().Add(10 * time.Second)
							for app.answeredTarget(last) == 0 && time.Now().Before(deadline) {
								time.Sleep(5 * time.Millisecond) // polled: the app has closed once it counts the answer
							}
						}
						plan = plan[n:]
					}
				})
			}
			wg.Wait()
			for i, plan := range plans {
				for j, tg := range plan {
					if want := "200 app answered " + tg; j >= len(got[i]) || got[i][j] != want {
						t.Errorf("client %d, request %d: got %q, want %q", i, j, got[i], want)
						break
					}
				}
			}
			for _, tg := range append(plans[0], plans[1]...) {
				if n := app.receivedTarget(tg); n != 1 {
					t.Errorf("the app received %s %d times, want once", tg, n)
				}
			}
		})
	}
}

// pipelined writes the requests for targets at once and reads their answers
// in order; a failure is an answer ("error: ..."), so that it can run on
// any goroutine.
func pipelined(w io.Writer, br *bufio.Reader, targets []string) []string {
	var reqs strings.Builder
	for _, tg := range targets {
		fmt.Fprintf(&reqs, "GET %s HTTP/1.1\r\nHost: app.local\r\n\r\n", tg)
	}
	got := make([]string, 0, len(targets))
	if _, err := io.WriteString(w, reqs.String()); err != nil {
		return append(got, "error: "+err.Error())
	}
	for range targets {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return append(got, "error: "+err.Error())
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got = append(got, fmt.Sprintf("%d %s", resp.StatusCode, b))
	}
	return got
}
