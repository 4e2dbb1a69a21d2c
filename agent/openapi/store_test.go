package openapi

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/internal/testenv"
)

// syncBuffer is a log sink the watcher writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Through a rename, as a ConfigMap update or an editor does: the
	// watcher never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestStoreKeepsTheOldSpecWhenTheNewOneFails(t *testing.T) {
	v1, err := os.ReadFile("testdata/payments.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := os.ReadFile("testdata/payments-3.1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "spec.yaml")
	writeFile(t, file, string(v1))
	var logs syncBuffer
	st, err := NewStore(file, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	first := st.Spec()
	if !strings.Contains(logs.String(), `"event":"openapi_loaded"`) || !strings.Contains(logs.String(), `"revision":"`+first.Revision()+`"`) {
		t.Errorf("startup log %s lacks openapi_loaded with the revision", logs.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { st.Watch(ctx, 5*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()

	// A broken document: the old spec stays, one error is logged.
	writeFile(t, file, strings.Replace(string(v1), "paths:", "paths: [", 1))
	testenv.Poll(t, "openapi_reload_failed", 5*time.Second, func() bool {
		return strings.Contains(logs.String(), `"event":"openapi_reload_failed"`)
	})
	if st.Spec() != first {
		t.Fatal("a broken document replaced the spec in force")
	}
	if _, _, v := st.Spec().Validate(req{path: "/accounts/1"}.build()); v != nil {
		t.Errorf("the kept spec refuses a good request: %v", v)
	}
	line := logs.String()[strings.Index(logs.String(), `"event":"openapi_reload_failed"`):]
	if !strings.Contains(line, `"file":"`+file+`"`) || !strings.Contains(line, `"error":"openapi: `+file) {
		t.Errorf("failure log %s does not name the file and the error", line)
	}

	// A good document: served from the next polls on.
	writeFile(t, file, string(v2))
	testenv.Poll(t, "the new revision", 5*time.Second, func() bool { return st.Spec() != first })
	if got := st.Spec(); got.Revision() == first.Revision() || got.Operations() != first.Operations() {
		t.Errorf("new spec revision %s (%d operations); old %s (%d)", got.Revision(), got.Operations(), first.Revision(), first.Operations())
	}
	if n := strings.Count(logs.String(), `"event":"openapi_loaded"`); n != 2 {
		t.Errorf("openapi_loaded logged %d times; want 2 (startup, reload)", n)
	}
}

func TestStoreStartupFailureIsReturned(t *testing.T) {
	file := filepath.Join(t.TempDir(), "spec.yaml")
	writeFile(t, file, "openapi: 3.0.3\n")
	var logs syncBuffer
	_, err := NewStore(file, zerolog.New(&logs))
	if err == nil || !strings.HasPrefix(err.Error(), "openapi: "+file+": ") {
		t.Fatalf("error %v; want one naming %s", err, file)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q is not one line", err)
	}
	if logs.String() != "" {
		t.Errorf("the error was logged as well as returned: %s", logs.String())
	}
}

func TestStoreReportsBrokenContentOnce(t *testing.T) {
	v1, err := os.ReadFile("testdata/payments.yaml")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "spec.yaml")
	writeFile(t, file, string(v1))
	var logs syncBuffer
	st, err := NewStore(file, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(v1), "paths:", "paths: [", 1)
	writeFile(t, file, broken)
	for range 3 {
		st.poll()
	}
	// Rewritten with the same broken bytes: a new stat, the same content.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(file, later, later); err != nil {
		t.Fatal(err)
	}
	st.poll()
	if n := strings.Count(logs.String(), "openapi_reload_failed"); n != 1 {
		t.Errorf("the broken document was reported %d times; want once", n)
	}
	// The file vanishing is reported, and its return with the good
	// content reloads nothing new but is quiet.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	st.poll()
	if n := strings.Count(logs.String(), "openapi_reload_failed"); n != 2 {
		t.Errorf("a vanished file was reported %d times in all; want 2", n)
	}
	writeFile(t, file, string(v1))
	st.poll()
	if got := strings.Count(logs.String(), "openapi_loaded"); got != 2 {
		t.Errorf("openapi_loaded %d times; want 2 (startup, and the good content back after the broken one)", got)
	}
}

func TestStoreIgnoresATouch(t *testing.T) {
	v1, err := os.ReadFile("testdata/payments.yaml")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "spec.yaml")
	writeFile(t, file, string(v1))
	var logs syncBuffer
	st, err := NewStore(file, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	first := st.Spec()
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(file, later, later); err != nil {
		t.Fatal(err)
	}
	st.poll()
	if st.Spec() != first || strings.Count(logs.String(), "openapi_loaded") != 1 {
		t.Error("touching the file recompiled it")
	}
	if st.seen.mtime.Unix() != later.Unix() {
		t.Error("the poll did not read the touched file")
	}
}
