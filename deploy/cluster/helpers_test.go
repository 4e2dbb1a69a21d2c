package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/warden-sidecar/warden/deploy/inject"
	"github.com/warden-sidecar/warden/deploy/kubetest"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// apply creates the objects of a YAML stream.
func (e *env) apply(t *testing.T, manifest string) {
	t.Helper()
	objs, err := kubetest.Documents([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if _, err := e.node.Create(context.Background(), o, false, nil); err != nil {
			t.Fatalf("create %v %v: %v", o["kind"], o["metadata"], err)
		}
	}
}

// namespace creates a namespace, labeled for injection when injected; the
// controller manager creates its default ServiceAccount.
func (e *env) namespace(t *testing.T, name string, injected bool) {
	t.Helper()
	labels := map[string]string{}
	if injected {
		labels[inject.NamespaceLabel] = inject.LabelEnabled
	}
	ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name, "labels": labels}}
	if _, err := e.node.Create(context.Background(), ns, false, nil); err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	testenv.Poll(t, "the default ServiceAccount of "+name, time.Minute, func() bool {
		return e.node.Do(context.Background(), "GET", "/api/v1/namespaces/"+name+"/serviceaccounts/default", nil, nil) == nil
	})
}

// pods are the pods of ns whose labels match selector.
func (e *env) pods(t *testing.T, ns, selector string) []corev1.Pod {
	t.Helper()
	var list corev1.PodList
	if err := e.node.Do(context.Background(), "GET", "/api/v1/namespaces/"+ns+"/pods?labelSelector="+url.QueryEscape(selector), nil, &list); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// waitPod waits for one pod of ns matching selector for which cond holds,
// and returns it; on timeout it fails with the pods' status.
func (e *env) waitPod(t *testing.T, ns, selector, what string, timeout time.Duration, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var found *corev1.Pod
	var last []corev1.Pod
	deadline := time.Now().Add(timeout)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		last = e.pods(t, ns, selector)
		for i := range last {
			if cond(&last[i]) {
				found = &last[i]
			}
		}
		if found != nil {
			return found
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(statuses(last), "", "  ")
			t.Fatalf("timed out after %s waiting for a pod of %s (%s) %s; pods:\n%s", timeout, ns, selector, what, b)
		}
		time.Sleep(wait)
	}
}

func statuses(pods []corev1.Pod) map[string]corev1.PodStatus {
	m := map[string]corev1.PodStatus{}
	for _, p := range pods {
		m[p.Name] = p.Status
	}
	return m
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func running(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }

// containerStatus is the status of the (init) container name.
func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// podPid is the pid of the pod's sandbox (pause) process, whose network
// namespace is the pod's, found through containerd.
func (e *env) podPid(t *testing.T, p *corev1.Pod) int {
	t.Helper()
	out, err := e.node.Ctr("containers", "ls", "-q", fmt.Sprintf(`labels."io.kubernetes.pod.uid"==%s,labels."io.cri-containerd.kind"==sandbox`, p.UID))
	if err != nil {
		t.Fatalf("ctr containers ls: %v\n%s", err, out)
	}
	ids := strings.Fields(out)
	tasks, err := e.node.Ctr("tasks", "ls")
	if err != nil {
		t.Fatalf("ctr tasks ls: %v\n%s", err, tasks)
	}
	for _, line := range strings.Split(tasks, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "RUNNING" {
			for _, id := range ids {
				if f[0] == id {
					pid, _ := strconv.Atoi(f[1])
					return pid
				}
			}
		}
	}
	t.Fatalf("no running sandbox of pod %s (sandboxes %v):\n%s", p.Name, ids, tasks)
	return 0
}

// inPod runs a host command in the pod's network namespace.
func (e *env) inPod(t *testing.T, p *corev1.Pod, args ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(e.podPid(t, p)), "-n", "--"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("in pod %s: %s: %v\n%s", p.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// containerLog is what the container wrote (stdout and stderr), from the
// kubelet's pod logs: the CRI format's prefix (time, stream, tag) is cut.
func (e *env) containerLog(t *testing.T, p *corev1.Pod, container string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.node.PodLogs, p.Namespace+"_"+p.Name+"_"+string(p.UID), container, "*.log"))
	var lines []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			parts := strings.SplitN(sc.Text(), " ", 4)
			if len(parts) == 4 {
				lines = append(lines, parts[3])
			}
		}
		fh.Close()
	}
	return lines
}

// findLog polls the container's log for a JSON line for which match holds.
func (e *env) findLog(t *testing.T, p *corev1.Pod, container, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	var found map[string]any
	testenv.Poll(t, container+" log line: "+what, 30*time.Second, func() bool {
		for _, l := range e.containerLog(t, p, container) {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && match(m) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// firstLogTime is the kubelet's time of the container's first log line.
func (e *env) firstLogTime(t *testing.T, p *corev1.Pod, container string) time.Time {
	t.Helper()
	var first time.Time
	testenv.Poll(t, container+"'s first log line", 30*time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(e.node.PodLogs, p.Namespace+"_"+p.Name+"_"+string(p.UID), container, "0.log"))
		if len(files) == 0 {
			return false
		}
		b, err := os.ReadFile(files[0])
		if err != nil {
			return false
		}
		line, _, _ := strings.Cut(string(b), " ")
		first, err = time.Parse(time.RFC3339Nano, line)
		return err == nil
	})
	return first
}

// waitEvent waits for an event of the object name in ns with reason and a
// message starting with prefix; on timeout it fails with the events seen.
func (e *env) waitEvent(t *testing.T, ns, name, reason, prefix string) {
	t.Helper()
	var seen []string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var list corev1.EventList
		q := url.Values{"fieldSelector": {"involvedObject.name=" + name}}
		if err := e.node.Do(context.Background(), "GET", "/api/v1/namespaces/"+ns+"/events?"+q.Encode(), nil, &list); err != nil {
			t.Fatal(err)
		}
		seen = seen[:0]
		for _, ev := range list.Items {
			if ev.Reason == reason && strings.HasPrefix(ev.Message, prefix) {
				return
			}
			seen = append(seen, ev.Reason+": "+ev.Message)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event %q… of %s/%s in 2m; events:\n%s", reason, prefix, ns, name, strings.Join(seen, "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// runOut runs a host command and returns its combined output.
func runOut(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(b), err
}
