package cgroup2

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

var (
	// ErrRootCgroup is returned by Own when the process is in the root
	// cgroup, which holds every process on the host.
	ErrRootCgroup = errors.New("cgroup2: the process is in the root cgroup, which holds every process on the host")
	// ErrCgroupNamespace is returned by Own when the process is at the
	// root of its own cgroup namespace: its cgroup holds no other
	// container, and the others' cgroups are not visible from inside.
	ErrCgroupNamespace = errors.New("cgroup2: the process is at the root of its own cgroup namespace (a container's default): the cgroups of other containers are not visible from it")
	// ErrNoCgroup2 is returned by Own without a cgroup v2 hierarchy.
	ErrNoCgroup2 = errors.New("cgroup2: no cgroup v2 hierarchy is mounted (cgroup v1 only)")
)

// Own is the directory of the calling process's cgroup v2, found
// from /proc/self/cgroup's "0::" line and the cgroup2 mount in
// /proc/self/mountinfo (at /sys/fs/cgroup, or /sys/fs/cgroup/unified in
// hybrid mode).
func Own() (string, error) {
	return own("/proc/self/cgroup", "/proc/self/mountinfo")
}

func own(cgroupFile, mountinfo string) (string, error) {
	rel, err := cgroup2Path(cgroupFile)
	if err != nil {
		return "", err
	}
	mnt, root, err := cgroup2Mount(mountinfo)
	if err != nil {
		return "", err
	}
	sub, ok := strings.CutPrefix(rel, root)
	if !ok || (sub != "" && !strings.HasPrefix(sub, "/") && root != "/") {
		return "", fmt.Errorf("cgroup2: cgroup %s is outside the cgroup2 mount at %s (root %s)", rel, mnt, root)
	}
	dir := filepath.Join(mnt, sub)
	if filepath.Clean(rel) == "/" {
		// The real root cgroup has no cgroup.events; a cgroup namespace's
		// root is an ordinary cgroup that does.
		if _, err := os.Stat(filepath.Join(dir, "cgroup.events")); err == nil {
			return dir, ErrCgroupNamespace
		}
		return dir, ErrRootCgroup
	}
	return dir, nil
}

func cgroup2Path(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("cgroup2: read own cgroup: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if p, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "0::"); ok {
			return p, nil
		}
	}
	return "", ErrNoCgroup2
}

// cgroup2Mount is the last cgroup2 mount's mount point and the cgroup
// path at its root ("/" unless a subtree is bind-mounted). The last, since
// a mount over another hides it; mounts whose root is outside the
// process's cgroup namespace (shown as "/..") are not usable from it.
func cgroup2Mount(mountinfo string) (mnt, root string, err error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", "", fmt.Errorf("cgroup2: read mounts: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent maj:min root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		fields := strings.Fields(pre)
		if len(fields) < 5 || strings.HasPrefix(fields[3], "/..") {
			continue
		}
		mnt, root = unescapeMount(fields[4]), unescapeMount(fields[3])
	}
	if err := sc.Err(); err != nil {
		return "", "", fmt.Errorf("cgroup2: read mounts: %w", err)
	}
	if mnt == "" {
		return "", "", ErrNoCgroup2
	}
	return mnt, root, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + c - '0'
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Mount is where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup,
// or /sys/fs/cgroup/unified in hybrid mode.
func Mount() (string, error) {
	mnt, _, err := cgroup2Mount("/proc/self/mountinfo")
	return mnt, err
}
