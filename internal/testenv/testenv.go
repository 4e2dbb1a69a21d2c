package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// RequireEnv is the variable that turns a skip for missing privileges or
// tools into a failure.
const RequireEnv = "WARDEN_REQUIRE_PRIVILEGED_TESTS"

// Missing ends t for lacking what: it skips, or fails when RequireEnv is
// set.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv(RequireEnv) != "" {
		t.Fatalf("%s is set but this test lacks %s", RequireEnv, what)
	}
	t.Skipf("needs %s; set %s=1 to make this a failure", what, RequireEnv)
}

// RequirePrivileged ends t by Missing unless the process is root; why
// says what needs root.
func RequirePrivileged(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root ("+why+")")
	}
}

// NeedTool returns the path of the executable name, looked up in PATH
// unless name holds a slash; without it, it ends t by Missing, with
// install saying how to get it.
func NeedTool(t testing.TB, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" ("+install+")")
	}
	return path
}

// FreePort is a TCP port that was free on 127.0.0.1 a moment ago, for a
// process that must be told its port before it starts.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Poll calls cond until it returns true, and fails t if that takes longer
// than timeout. It waits 10ms between the first calls, backing off to
// 100ms.
func Poll(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := 10 * time.Millisecond; !cond(); wait = min(2*wait, 100*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(wait)
	}
}

// Process is a process started by StartProcess.
type Process struct {
	Cmd *exec.Cmd
	Log string // the file that has its stdout and stderr

	done chan struct{}
}

// logTail is how much of a log a failed test prints: its end, where the
// cause usually is.
const logTail = 64 << 10

// StartProcess starts cmd, its stdout and stderr going to a file named
// for name in a temporary directory. When t ends the process is killed,
// and if t failed the end of the log is printed.
func StartProcess(t testing.TB, name string, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Cmd: cmd, Log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.Log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("%s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(p.Log)
			if len(b) > logTail {
				b = b[len(b)-logTail:]
			}
			t.Logf("%s log (end):\n%s", name, b)
		}
	})
	return p
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }
