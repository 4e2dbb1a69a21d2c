package main

// `warden webhook` as a user runs it: the real binary, its certificate
// minted here, and (TestAPIServerWebhook) a real API server calling it.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/warden-sidecar/warden/deploy/inject"
	"github.com/warden-sidecar/warden/deploy/kubetest"
	"github.com/warden-sidecar/warden/internal/testenv"
)

const webhookImage = "registry.test/warden:e2e"

// webhook is a running `warden webhook`.
type webhook struct {
	*process
	addr     string
	certFile string
	keyFile  string
	client   *http.Client
}

// writeCert puts a certificate for 127.0.0.1 from ca into the files,
// replacing them atomically (as cert-manager and the kubelet do).
func writeCert(t *testing.T, ca *kubetest.CA, cn, certFile, keyFile string) {
	t.Helper()
	cert, key := ca.Issue(t, cn, nil, nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	for path, b := range map[string][]byte{certFile: cert, keyFile: key} {
		if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
}

func startWebhook(t *testing.T, ca *kubetest.CA, addr string) *webhook {
	t.Helper()
	dir := t.TempDir()
	w := &webhook{addr: addr, certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key")}
	writeCert(t, ca, "webhook-1", w.certFile, w.keyFile)
	w.process = startWardenCmd(t, exec.Command(wardenBin, "webhook"),
		"WARDEN_WEBHOOK_ADDR="+addr, "WARDEN_WEBHOOK_CERT="+w.certFile, "WARDEN_WEBHOOK_KEY="+w.keyFile,
		"WARDEN_SIDECAR_IMAGE="+webhookImage)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	w.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	t.Cleanup(w.client.CloseIdleConnections)
	w.find(t, func(l map[string]any) bool { return l["event"] == "listening" && l["listener"] == "webhook" })
	return w
}

func (w *webhook) servedCN(t *testing.T) string {
	t.Helper()
	conn, err := tls.Dial("tcp", w.addr, &tls.Config{InsecureSkipVerify: true}) // the name is what is checked
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

func TestWebhookRefusesBadConfigurationInOneLine(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"no sidecar image", nil, nil,
			"warden: config: WARDEN_SIDECAR_IMAGE is empty: expected the image of the injected sidecar, e.g. ghcr.io/warden-sidecar/warden:v0.1.0"},
		{"bad address", nil, []string{"WARDEN_SIDECAR_IMAGE=x", "WARDEN_WEBHOOK_ADDR=nowhere"},
			`warden: config: WARDEN_WEBHOOK_ADDR="nowhere": expected host:port, e.g. 127.0.0.1:8080`},
		{"no certificate", nil, []string{"WARDEN_SIDECAR_IMAGE=x", "WARDEN_WEBHOOK_ADDR=127.0.0.1:0", "WARDEN_WEBHOOK_CERT=/nonexistent/tls.crt"},
			"warden: webhook: admission: certificate file: stat /nonexistent/tls.crt: no such file or directory"},
		{"a default request above the default limit", nil, []string{"WARDEN_SIDECAR_IMAGE=x", "WARDEN_SIDECAR_MEMORY_REQUEST=1Gi"},
			"warden: inject: the injected memory request 1Gi is above its limit 256Mi: set WARDEN_SIDECAR_MEMORY_REQUEST and WARDEN_SIDECAR_MEMORY_LIMIT together"},
		{"a bad default quantity", nil, []string{"WARDEN_SIDECAR_IMAGE=x", "WARDEN_SIDECAR_CPU_LIMIT=2 cores"},
			`warden: config: WARDEN_SIDECAR_CPU_LIMIT="2 cores": expected a Kubernetes quantity above 0, such as 100m, 0.5 or 128Mi`},
		{"an argument", []string{"--port=1"}, []string{"WARDEN_SIDECAR_IMAGE=x"},
			`warden: webhook: unexpected argument "--port=1": the webhook is configured by WARDEN_WEBHOOK_* variables`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, wardenBin, append([]string{"webhook"}, tt.args...)...)
			cmd.Env = tt.env
			out, err := cmd.CombinedOutput()
			if err == nil || strings.TrimSpace(string(out)) != tt.want {
				t.Errorf("exit %v, output:\n%s\nwant:\n%s", err, out, tt.want)
			}
		})
	}
}

func TestWebhookInjectsAndReloadsItsCertificate(t *testing.T) {
	ca := kubetest.NewCA(t, "webhook CA")
	w := startWebhook(t, ca, "127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)))
	base := "https://" + w.addr

	if code := status(t, w.client, base+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	pod, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{"name": "orders", "annotations": map[string]string{"warden.io/upstream-port": "9000"}},
		"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": "app"}}},
	})
	review := func(path string, pod []byte) *admissionv1.AdmissionResponse {
		t.Helper()
		body, _ := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "uid-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Namespace: "shop", Name: "orders", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: pod}},
		})
		resp, err := w.client.Post(base+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.Response == nil || out.Response.UID != "uid-1" {
			t.Fatalf("%s: %d %+v %v", path, resp.StatusCode, out, err)
		}
		return out.Response
	}
	r := review(inject.PathNamespace, pod)
	if !r.Allowed || r.PatchType == nil || !strings.Contains(string(r.Patch), `"name":"WARDEN_UPSTREAM_PORT","value":"9000"`) ||
		!strings.Contains(string(r.Patch), webhookImage) {
		t.Errorf("/mutate: %+v\n%s", r, r.Patch)
	}
	if r := review(inject.PathOptIn, pod); !r.Allowed || len(r.Patch) != 0 || len(r.Warnings) != 1 {
		t.Errorf("/mutate/opt-in without the opt-in: %+v", r)
	}
	bad := bytes.Replace(pod, []byte("upstream-port"), []byte("upstream-prt"), 1)
	if r := review(inject.PathNamespace, bad); r.Allowed || r.Result == nil || r.Result.Code != 400 ||
		!strings.HasPrefix(r.Result.Message, "inject: unknown annotation warden.io/upstream-prt (did you mean warden.io/upstream-port?)") {
		t.Errorf("misspelt annotation: %+v", r.Result)
	}
	l := w.find(t, func(l map[string]any) bool { return l["event"] == "admission" && l["decision"] == "refused" })
	if l["namespace"] != "shop" || l["name"] != "orders" || l["allowed"] != false || !strings.Contains(l["message"].(string), "upstream-prt") {
		t.Errorf("log line %v", l)
	}
	w.find(t, func(l map[string]any) bool {
		return l["event"] == "admission" && l["decision"] == "injected" && l["patched"] == true && l["path"] == "/mutate"
	})

	// cert-manager renews the certificate: the next handshakes get it,
	// without a restart.
	if cn := w.servedCN(t); cn != "webhook-1" {
		t.Fatalf("serving %s", cn)
	}
	writeCert(t, ca, "webhook-2", w.certFile, w.keyFile)
	testenv.Poll(t, "the renewed certificate", 10*time.Second, func() bool { return w.servedCN(t) == "webhook-2" })
	w.find(t, func(l map[string]any) bool {
		return l["event"] == "certificate_loaded" && strings.Contains(l["subject"].(string), "webhook-2")
	})
	if code := status(t, w.client, base+"/healthz"); code != 200 {
		t.Errorf("/healthz after the renewal: %d", code)
	}
}

// The webhook against a real API server, registered with the configuration
// deploy/ ships (its selectors, match conditions and failure policies), with
// the Service reference swapped for the test's URL and CA.
func TestAPIServerWebhook(t *testing.T) {
	cluster := kubetest.Start(t)
	ctx := context.Background()
	ca := kubetest.NewCA(t, "webhook CA")
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	w := startWebhook(t, ca, addr)

	b, err := os.ReadFile("../../deploy/webhook/mutatingwebhookconfiguration.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(b, &mwc); err != nil {
		t.Fatal(err)
	}
	for i := range mwc.Webhooks {
		url := "https://" + addr + *mwc.Webhooks[i].ClientConfig.Service.Path
		mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca.PEM}
	}
	if _, err := cluster.Create(ctx, mwc, false, nil); err != nil {
		t.Fatalf("registering the webhook: %v", err)
	}
	cluster.CreateNamespace(t, "labeled", map[string]string{inject.NamespaceLabel: inject.LabelEnabled})
	cluster.CreateNamespace(t, "plain", nil)
	cluster.CreateNamespace(t, "disabled", map[string]string{inject.NamespaceLabel: "disabled"})

	n := 0
	create := func(ns string, annotations map[string]string, change ...func(*corev1.Pod)) (*corev1.Pod, []string, error) {
		t.Helper()
		n++
		pod := &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", n), Namespace: ns, Labels: map[string]string{"app": "orders"}, Annotations: annotations},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.test/orders:1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
		}
		for _, f := range change {
			f(pod)
		}
		var stored corev1.Pod
		warnings, err := cluster.Create(ctx, pod, false, &stored)
		if err == nil && (len(pod.Annotations) > 0 && !reflect.DeepEqual(stored.Annotations, pod.Annotations) || stored.Labels["app"] != "orders") {
			t.Errorf("%s/%s: metadata changed: %v %v", ns, pod.Name, stored.Annotations, stored.Labels)
		}
		return &stored, warnings, err
	}
	injected := func(p *corev1.Pod) bool {
		for _, c := range p.Spec.InitContainers {
			if c.Name == inject.ContainerName {
				return true
			}
		}
		return false
	}
	// checkInjected asserts what the API server stored for an injected pod.
	checkInjected := func(p *corev1.Pod, wantEnv map[string]string) {
		t.Helper()
		ic := p.Spec.InitContainers
		if len(ic) != 2 || ic[0].Name != inject.InitContainerName || ic[1].Name != inject.ContainerName ||
			ic[0].Image != webhookImage || ic[1].Image != webhookImage || !reflect.DeepEqual(ic[0].Args, []string{"init"}) {
			t.Fatalf("%s: init containers %+v", p.Name, ic)
		}
		side := ic[1]
		if side.RestartPolicy == nil || *side.RestartPolicy != corev1.ContainerRestartPolicyAlways ||
			side.ReadinessProbe == nil || side.ReadinessProbe.HTTPGet.Port.StrVal != "warden-admin" ||
			*side.SecurityContext.RunAsUser != 1337 || !*side.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("%s: sidecar %+v", p.Name, side)
		}
		got := map[string]string{}
		for _, e := range side.Env {
			got[e.Name] = e.Value
		}
		for k, v := range wantEnv {
			if got[k] != v {
				t.Errorf("%s: sidecar %s=%q, want %q (env %v)", p.Name, k, got[k], v, got)
			}
		}
		var socket bool
		for _, v := range p.Spec.Volumes {
			socket = socket || v.Name == "warden-spiffe-workload-api" && v.CSI != nil && v.CSI.Driver == "csi.spiffe.io"
		}
		if !socket || len(p.Spec.Containers) != 1 || p.Spec.Containers[0].Image != "registry.test/orders:1" {
			t.Errorf("%s: volumes %+v, containers %+v", p.Name, p.Spec.Volumes, p.Spec.Containers)
		}
	}
	reviewed := func(name string) bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, l := range w.logs {
			if l["event"] == "admission" && l["name"] == name {
				return true
			}
		}
		return false
	}

	// A labeled namespace: every pod, unless it opts out; tuned by
	// annotations; a second pass does not inject twice.
	p, warnings, err := create("labeled", nil)
	if err != nil {
		t.Fatal(err)
	}
	checkInjected(p, map[string]string{"WARDEN_IDENTITY": "workloadapi", "WARDEN_ADMIN_ADDR": "0.0.0.0:15000",
		"SPIFFE_ENDPOINT_SOCKET": "unix:///spiffe-workload-api/spire-agent.sock"})
	if len(warnings) != 0 {
		t.Errorf("warnings %v", warnings)
	}
	first := p
	p, _, err = create("labeled", map[string]string{"warden.io/upstream-port": "9000", "warden.io/conn-rate-limit": "50",
		"warden.io/allowed-peers": "spiffe://example.org/ns/shop/*"})
	if err != nil {
		t.Fatal(err)
	}
	checkInjected(p, map[string]string{"WARDEN_UPSTREAM_PORT": "9000", "WARDEN_CONN_RATE_LIMIT": "50", "WARDEN_ALLOWED_PEERS": "spiffe://example.org/ns/shop/*"})
	labeledOptedOut, _, err := create("labeled", map[string]string{"warden.io/inject": "false"})
	if err != nil || injected(labeledOptedOut) {
		t.Errorf("opted out: injected %v, %v", injected(labeledOptedOut), err)
	}
	if p, _, err := create("labeled", nil, func(p *corev1.Pod) { p.Spec.HostNetwork = true }); err != nil || injected(p) {
		t.Errorf("hostNetwork: injected %v, %v", injected(p), err)
	}
	again := first.DeepCopy()
	again.ObjectMeta = metav1.ObjectMeta{Name: "again", Namespace: "labeled", Labels: first.Labels}
	again.Status = corev1.PodStatus{}
	var stored corev1.Pod
	if _, err := cluster.Create(ctx, again, false, &stored); err != nil {
		t.Fatalf("second pass: %v", err)
	}
	if len(stored.Spec.InitContainers) != 2 || len(stored.Spec.Volumes) != len(first.Spec.Volumes) {
		t.Errorf("second pass: init containers %d, volumes %d (first pass %d)", len(stored.Spec.InitContainers), len(stored.Spec.Volumes), len(first.Spec.Volumes))
	}
	// A dry run is injected too (sideEffects: None).
	dry := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "dry", Namespace: "labeled"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	if _, err := cluster.Create(ctx, dry, true, &stored); err != nil || !injected(&stored) {
		t.Errorf("dry run: injected %v, %v", injected(&stored), err)
	}

	// The app's probe of its redirected port goes through warden's admin
	// port, and the sidecar is sized by annotation: what the API server
	// stores is valid and says so.
	p, warnings, err = create("labeled", map[string]string{"warden.io/cpu-limit": "500m", "warden.io/memory-limit": "300Mi"}, func(p *corev1.Pod) {
		p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
			ProbeHandler:   corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}},
			TimeoutSeconds: 2, PeriodSeconds: 7,
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	checkInjected(p, map[string]string{"WARDEN_APP_PROBES": `{"app/readiness":{"httpGet":{"path":"/ready","port":8080,"scheme":"HTTP"},"timeoutSeconds":2}}`})
	if rp := p.Spec.Containers[0].ReadinessProbe; rp.HTTPGet == nil || rp.HTTPGet.Path != "/app-health/app/readiness" || rp.HTTPGet.Port.IntValue() != 15000 ||
		rp.TimeoutSeconds != 2 || rp.PeriodSeconds != 7 {
		t.Errorf("the app's readiness probe as stored: %+v", rp)
	}
	if r := p.Spec.InitContainers[1].Resources; r.Limits.Cpu().String() != "500m" || r.Limits.Memory().String() != "300Mi" || r.Requests.Memory().String() != "64Mi" {
		t.Errorf("the sidecar's resources as stored: %+v", r)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings %v", warnings)
	}

	// Bad annotations are refused, naming the annotation, at kubectl apply.
	for _, tc := range []struct {
		ns          string
		annotations map[string]string
		want        string
	}{
		{"labeled", map[string]string{"warden.io/upstream-prt": "8080"},
			`admission webhook "inject.warden.io" denied the request: inject: unknown annotation warden.io/upstream-prt (did you mean warden.io/upstream-port?)`},
		{"labeled", map[string]string{"warden.io/memory-request": "1Gi"},
			`admission webhook "inject.warden.io" denied the request: inject: annotation warden.io/memory-request="1Gi": expected at most the memory limit 256Mi`},
		{"labeled", map[string]string{"warden.io/conn-rate-limit": "fast"},
			`admission webhook "inject.warden.io" denied the request: inject: annotation warden.io/conn-rate-limit: config: WARDEN_CONN_RATE_LIMIT="fast": expected a whole number from 0 (unlimited) to 1000000000`},
		{"plain", map[string]string{"warden.io/inject": "true", "warden.io/rate-limit-mode": "kernel"},
			`admission webhook "opt-in.inject.warden.io" denied the request: inject: annotation warden.io/rate-limit-mode: config: WARDEN_RATE_LIMIT_MODE="kernel": expected one of auto, ebpf, userspace, off`},
		{"plain", map[string]string{"warden.io/injct": "true"},
			`admission webhook "opt-in.inject.warden.io" denied the request: inject: unknown annotation warden.io/injct (did you mean warden.io/inject?)`},
	} {
		_, _, err := create(tc.ns, tc.annotations)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: %v\nwant: %s", tc.ns, tc.annotations, err, tc.want)
		}
	}
	out, err := cluster.Kubectl(t, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"typo","namespace":"labeled","annotations":{"warden.io/alowed-peers":"x"}},"spec":{"containers":[{"name":"app","image":"app"}]}}`,
		"apply", "-f", "-")
	if err == nil || !strings.Contains(err.Error(), "unknown annotation warden.io/alowed-peers (did you mean warden.io/allowed-peers?)") {
		t.Errorf("kubectl apply: %v %s", err, out)
	}

	// Other namespaces: a pod that opts in gets warden; one that mentions
	// warden without opting in is left alone, with a warning; one that does
	// not mention warden never reaches the webhook; a namespace labeled
	// disabled never does.
	p, _, err = create("plain", map[string]string{"warden.io/inject": "true", "warden.io/upstream-port": "3000"})
	if err != nil {
		t.Fatal(err)
	}
	checkInjected(p, map[string]string{"WARDEN_UPSTREAM_PORT": "3000"})
	p, warnings, err = create("plain", map[string]string{"warden.io/upstream-port": "3000"})
	if err != nil || injected(p) || len(warnings) != 1 || !strings.Contains(warnings[0], "warden is not injected") {
		t.Errorf("tuned, not opted in: injected %v, warnings %v, %v", injected(p), warnings, err)
	}
	quiet, _, err := create("plain", nil)
	if err != nil || injected(quiet) {
		t.Errorf("plain pod: injected %v, %v", injected(quiet), err)
	}
	optedOut, _, err := create("plain", map[string]string{"warden.io/inject": "false"})
	if err != nil || injected(optedOut) {
		t.Errorf("opted out in plain: %v %v", injected(optedOut), err)
	}
	p, _, err = create("disabled", map[string]string{"warden.io/inject": "true"})
	if err != nil || injected(p) {
		t.Errorf("disabled namespace: injected %v, %v", injected(p), err)
	}
	disabledPod := p.Name
	marker, _, err := create("labeled", nil)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Poll(t, "the marker's review", 10*time.Second, func() bool { return reviewed(marker.Name) })
	for _, name := range []string{labeledOptedOut.Name, quiet.Name, optedOut.Name, disabledPod} {
		if reviewed(name) {
			t.Errorf("pod %s reached the webhook", name)
		}
	}

	// The webhook down: with failurePolicy Fail, pods in labeled namespaces
	// (and pods that ask for warden elsewhere) are refused; pods that opted
	// out and every other pod are created as usual.
	_ = w.cmd.Process.Kill()
	testenv.Poll(t, "the webhook to be gone", 10*time.Second, func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	_, _, err = create("labeled", nil)
	if err == nil || !strings.Contains(err.Error(), `failed calling webhook "inject.warden.io"`) {
		t.Errorf("labeled, webhook down: %v", err)
	}
	_, _, err = create("plain", map[string]string{"warden.io/inject": "true"})
	if err == nil || !strings.Contains(err.Error(), `failed calling webhook "opt-in.inject.warden.io"`) {
		t.Errorf("opted in, webhook down: %v", err)
	}
	for _, tc := range []struct {
		ns          string
		annotations map[string]string
	}{
		{"labeled", map[string]string{"warden.io/inject": "false"}},
		{"plain", nil},
		{"plain", map[string]string{"warden.io/inject": "false"}},
		{"disabled", map[string]string{"warden.io/inject": "true"}},
	} {
		if p, _, err := create(tc.ns, tc.annotations); err != nil || injected(p) {
			t.Errorf("%s %v, webhook down: %v", tc.ns, tc.annotations, err)
		}
	}

	// Back up on the same address: pods are injected again.
	startWebhook(t, ca, addr)
	p, _, err = create("labeled", nil)
	if err != nil || !injected(p) {
		t.Errorf("webhook back: injected %v, %v", injected(p), err)
	}
}
