package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/deploy/kubetest"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// What the node is called and where its pods live. The bridge, network and
// subnet are the test's own, so that nothing else on the machine is
// touched and Close knows what to remove.
const (
	NodeName    = "warden-node"
	Bridge      = "wardencni0"
	Network     = "warden-cluster-test"
	Subnet      = "10.244.77.0/24"
	Gateway     = "10.244.77.1"
	PauseImage  = "warden.test/pause:1"
	WardenImage = "warden.test/warden:cluster"
	install     = "run `make cluster` (.ci/cluster-tools.sh) as root"
)

// Node is a running single-node cluster.
type Node struct {
	*kubetest.Cluster
	Dir        string // the temporary directory everything lives in
	Containerd string // containerd's socket
	PodLogs    string // the kubelet's pod logs directory

	ctr         string
	kubelet     *testenv.Process
	containerd  *testenv.Process
	netnsBefore map[string]bool
	// Directories outside Dir that containerd writes to whatever its
	// configuration: libcni's result cache and the shims' sockets.
	outside      []dirSnapshot
	kubeletLog   string
	containerLog string
	kcmLog       string
	schedulerLog string
}

// Tools are the paths of what the node runs; Tools ends t (skip, or
// failure under WARDEN_REQUIRE_PRIVILEGED_TESTS) when one is missing.
type Tools struct {
	Kubelet, ControllerManager, Scheduler string
	Containerd, Ctr, Runc, Nsenter        string
}

// FindTools finds the node's tools, and checks for root.
func FindTools(t testing.TB) Tools {
	t.Helper()
	testenv.RequirePrivileged(t, "a kubelet and containerd, which mount, create cgroups and network namespaces")
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		testenv.NeedTool(t, "/usr/lib/cni/"+p, "the CNI plugins of containernetworking-plugins: "+install)
	}
	kube := func(name string) string {
		return testenv.NeedTool(t, filepath.Join(kubetest.BinDir(), name), install+", or set WARDEN_KUBE_BIN_DIR")
	}
	return Tools{
		Kubelet:           kube("kubelet"),
		ControllerManager: kube("kube-controller-manager"),
		Scheduler:         kube("kube-scheduler"),
		Containerd:        testenv.NeedTool(t, "containerd", install),
		Ctr:               testenv.NeedTool(t, "ctr", install),
		Runc:              testenv.NeedTool(t, "runc", install),
		Nsenter:           testenv.NeedTool(t, "nsenter", install),
	}
}

// Images are OCI or Docker image archives to import, by reference.
type Images map[string]string

// Start runs the node until t ends: the API server and etcd
// (kubetest.Start), containerd with images imported, the controller manager,
// the scheduler and the kubelet; it returns once the node is Ready.
// images must include PauseImage.
func Start(t testing.TB, tools Tools, images Images) *Node {
	t.Helper()
	if _, ok := images[PauseImage]; !ok {
		t.Fatalf("cluster: no %s among the images", PauseImage)
	}
	// Short: containerd's and the shims' unix sockets are under it.
	dir, err := os.MkdirTemp("", "wcluster")
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Dir: dir, Containerd: filepath.Join(dir, "containerd.sock"), PodLogs: filepath.Join(dir, "pod-logs"),
		ctr: tools.Ctr, netnsBefore: netns(),
		outside: snapshot("/var/lib/cni/results", "/var/lib/cni", "/run/containerd/s", "/run/containerd")}
	// Registered first, so it runs last: after every process has stopped.
	t.Cleanup(func() { n.cleanup(t) })
	// What this run creates outside the directory, for a later run to
	// remove should this one die without its cleanup.
	var created []string
	for _, d := range n.outside {
		if !d.existed {
			created = append(created, d.path)
		}
	}
	write(t, filepath.Join(dir, "created-outside"), strings.Join(created, "\n"))

	n.Cluster = kubetest.Start(t)
	n.startContainerd(t, tools)
	for ref, archive := range images {
		n.importImage(t, ref, archive)
	}

	kc := n.Kubeconfig
	kcmPort, schedPort := testenv.FreePort(t), testenv.FreePort(t)
	n.kcmLog = testenv.StartProcess(t, "kube-controller-manager", daemon(tools.ControllerManager,
		"--kubeconfig="+kc, "--authentication-kubeconfig="+kc, "--authorization-kubeconfig="+kc,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(kcmPort),
		"--cert-dir="+filepath.Join(dir, "kcm-certs"),
		// ServiceAccount tokens and the kube-root-ca.crt ConfigMap that
		// every pod's projected token volume mounts.
		"--service-account-private-key-file="+filepath.Join(n.Cluster.Dir, "sa-key.pem"),
		"--root-ca-file="+filepath.Join(n.Cluster.Dir, "ca.pem"),
		"--use-service-account-credentials=false",
		"--v=1")).Log
	n.schedulerLog = testenv.StartProcess(t, "kube-scheduler", daemon(tools.Scheduler,
		"--kubeconfig="+kc, "--authentication-kubeconfig="+kc, "--authorization-kubeconfig="+kc,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(schedPort),
		"--cert-dir="+filepath.Join(dir, "scheduler-certs"), "--v=1")).Log
	n.startKubelet(t, tools)
	return n
}

func (n *Node) startContainerd(t testing.TB, tools Tools) {
	t.Helper()
	cniDir := filepath.Join(n.Dir, "cni")
	if err := os.MkdirAll(cniDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// bridge + host-local + loopback: each pod gets a veth on the test's
	// bridge and an address of Subnet; the host reaches pods through the
	// bridge's address (the gateway). No masquerading: nothing leaves
	// the machine, and no host iptables rule is left to clean.
	conflist := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": %q,
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q, "gateway": %q}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "loopback"}
  ]
}
`, Network, Bridge, filepath.Join(n.Dir, "cni-ipam"), Subnet, Gateway)
	write(t, filepath.Join(cniDir, "10-warden.conflist"), conflist)
	// Version 2 is containerd 1.6's format. runc's state (Root) is under
	// the directory too; cgroupfs, as the kubelet's cgroupDriver.
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  level = "info"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  enable_selinux = false
  # The pods' network namespaces under the state directory, not /run/netns.
  netns_mounts_under_state_dir = true
  # No process may lower its oom_score_adj where CAP_SYS_RESOURCE is not
  # in the bounding set (this VM, CI), and runc fails the pod sandbox's
  # -998: scores are clamped to containerd's own instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = %q
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
`, filepath.Join(n.Dir, "containerd-root"), filepath.Join(n.Dir, "containerd-state"), n.Containerd, n.Containerd+".ttrpc",
		PauseImage, tools.Runc, filepath.Join(n.Dir, "runc"), cniDir)
	write(t, filepath.Join(n.Dir, "containerd.toml"), config)
	n.containerd = testenv.StartProcess(t, "containerd", daemon(tools.Containerd, "--config", filepath.Join(n.Dir, "containerd.toml")))
	n.containerLog = n.containerd.Log
	testenv.Poll(t, "containerd serving on "+n.Containerd, 60*time.Second, func() bool {
		return exec.Command(n.ctr, "--address", n.Containerd, "version").Run() == nil
	})
}

// importImage imports an image archive into the namespace the CRI plugin
// uses, under ref.
func (n *Node) importImage(t testing.TB, ref, archive string) {
	t.Helper()
	out, err := n.Ctr("images", "import", archive)
	if err != nil {
		t.Fatalf("cluster: import %s: %v\n%s", archive, err, out)
	}
	if out, err := n.Ctr("images", "check", "name=="+ref); err != nil || !strings.Contains(out, ref) {
		t.Fatalf("cluster: %s not imported from %s: %v\n%s", ref, archive, err, out)
	}
}

// Ctr runs ctr against the node's containerd, in the CRI namespace.
func (n *Node) Ctr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, n.ctr, append([]string{"--address", n.Containerd, "-n", "k8s.io"}, args...)...).CombinedOutput()
	return string(out), err
}

func (n *Node) startKubelet(t testing.TB, tools Tools) {
	t.Helper()
	root := filepath.Join(n.Dir, "kubelet")
	if err := os.MkdirAll(n.PodLogs, 0o755); err != nil {
		t.Fatal(err)
	}
	// cgroup v1 (this VM's hybrid hierarchy) needs failCgroupV1: false
	// since 1.35. No swap check, no eviction on a test machine's disk,
	// no image garbage collection of the imported images; the kubelet's
	// API (logs, exec) is not used: the tests read the pod logs directory.
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzPort: 0
podLogsDir: %q
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %q}
authorization: {mode: AlwaysAllow}
evictionHard: {"memory.available": "0%%", "nodefs.available": "0%%", "nodefs.inodesFree": "0%%", "imagefs.available": "0%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
enforceNodeAllocatable: []
resolvConf: ""
syncFrequency: 5s
fileCheckFrequency: 5s
nodeStatusUpdateFrequency: 2s
serializeImagePulls: false
`, n.Containerd, testenv.FreePort(t), n.PodLogs, filepath.Join(n.Cluster.Dir, "ca.pem"))
	write(t, filepath.Join(n.Dir, "kubelet.yaml"), config)
	n.kubelet = testenv.StartProcess(t, "kubelet", daemon(tools.Kubelet,
		"--config="+filepath.Join(n.Dir, "kubelet.yaml"),
		// The admin's credentials: the test API server authorizes with
		// RBAC only (no Node authorizer), and the node is the test's.
		"--kubeconfig="+n.Kubeconfig,
		"--root-dir="+root, "--cert-dir="+filepath.Join(root, "pki"),
		"--hostname-override="+NodeName, "--v=2"))
	n.kubeletLog = n.kubelet.Log
	testenv.Poll(t, "node "+NodeName+" Ready", 3*time.Minute, func() bool {
		var node struct {
			Status struct {
				Conditions []struct{ Type, Status string } `json:"conditions"`
			} `json:"status"`
		}
		if err := n.Do(context.Background(), "GET", "/api/v1/nodes/"+NodeName, nil, &node); err != nil {
			return false
		}
		for _, c := range node.Status.Conditions {
			if c.Type == "Ready" {
				return c.Status == "True"
			}
		}
		return false
	})
}

// Logs are the ends of the kubelet's and containerd's logs, for a failed
// test's output.
func (n *Node) Logs() string {
	var b strings.Builder
	for _, f := range []struct{ name, path string }{{"kube-controller-manager", n.kcmLog}, {"kube-scheduler", n.schedulerLog},
		{"kubelet", n.kubeletLog}, {"containerd", n.containerLog}} {
		if f.path == "" {
			continue
		}
		data, _ := os.ReadFile(f.path)
		if len(data) > 16<<10 {
			data = data[len(data)-16<<10:]
		}
		fmt.Fprintf(&b, "--- %s log (end) ---\n%s\n", f.name, data)
	}
	return b.String()
}

// cleanup leaves the machine as it was: it runs after the kubelet,
// containerd and the control plane have been killed (testenv.StartProcess'
// cleanups run before this one).
func (n *Node) cleanup(t testing.TB) {
	var errs []error
	// The containers' processes, then their shims: killing a shim
	// leaves its container running, so the containers go first, by the
	// pids in the runc state of each (the kubepods cgroups hold them all).
	for _, pid := range cgroupPids() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range shimPids(n.Containerd) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(cgroupPids())+len(shimPids(n.Containerd)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if left := append(cgroupPids(), shimPids(n.Containerd)...); len(left) > 0 {
		errs = append(errs, fmt.Errorf("processes still running: %v", left))
	}
	// Mounts under the directory (overlay root filesystems, shm, the
	// kubelet's volumes), deepest first; then the pods' network
	// namespaces (bind mounts in /run/netns), which removes their veths.
	for _, m := range mountsUnder(n.Dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	for name := range netns() {
		if n.netnsBefore[name] || !strings.HasPrefix(name, "cni-") {
			continue
		}
		p := filepath.Join("/run/netns", name)
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
		}
	}
	if out, err := exec.Command("ip", "link", "del", Bridge).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
		errs = append(errs, fmt.Errorf("ip link del %s: %v: %s", Bridge, err, out))
	}
	for _, d := range n.outside {
		if err := d.restore(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, removeCgroups()...)
	if err := os.RemoveAll(n.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("cluster: cleanup: %v", err)
	}
}

// cgroupRoots are the kubelet's cgroups (cgroupsPerQOS: kubepods under
// each v1 controller, and in the unified hierarchy).
func cgroupRoots() []string {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	return roots
}

// cgroupPids are the processes in the kubelet's cgroups.
func cgroupPids() []int {
	seen := map[int]bool{}
	var pids []int
	for _, root := range cgroupRoots() {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// removeCgroups removes the kubelet's cgroups, children first.
func removeCgroups() []error {
	var errs []error
	for _, root := range cgroupRoots() {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// shimPids are the containerd-shim processes of the containerd at sock.
func shimPids(sock string) []int {
	return pidsOf(func(args []string) bool {
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			return false
		}
		for i, a := range args {
			if a == "-address" && i+1 < len(args) && args[i+1] == sock {
				return true
			}
		}
		return false
	})
}

// mountsUnder are the mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			mp := unescapeMount(fields[4])
			if mp == dir || strings.HasPrefix(mp, dir+"/") {
				out = append(out, mp)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// netns are the names in /run/netns.
func netns() map[string]bool {
	m := map[string]bool{}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		m[e.Name()] = true
	}
	return m
}

// cleanStale refuses to start beside another run (its kubelet is alive),
// and cleans up after a run that died without its cleanup (a -timeout
// panic: its processes died with it, but the shims, the pods' processes,
// mounts, the bridge, cgroups and temporary directories stay).
func cleanStale() error {
	var stale []string
	for _, pid := range pidsOf(func(args []string) bool {
		return filepath.Base(args[0]) == "kubelet" && slices.ContainsFunc(args, func(a string) bool {
			return strings.HasPrefix(a, "--root-dir="+os.TempDir()+"/wcluster")
		})
	}) {
		stale = append(stale, strconv.Itoa(pid))
	}
	if len(stale) > 0 {
		return fmt.Errorf("cluster: the kubelet of another cluster test runs (pids %s)", strings.Join(stale, ", "))
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "wcluster*", "containerd.toml"))
	_, bridgeErr := net.InterfaceByName(Bridge)
	if len(dirs) == 0 && bridgeErr != nil && len(cgroupRoots()) == 0 {
		return nil
	}
	for _, pid := range cgroupPids() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, d := range dirs {
		sock := filepath.Join(filepath.Dir(d), "containerd.sock")
		for _, pid := range shimPids(sock) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(cgroupPids()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, d := range dirs {
		dir := filepath.Dir(d)
		for _, m := range mountsUnder(dir) {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "created-outside")); err == nil {
			for _, p := range strings.Fields(string(b)) {
				_ = os.RemoveAll(p)
			}
		}
		_ = os.RemoveAll(dir)
	}
	_ = exec.Command("ip", "link", "del", Bridge).Run()
	// The test's other temporary directories (the images, the logs,
	// SPIRE's).
	if len(dirs) > 0 {
		for _, pattern := range []string{"wcluster-tb*", "wspire*"} {
			tmp, _ := filepath.Glob(filepath.Join(os.TempDir(), pattern))
			for _, d := range tmp {
				_ = os.RemoveAll(d)
			}
		}
	}
	if errs := removeCgroups(); len(errs) > 0 {
		return fmt.Errorf("cluster: cleaning up after an earlier run: %v", errors.Join(errs...))
	}
	if _, err := net.InterfaceByName(Bridge); err == nil {
		return fmt.Errorf("cluster: the bridge %s of an earlier run stays (ip link del %s)", Bridge, Bridge)
	}
	return nil
}

// pidsOf are the processes whose arguments match.
func pidsOf(match func(args []string) bool) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		if match(strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// daemon is a command for a long-running process of the node, killed with
// the test process if that dies first (a test binary's -timeout panics
// without running cleanups): the next run must not find a kubelet or a
// containerd of this one still running.
func daemon(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// dirSnapshot is what a directory held before the node started.
type dirSnapshot struct {
	path    string
	existed bool
	names   map[string]bool
}

// snapshot records the directories, children before parents.
func snapshot(paths ...string) []dirSnapshot {
	var out []dirSnapshot
	for _, p := range paths {
		s := dirSnapshot{path: p, names: map[string]bool{}}
		if entries, err := os.ReadDir(p); err == nil {
			s.existed = true
			for _, e := range entries {
				s.names[e.Name()] = true
			}
		}
		out = append(out, s)
	}
	return out
}

// restore removes what was added to the directory since the snapshot, or
// the directory if it was not there.
func (s dirSnapshot) restore() error {
	if !s.existed {
		return os.RemoveAll(s.path)
	}
	entries, _ := os.ReadDir(s.path)
	var errs []error
	for _, e := range entries {
		if !s.names[e.Name()] {
			errs = append(errs, os.RemoveAll(filepath.Join(s.path, e.Name())))
		}
	}
	return errors.Join(errs...)
}
