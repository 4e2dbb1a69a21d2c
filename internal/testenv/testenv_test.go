package testenv

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMissingSkipsWithoutTheVariable(t *testing.T) {
	t.Setenv(RequireEnv, "")
	var skipped bool
	t.Run("lacking", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Missing(t, "a unicorn")
	})
	if !skipped {
		t.Error("a test lacking something did not skip")
	}
	t.Run("a tool that is nowhere", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		NeedTool(t, "warden-no-such-tool", "nowhere")
	})
	if !skipped {
		t.Error("a test lacking a tool did not skip")
	}
}

func TestNeedToolFindsTools(t *testing.T) {
	if got := NeedTool(t, "sh", "a shell"); !strings.HasSuffix(got, "/sh") {
		t.Errorf("NeedTool(sh) = %q", got)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if got := NeedTool(t, self, "itself"); got != self {
		t.Errorf("NeedTool(%s) = %q", self, got)
	}
}

func TestFreePortCanBeListenedOn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

func TestPollReturnsOnceTrue(t *testing.T) {
	calls := 0
	Poll(t, "the third call", time.Second, func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Errorf("cond called %d times", calls)
	}
}

func TestStartProcessLogsAndEnds(t *testing.T) {
	p := StartProcess(t, "echo", exec.Command("sh", "-c", "echo out; echo err >&2"))
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the process did not end")
	}
	b, err := os.ReadFile(p.Log)
	if err != nil || string(b) != "out\nerr\n" {
		t.Errorf("log %q, %v", b, err)
	}
	var long *Process
	t.Cleanup(func() { // registered first, so run after StartProcess's

		select {
		case <-long.Done():
		default:
			t.Error("a process outlived its test")
		}
	})
	long = StartProcess(t, "sleep", exec.Command("sleep", "600"))
}
