package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/warden-sidecar/warden/internal/cgroup2"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// testPodUID is the UID of the pod the tests build: its cgroup is
// kubepods/burstable/pod<uid>, as the kubelet's cgroupfs driver names it.
const testPodUID = "3a7d1e2f-5b6c-4d8e-9f01-23456789abcd"

// neighbourPodUID is another pod on the node, with a container of its own.
const neighbourPodUID = "7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"

// podCgroups creates kubepods/burstable/pod<uid>/{warden,app} under root,
// as the kubelet and the container runtime lay out a pod with warden
// injected, and removes them deepest first when t ends (after the
// processes put in them, whose cleanups, registered later, run first).
func podCgroups(t *testing.T, root string) (pod string) {
	t.Helper()
	pod = filepath.Join(root, "kubepods", "burstable", "pod"+testPodUID)
	made := []string{filepath.Join(root, "kubepods"), filepath.Join(root, "kubepods", "burstable"), pod,
		filepath.Join(pod, "warden"), filepath.Join(pod, "app"),
		filepath.Join(root, "kubepods", "burstable", "pod"+neighbourPodUID), filepath.Join(root, "kubepods", "burstable", "pod"+neighbourPodUID, "ctr")}
	t.Cleanup(func() {
		for i := len(made) - 1; i >= 0; i-- {
			testenv.Poll(t, "cgroup "+made[i]+" removed", 10*time.Second, func() bool {
				err := os.Remove(made[i])
				return err == nil || errors.Is(err, os.ErrNotExist)
			})
		}
	})
	for _, d := range made {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return pod
}

// intoCgroup makes commands start in the cgroup dir, as bpftest.Cgroup.Into.
func intoCgroup(t *testing.T, dir string) func(*exec.Cmd) *exec.Cmd {
	t.Helper()
	fd, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	return func(cmd *exec.Cmd) *exec.Cmd {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(fd.Fd())
		return cmd
	}
}

// startPodWarden starts warden as a container runtime starts the warden
// container of a pod the injector patched for warden.io/fast-path:
// "sockmap": in the pod's warden cgroup, at the root of its own cgroup,
// PID and mount namespaces, with the cgroup2 file system of its own
// namespace at the usual place, the node's /sys/fs/cgroup bind-mounted
// read-only (recursively, as recursiveReadOnly: IfPossible does) at
// WARDEN_FAST_PATH_HOST_CGROUP, the capabilities the injector adds and no
// other (BPF, NET_ADMIN, PERFMON: its bounding set, so root's permitted
// and effective sets too), and the variables the injector adds.
func (b *fastPathBed) startPodWarden(t *testing.T, pod, uid string, env ...string) *process {
	t.Helper()
	testenv.NeedTool(t, "unshare", "util-linux")
	testenv.NeedTool(t, "setpriv", "util-linux")
	mnt, err := cgroup2.Mount()
	if err != nil {
		t.Fatal(err)
	}
	const node = "/sys/fs/cgroup" // what the injector's hostPath volume mounts
	host := t.TempDir()
	ro := "mount -o remount,bind,ro " + host
	if mnt != node {
		ro += " && mount -o remount,bind,ro " + host + strings.TrimPrefix(mnt, node) // hybrid: the unified submount
	}
	script := "mount --rbind " + node + " " + host + " && " + ro +
		" && umount -l " + mnt + " && mount -t cgroup2 cgroup2 " + mnt +
		" && exec setpriv --bounding-set -all,+bpf,+net_admin,+perfmon " + wardenBin
	cmd := intoCgroup(t, filepath.Join(pod, "warden"))(exec.Command("nsenter", "--net=/run/netns/"+b.srv.Name,
		"unshare", "--cgroup", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--mount-proc",
		"sh", "-c", script))
	return startWardenCmd(t, cmd, append([]string{
		"WARDEN_IDENTITY=dev", "WARDEN_DEV_DIR=" + b.devDir,
		"WARDEN_INBOUND_ADDR=" + b.link.A4.String() + ":" + strconv.Itoa(nsInboundPort), "WARDEN_ADMIN_ADDR=" + b.admin,
		"WARDEN_UPSTREAM_ADDR=" + b.appAddr,
		// What the injector adds for warden.io/fast-path: "sockmap", but the
		// mount point, a directory of the test's.
		"WARDEN_FAST_PATH=sockmap", "WARDEN_FAST_PATH_CGROUP=pod", "WARDEN_POD_UID=" + uid,
		"WARDEN_FAST_PATH_HOST_CGROUP=" + host,
	}, env...)...)
}

// TestFastPathAtThePodsCgroup: warden in its own container's cgroup
// namespace, the app in a sibling container, as in a pod: with the node's
// cgroup tree mounted read-only and the pod's UID, warden finds the pod's
// cgroup, proves it is its own (its PID, 1 in its PID namespace, is in the
// warden container's cgroup.procs read through the mount), attaches there
// and redirects: byte-identical answers, counters that move. A UID of no
// pod, or of a neighbour pod warden is not in, fails startup naming the
// variables.
func TestFastPathAtThePodsCgroup(t *testing.T) {
	var pod string
	b := newFastPathBedApp(t, func(b *fastPathBed) func(*exec.Cmd) *exec.Cmd {
		pod = podCgroups(t, b.cg.Path)
		return intoCgroup(t, filepath.Join(pod, "app"))
	})
	mnt, _ := cgroup2.Mount()
	rel := strings.TrimPrefix(pod, mnt) // the pod's cgroup, relative to the hierarchy's root

	t.Run("found, attached and redirecting", func(t *testing.T) {
		p := b.startPodWarden(t, pod, testPodUID)
		p.listenAddr(t, "inbound")
		on := p.find(t, func(l map[string]any) bool { return l["event"] == "fast_path_on" })
		cg, _ := on["cgroup"].(string)
		if !strings.HasSuffix(cg, rel) || strings.HasPrefix(cg, mnt) {
			t.Fatalf("fast_path_on: %v, want the pod's cgroup ...%s seen through the host mount", on, rel)
		}
		v := b.view(t)
		if !v.Active || v.Mode != "sockmap" || v.Cgroup != cg {
			t.Fatalf("/fastpath: %+v", v)
		}
		c := b.client(20 * time.Second)
		for _, fc := range fastPathCases {
			r, err := fpFetch(c, b.url(fc.path))
			if err != nil || r.status != 200 || !bytes.Equal(r.body, wantBody(fc.path)) {
				t.Fatalf("GET %s: %d, %d bytes, %v; want 200 and the app's %d bytes", fc.path, r.status, len(r.body), err, len(wantBody(fc.path)))
			}
		}
		after := b.view(t)
		var total int
		for _, fc := range fastPathCases {
			total += len(wantBody(fc.path))
		}
		if after.MessagesRedirected == 0 || after.BytesRedirected < uint64(total) || after.Sockets == 0 {
			t.Fatalf("/fastpath after %d bytes of bodies: %+v; want them redirected by the sockhash", total, after)
		}
		// The program is on the pod's cgroup, not on warden's container.
		if n := len(sockOpsAt(t, pod)); n != 1 {
			t.Fatalf("%d sock_ops programs on the pod's cgroup, want 1", n)
		}
		if n := len(sockOpsAt(t, filepath.Join(pod, "warden"))); n != 0 {
			t.Fatalf("%d sock_ops programs on warden's container cgroup, want 0", n)
		}
	})

	for _, c := range []struct{ name, uid, why string }{
		{"a UID of no pod fails startup", "00000000-1111-4222-8333-444444444444", "cgroup2: no cgroup of the pod 00000000-1111-4222-8333-444444444444"},
		{"a neighbour pod's UID fails startup", neighbourPodUID, "is not this pod's cgroup: PID 1 is in neither its cgroup.procs nor those of its children"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := b.startPodWarden(t, pod, c.uid)
			select {
			case err := <-p.done:
				if err == nil {
					t.Fatal("warden exited 0")
				}
			case <-time.After(30 * time.Second):
				t.Fatal("warden started although its pod's cgroup was not found")
			}
			want := "WARDEN_FAST_PATH=sockmap: WARDEN_FAST_PATH_CGROUP=pod: WARDEN_POD_UID " + c.uid + " under WARDEN_FAST_PATH_HOST_CGROUP "
			if !strings.Contains(p.rawLog(), want) || !strings.Contains(p.rawLog(), c.why) {
				t.Fatalf("log does not say %q ... %q:\n%s", want, c.why, p.rawLog())
			}
			if n := len(sockOpsAt(t, filepath.Join(pod, "..", "pod"+neighbourPodUID))); n != 0 {
				t.Fatalf("%d sock_ops programs on the neighbour pod's cgroup", n)
			}
		})
	}
}

// sockOpsAt is the sock_ops programs attached to the cgroup dir itself.
func sockOpsAt(t *testing.T, dir string) []link.AttachedProgram {
	t.Helper()
	fd, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	r, err := link.QueryPrograms(link.QueryOptions{Target: int(fd.Fd()), Attach: ebpf.AttachCGroupSockOps})
	if err != nil {
		t.Fatal(err)
	}
	return r.Programs
}
