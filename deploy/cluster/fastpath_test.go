package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	corev1 "k8s.io/api/core/v1"

	"github.com/warden-sidecar/warden/deploy/inject"
	"github.com/warden-sidecar/warden/internal/cgroup2"
)

// 6. With warden.io/fast-path: "sockmap", warden finds its pod's cgroup in
// the node's cgroup v2 hierarchy (on this hybrid node, the unified one:
// the kubelet and runc create the pod's and the containers' cgroups there
// too), attaches its sock_ops program there, and the mTLS requests of a
// client with an SVID reach the app through the sockhash: the answers are
// the app's, and /fastpath counts their bytes as redirected.
func TestClusterFastPathInPod(t *testing.T) {
	e := cluster(t)
	e.namespace(t, "fast", true)
	e.apply(t, demoDeployment("fast", "fast", map[string]string{
		inject.AnnotationFastPath: "sockmap", // no fallback: warden exits if it cannot attach
	}))
	// A warden that cannot attach exits and the kubelet restarts it: stop
	// at the first restart and show why.
	p := e.waitPod(t, "fast", "app=fast", "Ready, or warden restarted", 3*time.Minute, func(p *corev1.Pod) bool {
		s := containerStatus(p, inject.ContainerName)
		return ready(p) || (s != nil && (s.RestartCount > 0 || s.LastTerminationState.Terminated != nil))
	})
	if !ready(p) {
		t.Fatalf("warden did not start with the fast path (%+v); its log:\n%s",
			containerStatus(p, inject.ContainerName), strings.Join(e.containerLog(t, p, inject.ContainerName), "\n"))
	}

	// Where the pod is on the node: kubepods[/<qos>]/pod<uid> (cgroupfs)
	// in the cgroup v2 hierarchy, and each container's process in
	// <pod>/<container ID>, as warden and `cat /proc/<pid>/cgroup` see it.
	hostRoot, err := cgroup2.HostRoot("/sys/fs/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	rel := "kubepods"
	switch p.Status.QOSClass {
	case corev1.PodQOSBurstable:
		rel += "/burstable"
	case corev1.PodQOSBestEffort:
		rel += "/besteffort"
	}
	rel += "/pod" + string(p.UID)
	podDir := filepath.Join(hostRoot, rel)
	if _, err := os.Stat(filepath.Join(podDir, "cgroup.procs")); err != nil {
		t.Fatalf("the pod's cgroup v2 directory: %v", err)
	}
	for _, c := range []string{inject.ContainerName, "app"} {
		s := containerStatus(p, c)
		_, id, _ := strings.Cut(s.ContainerID, "://")
		if got, want := unifiedCgroupOf(t, e.containerPid(t, p, c)), "/"+rel+"/"+id; got != want {
			t.Errorf("%s's process is in the cgroup v2 %s, want its container's %s", c, got, want)
		}
	}
	t.Logf("pod %s (%s): cgroup v2 %s", p.UID, p.Status.QOSClass, podDir)

	// warden names it as seen through its read-only mount of the node's
	// /sys/fs/cgroup.
	seen := inject.HostCgroupMountPath + strings.TrimPrefix(hostRoot, "/sys/fs/cgroup") + "/" + rel
	on := e.findLog(t, p, inject.ContainerName, "fast_path_on", func(m map[string]any) bool { return m["event"] == "fast_path_on" })
	if on["cgroup"] != seen || on["port"] != float64(8080) {
		t.Errorf("fast_path_on: %v, want cgroup %s and port 8080", on, seen)
	}
	// The program is on the pod's cgroup, which holds both containers,
	// and on neither container's own.
	if n := len(sockOpsAt(t, podDir)); n != 1 {
		t.Errorf("%d sock_ops programs on the pod's cgroup %s, want 1", n, podDir)
	}
	wardenID := strings.SplitN(containerStatus(p, inject.ContainerName).ContainerID, "://", 2)[1]
	if n := len(sockOpsAt(t, filepath.Join(podDir, wardenID))); n != 0 {
		t.Errorf("%d sock_ops programs on warden's container cgroup, want 0", n)
	}
	for _, d := range []string{filepath.Dir(podDir), filepath.Join(hostRoot, "kubepods")} {
		if n := len(sockOpsAt(t, d)); n != 0 {
			t.Errorf("%d sock_ops programs on %s, which holds other pods", n, d)
		}
	}
	// The node's tree is mounted read-only in warden's container, with its
	// submounts (the unified hierarchy among them): read-only too where
	// the kubelet says the runtime made the mount recursively read-only
	// (recursiveReadOnly: IfPossible), writable by root otherwise
	// (containerd 1.6 here).
	mounts := hostCgroupMounts(t, e.containerPid(t, p, inject.ContainerName))
	rro := corev1.RecursiveReadOnlyMode("")
	for _, vm := range containerStatus(p, inject.ContainerName).VolumeMounts {
		if vm.Name == inject.HostCgroupVolume && vm.RecursiveReadOnly != nil {
			rro = *vm.RecursiveReadOnly
		}
	}
	for mp, opts := range mounts {
		if ro := slices.Contains(strings.Split(opts, ","), "ro"); !ro && (mp == inject.HostCgroupMountPath || rro == corev1.RecursiveReadOnlyEnabled) {
			t.Errorf("%s is mounted %s in warden's container (recursive read-only %q)", mp, opts, rro)
		}
	}
	if _, ok := mounts[inject.HostCgroupMountPath]; !ok {
		t.Errorf("warden's container has no mount at %s", inject.HostCgroupMountPath)
	}
	t.Logf("warden's mounts of the node's cgroup tree (recursive read-only %q): %v", rro, mounts)
	// Attached, then the capabilities that did it dropped.
	status := e.processStatus(t, p, inject.ContainerName)
	if !strings.Contains(status, "\nUid:\t1337\t1337\t1337\t1337\n") || !strings.Contains(status, "\nCapEff:\t0000000000000000\n") {
		t.Errorf("warden's uids or effective capabilities:\n%s", status)
	}

	before := e.fastPathView(t, p)
	if !before.Active || before.Mode != "sockmap" || before.Cgroup != seen || before.Port != 8080 {
		t.Fatalf("/fastpath: %+v", before)
	}

	// Requests whose paths the app echoes: each carries 2 KiB each way
	// between warden and the app. The kubelet's readiness probe (through
	// warden's /app-health, every second) adds a few hundred bytes a
	// second to the counters, so the bound below is what the requests
	// alone must have moved.
	const n, pad = 20, 2048
	client := e.mtlsClient(t)
	for i := range n {
		path := fmt.Sprintf("/orders/%02d-%s", i, strings.Repeat("x", pad))
		resp, err := client.Get("https://" + net.JoinHostPort(p.Status.PodIP, "8080") + path)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got demoAnswer
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil || got.App != "warden demo-app" || got.Path != path {
			t.Fatalf("request %d: %d %.200s", i, resp.StatusCode, body)
		}
	}
	after := e.fastPathView(t, p)
	msgs, bytes := after.MessagesRedirected-before.MessagesRedirected, after.BytesRedirected-before.BytesRedirected
	t.Logf("/fastpath after %d requests: %d messages, %d bytes redirected (%+v)", n, msgs, bytes, after)
	if msgs < 2*n || bytes < 2*n*pad {
		t.Errorf("%d requests moved %d messages and %d bytes through the sockhash, want at least %d and %d", n, msgs, bytes, 2*n, 2*n*pad)
	}
	// Both ends of warden's pooled connection to the app, made after the
	// attach (the app's container starts after warden is ready): nothing
	// fell back to TCP.
	if after.Sockets < 2 || after.Fallbacks != 0 || after.AddFailures != 0 {
		t.Errorf("/fastpath: %d sockets, %d fallbacks, %d add failures; want 2 or more, 0, 0", after.Sockets, after.Fallbacks, after.AddFailures)
	}
}

// fastPathStatus is warden's GET /fastpath.
type fastPathStatus struct {
	Mode               string `json:"mode"`
	Active             bool   `json:"active"`
	Reason             string `json:"reason"`
	Cgroup             string `json:"cgroup"`
	Port               int    `json:"port"`
	Sockets            uint64 `json:"sockets"`
	MessagesRedirected uint64 `json:"messages_redirected"`
	BytesRedirected    uint64 `json:"bytes_redirected"`
	Fallbacks          uint64 `json:"fallbacks"`
	SocketsAdded       uint64 `json:"sockets_added"`
	AddFailures        uint64 `json:"add_failures"`
	Error              string `json:"error"`
}

// fastPathView is warden's /fastpath, from its admin port on the pod IP.
func (e *env) fastPathView(t *testing.T, p *corev1.Pod) fastPathStatus {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + net.JoinHostPort(p.Status.PodIP, "15000") + "/fastpath")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v fastPathStatus
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/fastpath: %d %v", resp.StatusCode, err)
	}
	return v
}

// hostCgroupMounts are the mount options of the mounts at or under
// HostCgroupMountPath in the process's mount namespace, by mount point.
func hostCgroupMounts(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 5 && (f[4] == inject.HostCgroupMountPath || strings.HasPrefix(f[4], inject.HostCgroupMountPath+"/")) {
			m[f[4]] = f[5]
		}
	}
	return m
}

// unifiedCgroupOf is the process's cgroup v2 path (its /proc/<pid>/cgroup
// "0::" line, as the host sees it).
func unifiedCgroupOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "0::"); ok {
			return rest
		}
	}
	t.Fatalf("pid %d has no cgroup v2 line:\n%s", pid, b)
	return ""
}

// sockOpsAt are the sock_ops programs attached to the cgroup dir itself.
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
