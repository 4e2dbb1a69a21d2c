package cgroup2

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/internal/testenv"
)

const podUID = "6f1c2a3b-4d5e-4f60-8a9b-0c1d2e3f4a5b"

// cgroupTree creates the directories under a fresh cgroup of the real
// cgroup v2 hierarchy and removes them, deepest first, when t ends.
func cgroupTree(t *testing.T, dirs ...string) string {
	t.Helper()
	testenv.RequirePrivileged(t, "creating cgroups needs it")
	mnt, err := Mount()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	root := filepath.Join(mnt, "wd-test-"+hex.EncodeToString(b))
	made := []string{root}
	t.Cleanup(func() {
		slices.SortFunc(made, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
		for _, d := range made {
			testenv.Poll(t, "cgroup "+d+" removed", 10*time.Second, func() bool {
				err := os.Remove(d)
				return err == nil || errors.Is(err, os.ErrNotExist)
			})
		}
	})
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		p := root
		for _, part := range strings.Split(d, "/") {
			p = filepath.Join(p, part)
			if err := os.Mkdir(p, 0o755); err == nil {
				made = append(made, p)
			} else if !errors.Is(err, os.ErrExist) {
				t.Fatal(err)
			}
		}
	}
	return root
}

// member starts a process in the cgroup dir and returns its PID; it is
// killed and waited for before the tree is removed.
func member(t *testing.T, dir string) int {
	t.Helper()
	fd, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

func TestFindPod(t *testing.T) {
	systemdUID := strings.ReplaceAll(podUID, "-", "_")
	for _, c := range []struct {
		name string
		dirs []string
		ctr  string // the container the process is in
		uid  string
		want string // the pod's directory, or "" for an error
		err  string
	}{
		{name: "cgroupfs driver, burstable pod",
			dirs: []string{"kubepods/burstable/pod" + podUID + "/app", "kubepods/burstable/pod" + podUID + "/warden", "kubepods/besteffort"},
			ctr:  "kubepods/burstable/pod" + podUID + "/warden", uid: podUID, want: "kubepods/burstable/pod" + podUID},
		{name: "cgroupfs driver, guaranteed pod",
			dirs: []string{"kubepods/pod" + podUID + "/warden", "kubepods/burstable"},
			ctr:  "kubepods/pod" + podUID + "/warden", uid: podUID, want: "kubepods/pod" + podUID},
		{name: "systemd driver, burstable pod",
			dirs: []string{"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + systemdUID + ".slice/cri-containerd-1.scope"},
			ctr:  "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + systemdUID + ".slice/cri-containerd-1.scope",
			uid:  podUID, want: "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + systemdUID + ".slice"},
		{name: "a pod deeper than the search is not found",
			dirs: []string{"a/b/c/d/e/f/pod" + podUID + "/warden"},
			ctr:  "a/b/c/d/e/f/pod" + podUID + "/warden", uid: podUID, err: "cgroup2: no cgroup of the pod " + podUID},
		{name: "another pod's UID is not found",
			dirs: []string{"kubepods/burstable/pod" + podUID + "/warden"},
			ctr:  "kubepods/burstable/pod" + podUID + "/warden", uid: "00000000-0000-0000-0000-000000000000",
			err: "cgroup2: no cgroup of the pod 00000000-0000-0000-0000-000000000000"},
		{name: "a UID found twice is refused",
			dirs: []string{"kubepods/burstable/pod" + podUID + "/warden", "kubepods.slice/kubepods-pod" + systemdUID + ".slice"},
			ctr:  "kubepods/burstable/pod" + podUID + "/warden", uid: podUID, err: "cgroup2: pod " + podUID + " has 2 cgroups under "},
		{name: "the pod's cgroup without the caller in it is refused",
			dirs: []string{"kubepods/burstable/pod" + podUID + "/warden", "kubepods/burstable/other/x"},
			ctr:  "kubepods/burstable/other/x", uid: podUID, err: "is not this pod's cgroup: PID "},
		{name: "a UID with a path in it is refused",
			dirs: []string{"kubepods/pod" + podUID + "/warden"},
			ctr:  "kubepods/pod" + podUID + "/warden", uid: "../kubepods", err: `cgroup2: pod UID "../kubepods": expected a UUID`},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := cgroupTree(t, c.dirs...)
			pid := member(t, filepath.Join(root, c.ctr))
			got, err := FindPod(root, c.uid, pid)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("FindPod: %q, %v; want an error containing %q", got, err, c.err)
				}
				return
			}
			if err != nil || got != filepath.Join(root, c.want) {
				t.Fatalf("FindPod: %q, %v; want %q", got, err, filepath.Join(root, c.want))
			}
		})
	}
}

func TestHostRoot(t *testing.T) {
	testenv.RequirePrivileged(t, "reading the cgroup hierarchy's file system type")
	mnt, err := Mount()
	if err != nil {
		t.Fatal(err)
	}
	// A node's /sys/fs/cgroup: the v2 root itself, or its parent in
	// hybrid mode.
	host := mnt
	if filepath.Base(mnt) == "unified" {
		host = filepath.Dir(mnt)
	}
	if got, err := HostRoot(host); err != nil || got != mnt {
		t.Fatalf("HostRoot(%s): %q, %v; want %q", host, got, err, mnt)
	}
	// A unified node: the mount is the hierarchy.
	if got, err := HostRoot(mnt); err != nil || got != mnt {
		t.Fatalf("HostRoot(%s): %q, %v; want it", mnt, got, err)
	}
	dir := t.TempDir()
	if _, err := HostRoot(dir); err == nil || !strings.Contains(err.Error(), "no cgroup v2 hierarchy at "+dir) {
		t.Fatalf("HostRoot(%s): %v", dir, err)
	}
}
