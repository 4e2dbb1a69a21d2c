package cgroup2

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOwn(t *testing.T) {
	const hybrid = "1 0 0:1 / /sys rw - sysfs sysfs rw\n" +
		"2 1 0:2 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n" +
		"3 1 0:3 / MNT rw,relatime - cgroup2 cgroup2 rw\n"
	for _, c := range []struct {
		name, cgroup, mountinfo string
		events                  bool // the directory has cgroup.events
		want                    string
		err                     error
	}{
		{"a nested cgroup is found under the mount", "4:memory:/x\n0::/a/b\n", hybrid, true, "/a/b", nil},
		{"the root cgroup is refused", "0::/\n", hybrid, false, "", ErrRootCgroup},
		{"a cgroup namespace's root is refused", "0::/\n", hybrid, true, "", ErrCgroupNamespace},
		{"cgroup v1 only has no cgroup v2", "4:memory:/x\n", hybrid, false, "", ErrNoCgroup2},
		{"a mount over another, as in a container, is the one used", "0::/\n",
			"3 1 0:3 /.. /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n4 1 0:30 / MNT rw - cgroup2 cgroup2 rw\n", true, "", ErrCgroupNamespace},
		{"no cgroup2 mount", "0::/a\n", "1 0 0:1 / /sys rw - sysfs sysfs rw\n", false, "", ErrNoCgroup2},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			mnt := filepath.Join(dir, "mnt")
			if err := os.MkdirAll(filepath.Join(mnt, c.want), 0o755); err != nil {
				t.Fatal(err)
			}
			if c.events {
				if err := os.WriteFile(filepath.Join(mnt, c.want, "cgroup.events"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cg, mi := filepath.Join(dir, "cgroup"), filepath.Join(dir, "mountinfo")
			_ = os.WriteFile(cg, []byte(c.cgroup), 0o644)
			_ = os.WriteFile(mi, []byte(strings.ReplaceAll(c.mountinfo, "MNT", mnt)), 0o644)
			got, err := own(cg, mi)
			if !errors.Is(err, c.err) {
				t.Fatalf("error %v, want %v", err, c.err)
			}
			if c.err == nil && got != filepath.Join(mnt, c.want) {
				t.Fatalf("got %q, want %q", got, filepath.Join(mnt, c.want))
			}
		})
	}
}
