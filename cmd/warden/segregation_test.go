package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/compile"

	"github.com/warden-sidecar/warden/internal/testenv"
)

// segregationClient holds an SVID for id from the sidecar's development CA.
func segregationClient(t *testing.T, s *sidecar, id string) *http.Client {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "client")
	if out, err := devIssueCmd(t, s.devDir, id, dir); err != nil {
		t.Fatalf("dev issue %s: %v\n%s", id, err, out)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS(t, dir)}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func getStatus(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The default bundle's segregation matrix, through the real binary: each
// caller holds an SVID with its SPIFFE ID, warden runs as the callee's ID.
// A forbidden call gets 403, never reaches the app, and its decision log
// line says "segregation".
func TestSegregationDefaultMatrix(t *testing.T) {
	const td = "spiffe://warden.local"
	callees := []struct {
		own   string
		calls []struct {
			caller string
			allow  bool
		}
	}{
		{own: td + "/env/prod/zone/internal/sa/payments", calls: []struct {
			caller string
			allow  bool
		}{
			{td + "/env/prod/zone/internal/sa/orders", true},
			{td + "/env/dev/zone/internal/sa/orders", false},
			{td + "/env/test/zone/internal/sa/orders", false},
			{td + "/env/staging/zone/internal/sa/orders", false},
			{td + "/env/prod/zone/public/sa/gateway", false},
			{td + "/env/prod/zone/partner/sa/feed", false},
			{td + "/env/dev/env/prod/zone/internal/sa/sneaky", false}, // ambiguous
			{td + "/ns/default/sa/legacy", true},                      // no labels: unknown passes
		}},
		{own: td + "/env/dev/zone/public/sa/sandbox", calls: []struct {
			caller string
			allow  bool
		}{
			{td + "/env/test/zone/public/sa/runner", true},
			{td + "/env/prod/zone/internal/sa/payments", false}, // prod may not call dev
			{td + "/env/dev/zone/internal/sa/tool", true},       // internal may call public
		}},
	}
	for _, callee := range callees {
		app := startApp(t, appOptions{})
		decisions := filepath.Join(t.TempDir(), "decisions.log")
		s := startSidecar(t, app, "WARDEN_SPIFFE_ID="+callee.own, "WARDEN_DECISION_LOG="+decisions)
		for i, call := range callee.calls {
			name := fmt.Sprintf("%s calls %s", call.caller, callee.own)
			c := segregationClient(t, s, call.caller)
			path := fmt.Sprintf("/call-%d", i)
			code, body := getStatus(t, c, "https://"+s.addr+path)
			want := map[bool]int{true: 200, false: 403}[call.allow]
			if code != want {
				t.Errorf("%s: %d %s, want %d", name, code, body, want)
				continue
			}
			if got := app.receivedTarget(path); call.allow != (got == 1) {
				t.Errorf("%s: the app received %s %d times", name, path, got)
			}
			if !call.allow {
				if strings.TrimSpace(body) != `{"error":"forbidden","request_id":"`+requestIDOf(body)+`"}` {
					t.Errorf("%s: body %s", name, body)
				}
				line := decisionLine(t, decisions, path)
				if !strings.Contains(line, `"reason":"segregation"`) || !strings.Contains(line, `"result":{"allow":false,"reason":["segregation"]}`) {
					t.Errorf("%s: decision log line lacks reason segregation:\n%s", name, line)
				}
			}
		}
	}
}

func requestIDOf(body string) string {
	_, id, _ := strings.Cut(body, `"request_id":"`)
	id, _, _ = strings.Cut(id, `"`)
	return id
}

// decisionLine polls the decision log for the line of the request to path.
func decisionLine(t *testing.T, file, path string) string {
	t.Helper()
	var found string
	testenv.Poll(t, "the decision log line of "+path, 10*time.Second, func() bool {
		b, _ := os.ReadFile(file)
		for _, l := range bytes.Split(b, []byte("\n")) {
			if bytes.Contains(l, []byte(`"path":"`+path+`"`)) {
				found = string(l)
				return true
			}
		}
		return false
	})
	return found
}

// segregationBundle is the default bundle's policy with data.json replaced,
// built as `opa build` would: what an operator ships to change the matrix.
func segregationBundle(t *testing.T, revision string, edit func(string) string) []byte {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("..", "..", "bundle", "default")
	for _, f := range []string{"authz.rego", "segregation.rego", "warden/segregation/data.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".json") {
			b = []byte(edit(string(b)))
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, f), string(b))
	}
	var out bytes.Buffer
	c := compile.New().WithAsBundle(true).WithFS(os.DirFS(dir)).WithPaths(".").WithRevision(revision).WithOutput(&out)
	if err := c.Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// An operator lets dev call prod by shipping only new data: warden polls the
// bundle and the outcome flips, without a restart, and back.
func TestSegregationMatrixIsData(t *testing.T) {
	unchanged := func(s string) string { return s }
	devMayCallProd := func(s string) string {
		edited := strings.Replace(s, `"dev": ["dev", "test"]`, `"dev": ["dev", "test", "prod"]`, 1)
		if edited == s {
			t.Fatal("the internal matrix's dev row is not where the test expects it")
		}
		return edited
	}
	srv := &docServer{}
	srv.set(200, segregationBundle(t, "r1", unchanged))
	hs := httptest.NewServer(srv)
	defer hs.Close()

	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_SPIFFE_ID=spiffe://warden.local/env/prod/zone/internal/sa/payments",
		"WARDEN_POLICY_BUNDLE="+hs.URL+"/bundle.tar.gz", "WARDEN_POLICY_POLL_INTERVAL=100ms")
	dev := segregationClient(t, s, "spiffe://warden.local/env/dev/zone/internal/sa/orders")
	pid := s.cmd.Process.Pid

	if code, body := getStatus(t, dev, "https://"+s.addr+"/r1"); code != 403 {
		t.Fatalf("dev -> prod under the default data: %d %s, want 403", code, body)
	}
	srv.set(200, segregationBundle(t, "r2", devMayCallProd))
	testenv.Poll(t, "revision r2", 15*time.Second, func() bool { return readPolicy(t, s.admin).Revision == "r2" })
	if code, body := getStatus(t, dev, "https://"+s.addr+"/r2"); code != 200 {
		t.Fatalf("dev -> prod once the data allows it: %d %s, want 200", code, body)
	}
	if app.receivedTarget("/r1") != 0 || app.receivedTarget("/r2") != 1 {
		t.Fatalf("the app received /r1 %d and /r2 %d times, want 0 and 1", app.receivedTarget("/r1"), app.receivedTarget("/r2"))
	}
	srv.set(200, segregationBundle(t, "r1", unchanged))
	testenv.Poll(t, "revision r1 again", 15*time.Second, func() bool { return readPolicy(t, s.admin).Revision == "r1" })
	if code, body := getStatus(t, dev, "https://"+s.addr+"/r3"); code != 403 {
		t.Fatalf("dev -> prod after the data is reverted: %d %s, want 403", code, body)
	}
	if s.cmd.Process.Pid != pid || s.cmd.ProcessState != nil {
		t.Fatal("warden restarted")
	}
}
