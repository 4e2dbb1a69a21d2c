package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/bundle"
	"github.com/warden-sidecar/warden/internal/secevent"
)

// lockedWriter is a bytes.Buffer for one writer goroutine and a reader.
type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// On stderr the events go through the root logger's own batched writer, so
// that a line of each never interleaves; a file gets them alone.
func TestSecurityLogSharesTheLogsWriterOnStderr(t *testing.T) {
	var out lockedWriter
	logOut := NewBatchWriter(&out, 0)
	a := New(config.Config{SecurityLog: "stderr"}, zerolog.New(logOut), WithLogWriter(logOut))
	l, closeLog, _, err := a.openSecurityLog()
	if err != nil {
		t.Fatal(err)
	}
	l.Event(secevent.PeerDenied, secevent.High).Send()
	a.log.Info().Str("event", "access").Send()
	closeLog()
	_ = logOut.Close() // flushes
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"event":"peer_denied"`) || !strings.Contains(lines[1], `"event":"access"`) {
		t.Fatalf("the root writer got %q, want the event then the access line", lines)
	}

	file := filepath.Join(t.TempDir(), "security.log")
	a = New(config.Config{SecurityLog: file}, zerolog.New(logOut))
	l, closeLog, dropped, err := a.openSecurityLog()
	if err != nil {
		t.Fatal(err)
	}
	l.Event(secevent.BundleRejected, secevent.High).Send()
	closeLog()
	b, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(b), `"event":"bundle_rejected"`) || dropped() != 0 {
		t.Fatalf("file %q (%v), %d dropped", b, err, dropped())
	}

	a = New(config.Config{SecurityLog: filepath.Join(t.TempDir(), "missing", "security.log")}, zerolog.New(logOut))
	if _, _, _, err := a.openSecurityLog(); err == nil || !strings.HasPrefix(err.Error(), "agent: WARDEN_SECURITY_LOG: open ") {
		t.Errorf("a file warden cannot create: %v", err)
	}
}

// bundle_rejected names the stage that failed; a bundle failing its
// signature is high, the rest medium.
func TestBundleRejectedNamesTheStage(t *testing.T) {
	for _, tt := range []struct {
		err              error
		reason, severity string
	}{
		{&bundle.LoadError{Source: "/b", Stage: "verify", Err: errors.New("signed files missing")}, "verify", "high"},
		{&bundle.LoadError{Source: "/b", Stage: "compile", Err: errors.New("rego_type_error")}, "compile", "medium"},
		{errors.New("bundle: https://b.example/x.tar.gz: 503"), "fetch", "medium"},
	} {
		var buf bytes.Buffer
		a := New(config.Config{}, zerolog.Nop())
		a.events = secevent.New(&buf, nil)
		a.bundleRejected(tt.err)
		var ev map[string]any
		if err := json.Unmarshal(buf.Bytes(), &ev); err != nil {
			t.Fatalf("%v: %q", err, buf.String())
		}
		if ev["event"] != "bundle_rejected" || ev["reason"] != tt.reason || ev["severity"] != tt.severity || ev["detail"] != tt.err.Error() {
			t.Errorf("%v: event %v, want reason %s, severity %s", tt.err, ev, tt.reason, tt.severity)
		}
	}
}
