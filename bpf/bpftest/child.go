package bpftest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// NoCgoTestBinary builds the calling package's tests with CGO_ENABLED=0
// into a directory of t's, and returns the binary's path. Raising and
// dropping capabilities on every thread (bpf.RaiseCapabilities) needs a
// binary without cgo, which a -race test binary is not: tests that check
// capabilities run such a binary as a child.
func NoCgoTestBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nocgo.test")
	build := exec.Command("go", "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go test -c with CGO_ENABLED=0: %v\n%s", err, out)
	}
	return bin
}

// Child is a process a test talks to line by line: the test reads the
// lines of its stdout and writes lines to its stdin. It is killed when the
// test ends.
type Child struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr bytes.Buffer
	lines  chan string
}

// childSilence is how long Next waits for a line.
const childSilence = 60 * time.Second

// StartChild starts cmd (in a namespace: Netns.Command) as a Child.
func StartChild(t testing.TB, cmd *exec.Cmd) *Child {
	t.Helper()
	c := &Child{t: t, cmd: cmd, lines: make(chan string)}
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	return c
}

// Next returns the child's next line. The test fails when the child stops
// or says nothing for a minute.
func (c *Child) Next() string {
	c.t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			_ = c.cmd.Wait()
			c.t.Fatalf("the child stopped: %s", c.stderr.String())
		}
		return l
	case <-time.After(childSilence):
		c.t.Fatalf("the child said nothing for %s: %s", childSilence, c.stderr.String())
	}
	return ""
}

// Send writes line to the child's stdin.
func (c *Child) Send(line string) {
	c.t.Helper()
	if _, err := fmt.Fprintln(c.stdin, line); err != nil {
		c.t.Fatalf("to the child: %v", err)
	}
}

// Stderr is what the child wrote to its stderr so far.
func (c *Child) Stderr() string { return c.stderr.String() }

// Wait waits for the child to exit.
func (c *Child) Wait() error { return c.cmd.Wait() }
