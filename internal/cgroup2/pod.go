package cgroup2

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Bounds of the search for a pod's cgroup. The kubelet puts a pod at
// depth 2 or 3 (kubepods[/burstable|besteffort]/pod<uid>); nested nodes
// (kind: /system.slice/docker-<id>.scope/kubelet.slice/...) go a few
// levels deeper. A node's tree has a few thousand directories.
const (
	podMaxDepth = 6
	podMaxDirs  = 50000
)

// ErrPodNotFound is returned by FindPod when no directory of the tree is
// the pod's.
var ErrPodNotFound = errors.New("cgroup2: no cgroup of the pod")

// HostRoot is the cgroup v2 root in dir, a read-only mount of a node's
// /sys/fs/cgroup: dir itself on a unified node, dir/unified on a hybrid
// one (cgroup v1 controllers at dir, v2 at dir/unified; the container
// runtime bind-mounts recursively, so the submount is there).
func HostRoot(dir string) (string, error) {
	var tried []string
	for _, d := range []string{dir, filepath.Join(dir, "unified")} {
		var st unix.Statfs_t
		if err := unix.Statfs(d, &st); err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", d, err))
			continue
		}
		if st.Type == unix.CGROUP2_SUPER_MAGIC {
			return d, nil
		}
		tried = append(tried, d+": not a cgroup v2 file system")
	}
	return "", fmt.Errorf("cgroup2: no cgroup v2 hierarchy at %s or %s/unified (%s)", dir, dir, strings.Join(tried, "; "))
}

// FindPod is the directory of the pod with this UID under root (a cgroup
// v2 root, see HostRoot), as the kubelet names it with either cgroup
// driver:
//
//	cgroupfs: kubepods[/burstable|/besteffort]/pod<uid>
//	systemd:  kubepods.slice[/kubepods-burstable.slice]/kubepods[-burstable]-pod<uid, - as _>.slice
//
// searched at most podMaxDepth levels down. It then checks that the pod is
// the caller's: pid, the caller's PID in its own PID namespace, must be in
// cgroup.procs of the pod's directory or of one of its children (a
// container). cgroup.procs lists PIDs as the reader's PID namespace sees
// them (0 for processes outside it), so a sidecar in the pod's PID
// namespace or in its own finds itself, and the UID of another pod,
// whatever the source of the mistake, is refused.
func FindPod(root, uid string, pid int) (string, error) {
	if uid == "" || strings.ContainsAny(uid, "/_") || strings.Contains(uid, "..") {
		return "", fmt.Errorf("cgroup2: pod UID %q: expected a UUID", uid)
	}
	names := map[string]bool{
		"pod" + uid: true, // cgroupfs
	}
	suffix := "-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice" // systemd
	var found []string
	visited := 0
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			if dir == root {
				return fmt.Errorf("cgroup2: %w", err)
			}
			return nil // a cgroup removed while we walk
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			if visited++; visited > podMaxDirs {
				return fmt.Errorf("cgroup2: more than %d cgroups under %s: search for pod %s given up", podMaxDirs, root, uid)
			}
			p := filepath.Join(dir, e.Name())
			if names[e.Name()] || strings.HasSuffix(e.Name(), suffix) {
				found = append(found, p)
				continue // a pod's containers hold no pod
			}
			if depth < podMaxDepth {
				if err := walk(p, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root, 1); err != nil {
		return "", err
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w %s under %s (searched %d levels for pod%s or *%s)", ErrPodNotFound, uid, root, podMaxDepth, uid, suffix)
	case 1:
	default:
		return "", fmt.Errorf("cgroup2: pod %s has %d cgroups under %s: %s; refusing to guess", uid, len(found), root, strings.Join(found, ", "))
	}
	dir := found[0]
	in, err := holds(dir, pid)
	if err != nil {
		return "", err
	}
	if !in {
		return "", fmt.Errorf("cgroup2: %s is not this pod's cgroup: PID %d is in neither its cgroup.procs nor those of its children", dir, pid)
	}
	return dir, nil
}

// holds says whether pid is in the cgroup.procs of dir or of a child.
func holds(dir string, pid int) (bool, error) {
	dirs := []string{dir}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("cgroup2: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(dir, e.Name()))
		}
	}
	want := strconv.Itoa(pid)
	for _, d := range dirs {
		f, err := os.Open(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue // a container gone meanwhile
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if sc.Text() == want {
				f.Close()
				return true, nil
			}
		}
		f.Close()
	}
	return false, nil
}
