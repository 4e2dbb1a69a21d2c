package bpftest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/internal/cgroup2"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// Cgroup is a cgroup v2 directory owned by one test.
type Cgroup struct {
	Path string
	fd   *os.File
}

// NewCgroup creates a cgroup v2 directory (under the unified hierarchy,
// /sys/fs/cgroup/unified in hybrid mode) and removes it when t ends, once
// the processes put in it have exited (a cgroup with members can't be
// removed: the test's children must be waited for by then).
func NewCgroup(t testing.TB) *Cgroup {
	t.Helper()
	testenv.RequirePrivileged(t, "creating a cgroup and attaching BPF programs need it")
	mnt, err := cgroup2.Mount()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mnt, "wd-test-"+randHex(5))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	fd, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cgroup{Path: dir, fd: fd}
	t.Cleanup(func() {
		fd.Close()
		// Members are gone once waited for, but the kernel may take a
		// moment to let go of the cgroup.
		var err error
		testenv.Poll(t, "cgroup "+dir+" removed", 10*time.Second, func() bool {
			err = os.Remove(dir)
			return err == nil || errors.Is(err, os.ErrNotExist)
		})
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			t.Logf("remove cgroup %s: %v (members: %s)", dir, err, strings.TrimSpace(string(procs)))
		}
	})
	return c
}

// Into makes cmd start inside the cgroup (clone3 with CLONE_INTO_CGROUP),
// keeping the rest of its SysProcAttr.
func (c *Cgroup) Into(cmd *exec.Cmd) *exec.Cmd {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(c.fd.Fd())
	return cmd
}

// FD is the cgroup directory's open file, for attach queries.
func (c *Cgroup) FD() int { return int(c.fd.Fd()) }
