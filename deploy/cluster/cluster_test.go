package cluster

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/warden-sidecar/warden/deploy/inject"
	"github.com/warden-sidecar/warden/internal/appprobe"
)

// demoDeployment is an ordinary app Deployment: warden's demo app (from
// warden's image, another command, another user) on port 8080 with an HTTP
// readiness probe of that port. annotations go on the pod template.
func demoDeployment(ns, name string, annotations map[string]string) string {
	var a strings.Builder
	for k, v := range annotations {
		fmt.Fprintf(&a, "        %s: %q\n", k, v)
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[2]s}}
  template:
    metadata:
      labels: {app: %[2]s}
      annotations:
        warden.io/spiffe-socket-source: hostpath
%[3]s    spec:
      containers:
        - name: app
          image: %[4]s
          imagePullPolicy: Never
          args: [demo-app, --addr, "0.0.0.0:8080"]
          ports: [{name: http, containerPort: 8080}]
          securityContext: {runAsUser: 1000, runAsGroup: 1000}
          readinessProbe:
            httpGet: {path: /ready, port: 8080}
            periodSeconds: 1
            failureThreshold: 1
`, ns, name, a.String(), WardenImage)
}

// demo is the injected demo Deployment's pod, Ready (created once, shared
// by the tests that only read it).
func (e *env) demo(t *testing.T) *corev1.Pod {
	t.Helper()
	e.demoOnce.Do(func() {
		e.namespace(t, "shop", true)
		e.apply(t, demoDeployment("shop", "demo", nil))
	})
	return e.waitPod(t, "shop", "app=demo", "Ready", 3*time.Minute, ready)
}

func TestClusterPlainPodRuns(t *testing.T) {
	e := cluster(t)
	// Bound to the node, without a token: this pod needs neither the
	// scheduler nor the controller manager's token.
	e.namespace(t, "plain", false)
	e.apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: plain, labels: {app: plain}}
spec:
  nodeName: %s
  automountServiceAccountToken: false
  containers:
    - name: app
      image: %s
      imagePullPolicy: Never
      args: [demo-app, --addr, "0.0.0.0:8080"]
      securityContext: {runAsUser: 1000}
`, NodeName, WardenImage))
	p := e.waitPod(t, "plain", "app=plain", "Running", 2*time.Minute, running)
	if len(p.Spec.InitContainers) != 0 {
		t.Errorf("a pod of an unlabeled namespace was injected: %v", p.Spec.InitContainers)
	}
	// Straight to the app: nothing redirects here.
	var body string
	pollHTTP(t, "http://"+p.Status.PodIP+":8080/hello", func(code int, b string) bool { body = b; return code == 200 })
	if !strings.Contains(body, `"app": "warden demo-app"`) || !strings.Contains(body, `"path": "/hello"`) {
		t.Errorf("demo app answered %s", body)
	}
}

// 1. The webhook injects a Deployment's pod, which becomes Ready; warden
// (a native sidecar) started before the app; warden-init's rules are in
// the pod's network namespace.
func TestClusterInjectedPodRunsAndIsReady(t *testing.T) {
	e := cluster(t)
	p := e.demo(t)

	ic := p.Spec.InitContainers
	if len(ic) != 2 || ic[0].Name != inject.InitContainerName || ic[1].Name != inject.ContainerName ||
		ic[1].RestartPolicy == nil || *ic[1].RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Fatalf("init containers %+v", ic)
	}
	initStatus, warden, app := containerStatus(p, inject.InitContainerName), containerStatus(p, inject.ContainerName), containerStatus(p, "app")
	if initStatus == nil || initStatus.State.Terminated == nil || initStatus.State.Terminated.ExitCode != 0 {
		t.Errorf("warden-init: %+v", initStatus)
	}
	if warden == nil || warden.State.Running == nil || !warden.Ready || app == nil || app.State.Running == nil || !app.Ready {
		t.Fatalf("warden %+v, app %+v", warden, app)
	}
	// The pod status has seconds; the containers' logs have the kubelet's
	// nanosecond times. warden's first line comes before the app's first.
	if w, a := warden.State.Running.StartedAt.Time, app.State.Running.StartedAt.Time; a.Before(w) {
		t.Errorf("app started at %s, before warden at %s", a, w)
	}
	wFirst, aFirst := e.firstLogTime(t, p, inject.ContainerName), e.firstLogTime(t, p, "app")
	if !wFirst.Before(aFirst) {
		t.Errorf("warden's first log line at %s, the app's at %s: the app started first", wFirst, aFirst)
	}
	// warden was serving (its startup probe passed) before the app: its
	// "listening" line is older than the app's first line too.
	listening := e.findLog(t, p, inject.ContainerName, "listening", func(m map[string]any) bool {
		return m["event"] == "listening"
	})
	if lt, err := time.Parse(time.RFC3339Nano, fmt.Sprint(listening["time"])); err == nil && !lt.Before(aFirst) {
		t.Errorf("warden listening at %s, the app's first line at %s", lt, aFirst)
	}

	rules := e.inPod(t, p, "iptables-save", "-t", "nat")
	for _, want := range []string{
		"-A PREROUTING -p tcp -j WARDEN_INBOUND",
		"-A WARDEN_INBOUND -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 15443",
		"-A WARDEN_OUTPUT -m owner --uid-owner 1337 -j RETURN",
	} {
		if !strings.Contains(rules, want) {
			t.Errorf("the pod's nat table lacks %q:\n%s", want, rules)
		}
	}
	// The host's own table has none of it.
	if host, _ := runOut("iptables-save", "-t", "nat"); strings.Contains(host, "WARDEN_INBOUND") {
		t.Errorf("warden's chains are in the host's network namespace:\n%s", host)
	}
}

// 3. The app's readiness probe of its redirected port passes because the
// webhook pointed it at warden's /app-health; without the rewrite, the
// kubelet's plaintext probe lands on warden's mTLS port and fails.
func TestClusterRewrittenProbes(t *testing.T) {
	e := cluster(t)
	p := e.demo(t)
	app := containerOf(p, "app")
	if app.ReadinessProbe == nil || app.ReadinessProbe.HTTPGet == nil ||
		app.ReadinessProbe.HTTPGet.Path != appprobe.Path("app", appprobe.Readiness) || app.ReadinessProbe.HTTPGet.Port.IntValue() != 15000 {
		t.Errorf("the app's readiness probe was not rewritten: %+v", app.ReadinessProbe)
	}
	if s := containerStatus(p, "app"); s == nil || !s.Ready {
		t.Errorf("app not ready: %+v", s)
	}

	e.apply(t, demoDeployment("shop", "noprobe", map[string]string{inject.AnnotationRewriteProbes: "false"}))
	np := e.waitPod(t, "shop", "app=noprobe", "with the app running", 3*time.Minute, func(p *corev1.Pod) bool {
		s := containerStatus(p, "app")
		return s != nil && s.State.Running != nil
	})
	if app := containerOf(np, "app"); app.ReadinessProbe.HTTPGet.Path != "/ready" || app.ReadinessProbe.HTTPGet.Port.IntValue() != 8080 {
		t.Errorf("the probe was rewritten despite %s: %+v", inject.AnnotationRewriteProbes, app.ReadinessProbe)
	}
	// The kubelet reports the failed probe (an Unhealthy event of the app
	// container), and the pod is not Ready while warden is.
	e.waitEvent(t, "shop", np.Name, "Unhealthy", "Readiness probe failed")
	np = e.waitPod(t, "shop", "app=noprobe", "still there", time.Minute, func(p *corev1.Pod) bool { return p.UID == np.UID })
	if ready(np) {
		t.Errorf("the pod without the rewrite is Ready")
	}
	if s := containerStatus(np, inject.ContainerName); s == nil || !s.Ready {
		t.Errorf("warden of the pod without the rewrite is not ready: %+v", s)
	}
	if s := containerStatus(np, "app"); s == nil || s.Ready {
		t.Errorf("the app without the rewrite is ready: %+v", s)
	}
}

func containerOf(p *corev1.Pod, name string) *corev1.Container {
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == name {
			return &p.Spec.Containers[i]
		}
	}
	return nil
}

// pollHTTP GETs u until ok holds for the answer, for up to a minute.
func pollHTTP(t *testing.T, u string, ok func(code int, body string) bool) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	var last string
	deadline := time.Now().Add(time.Minute)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		resp, err := client.Get(u)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if ok(resp.StatusCode, string(b)) {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %s", u, last)
		}
		time.Sleep(wait)
	}
}
