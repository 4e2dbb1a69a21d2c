package cluster

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/warden-sidecar/warden/agent/ratelimit"
	"github.com/warden-sidecar/warden/deploy/inject"
)

// 4. warden, as uid 1337 with the image's file capabilities and the
// injected container's, loads its eBPF program on the pod's interface; a
// flood of new connections from another network namespace (the host's,
// through the bridge) loses its excess SYNs in the kernel, and /ratelimit
// on the admin port says so.
func TestClusterEBPFInPod(t *testing.T) {
	e := cluster(t)
	e.namespace(t, "edge", true)
	e.apply(t, demoDeployment("edge", "limited", map[string]string{
		"warden.io/rate-limit-mode": "ebpf", // no fallback: warden exits if it cannot load
		"warden.io/conn-rate-limit": "1",
		"warden.io/conn-burst":      "3",
	}))
	p := e.waitPod(t, "edge", "app=limited", "Ready", 3*time.Minute, ready)

	// The process is uid 1337 and no longer holds the capabilities it
	// loaded the program with.
	status := e.processStatus(t, p, inject.ContainerName)
	if !strings.Contains(status, "\nUid:\t1337\t1337\t1337\t1337\n") {
		t.Errorf("warden's uids:\n%s", status)
	}
	if !strings.Contains(status, "\nCapEff:\t0000000000000000\n") {
		t.Errorf("warden kept effective capabilities:\n%s", status)
	}
	if link := e.inPod(t, p, "ip", "-details", "link", "show", "dev", "eth0"); !strings.Contains(link, "xdp") {
		t.Errorf("no XDP program on the pod's eth0:\n%s", link)
	}

	// 8 new connections at once to the app's (redirected) port, at 1/s
	// with a burst of 3: 3 are answered, 5 SYNs are dropped. The dial
	// timeout is below the first SYN retransmission (1s), so no second
	// SYN meets a refilled bucket.
	addr := net.JoinHostPort(p.Status.PodIP, "8080")
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 700*time.Millisecond)
			if err == nil {
				ok.Add(1)
				c.Close()
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 3 {
		t.Errorf("%d of 8 connections at once at 1/s, burst 3, were answered; want 3", ok.Load())
	}

	v := e.rateLimitView(t, p)
	if v.Mode != "ebpf" || v.Interface != "eth0" || !strings.HasPrefix(v.Attach, "xdp") {
		t.Fatalf("/ratelimit: mode %q on %q as %q (%s)", v.Mode, v.Interface, v.Attach, v.FallbackReason)
	}
	if v.Counters.Dropped.ConnRate != 5 {
		t.Errorf("conn_rate drops %d, want 5", v.Counters.Dropped.ConnRate)
	}
	if len(v.TopSources) != 1 || v.TopSources[0] != (ratelimit.SourceDrops{IP: Gateway, Dropped: 5}) {
		t.Errorf("top sources %+v, want the host's address on the bridge, %s, with 5", v.TopSources, Gateway)
	}
	if v.CapabilitiesKept != "" {
		t.Errorf("capabilities kept: %s", v.CapabilitiesKept)
	}
}

// rateLimitView is warden's /ratelimit, from its admin port on the pod IP
// (the kubelet's way in, never redirected).
func (e *env) rateLimitView(t *testing.T, p *corev1.Pod) ratelimit.Status {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + net.JoinHostPort(p.Status.PodIP, "15000") + "/ratelimit")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v ratelimit.Status
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/ratelimit: %d %v", resp.StatusCode, err)
	}
	return v
}

// processStatus is /proc/<pid>/status of the container's process.
func (e *env) processStatus(t *testing.T, p *corev1.Pod, container string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.containerPid(t, p, container)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// containerPid is the host pid of the container's process, found through
// containerd.
func (e *env) containerPid(t *testing.T, p *corev1.Pod, container string) int {
	t.Helper()
	out, err := e.node.Ctr("containers", "ls", "-q", fmt.Sprintf(`labels."io.kubernetes.pod.uid"==%s,labels."io.kubernetes.container.name"==%s`, p.UID, container))
	if err != nil {
		t.Fatalf("ctr containers ls: %v\n%s", err, out)
	}
	ids := strings.Fields(out)
	tasks, err := e.node.Ctr("tasks", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(tasks, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[2] != "RUNNING" {
			continue
		}
		for _, id := range ids {
			if f[0] == id {
				pid, err := strconv.Atoi(f[1])
				if err != nil {
					t.Fatalf("ctr tasks ls: pid %q", f[1])
				}
				return pid
			}
		}
	}
	t.Fatalf("no running %s container in pod %s:\n%s", container, p.Name, tasks)
	return 0
}
