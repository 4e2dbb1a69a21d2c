package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/compile"

	"github.com/warden-sidecar/warden/internal/testenv"
)

// docServer serves whatever document (a bundle, a JWKS) or failure the test
// sets, with an ETag, and counts the requests it gets.
type docServer struct {
	mu      sync.Mutex
	body    []byte
	status  int
	fetches atomic.Int64
}

func (s *docServer) set(status int, body []byte) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

func (s *docServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.fetches.Add(1)
	s.mu.Lock()
	status, body := s.status, s.body
	s.mu.Unlock()
	etag := fmt.Sprintf(`"%x"`, sha256.Sum256(body))
	if status == 200 && r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	w.WriteHeader(status)
	w.Write(body)
}

// opaBundle builds a real bundle with OPA's compiler, as `opa build` would.
func opaBundle(t *testing.T, revision, rego string) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	c := compile.New().WithAsBundle(true).WithFS(os.DirFS(dir)).WithPaths(".").WithRevision(revision).WithOutput(&out)
	if err := c.Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

const publicOnly = `package warden.authz
default allow := false
allow if startswith(input.path, "/public/")
`

const publicAndPrivate = `package warden.authz
default allow := false
allow if startswith(input.path, "/public/")
allow if input.path == "/private"
`

type policyStatus struct {
	Revision  string `json:"revision"`
	LoadedAt  string `json:"loaded_at"`
	LastError string `json:"last_error"`
	Active    bool   `json:"active"`
}

func readPolicy(t *testing.T, admin string) policyStatus {
	t.Helper()
	code, body := get(t, admin+"/policy")
	var st policyStatus
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("/policy: %d %s", code, body)
	}
	return st
}

func status(t *testing.T, c *http.Client, url string) int {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// A bundle served over HTTP decides; a new revision takes effect without a
// restart; a broken one is refused and the good one keeps deciding.
func TestPolicyBundleFromServerHotReloads(t *testing.T) {
	srv := &docServer{}
	srv.set(200, opaBundle(t, "r1", publicOnly))
	hs := httptest.NewServer(srv)
	defer hs.Close()

	decisions := filepath.Join(t.TempDir(), "decisions.log")
	w := startDevSidecar(t, "WARDEN_POLICY_BUNDLE="+hs.URL+"/bundle.tar.gz",
		"WARDEN_POLICY_POLL_INTERVAL=100ms", "WARDEN_DECISION_LOG="+decisions)
	admin, inbound, client := w.admin, w.inbound, w.client
	testenv.Poll(t, "readiness", 15*time.Second, func() bool { code, _ := get(t, admin+"/readyz"); return code == 200 })
	if st := readPolicy(t, admin); st.Revision != "r1" || !st.Active || st.LoadedAt == "" {
		t.Fatalf("/policy %+v, want revision r1 active", st)
	}

	if s := status(t, client, inbound+"/public/a"); s != 200 {
		t.Errorf("/public/a: %d, want 200", s)
	}
	if s := status(t, client, inbound+"/private"); s != 403 {
		t.Errorf("/private under r1: %d, want 403", s)
	}

	srv.set(200, []byte("this is not a bundle"))
	testenv.Poll(t, "the broken bundle to be refused", 15*time.Second, func() bool { return readPolicy(t, admin).LastError != "" })
	if st := readPolicy(t, admin); st.Revision != "r1" {
		t.Fatalf("a broken bundle replaced the good one: %+v", st)
	}
	if s := status(t, client, inbound+"/public/a"); s != 200 {
		t.Errorf("/public/a after a broken bundle: %d, want 200", s)
	}

	srv.set(200, opaBundle(t, "r2", publicAndPrivate))
	testenv.Poll(t, "revision r2", 15*time.Second, func() bool { return readPolicy(t, admin).Revision == "r2" })
	if s := status(t, client, inbound+"/private"); s != 200 {
		t.Errorf("/private under r2: %d, want 200", s)
	}

	// The audit log: one line per decision, with the input and the outcome.
	testenv.Poll(t, "decision log lines", 15*time.Second, func() bool {
		b, _ := os.ReadFile(decisions)
		return bytes.Count(b, []byte(`"event":"decision"`)) >= 4
	})
	b, _ := os.ReadFile(decisions)
	if !bytes.Contains(b, []byte(`"path":"/private"`)) || !bytes.Contains(b, []byte(`"revision":"r2"`)) {
		t.Errorf("decision log lacks the input or the revision:\n%s", b)
	}
}

// Until a first bundle is active, warden is not ready and denies everything.
func TestNoBundleMeansNotReadyAndClosed(t *testing.T) {
	srv := &docServer{}
	srv.set(500, nil)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	w := startDevSidecar(t, "WARDEN_POLICY_BUNDLE="+hs.URL+"/bundle.tar.gz")
	admin, inbound := w.admin, w.inbound
	if code, body := get(t, admin+"/readyz"); code != 503 || !strings.Contains(body, "policy not loaded") {
		t.Errorf("/readyz without a bundle: %d %s", code, body)
	}
	if s := status(t, w.client, inbound+"/public/a"); s != 403 {
		t.Errorf("request without a bundle: %d, want 403", s)
	}
}
