package deploy_test

// The manifests in deploy/: that they fit together (names, ports, paths,
// labels the webhook and deploy/inject share), and, against a real API
// server, that they are valid Kubernetes objects as `kubectl apply -k`
// renders them.

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/deploy/inject"
	"github.com/warden-sidecar/warden/deploy/kubetest"
)

// load reads the resources of a kustomization, following directories,
// without kustomize's transformers (the API server test renders with
// kubectl for those). It also checks that every YAML file of a directory
// is listed, so none is left out of the install by mistake.
func load(t *testing.T, dir string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	var objs []map[string]any
	listed := map[string]bool{}
	for _, r := range k.Resources {
		path := filepath.Join(dir, r)
		listed[filepath.Clean(path)] = true
		if info, err := os.Stat(path); err == nil && info.IsDir() {
			objs = append(objs, load(t, path)...)
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := kubetest.Documents(b)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		objs = append(objs, docs...)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		if filepath.Base(f) != "kustomization.yaml" && !listed[filepath.Clean(f)] {
			t.Errorf("%s is not in %s/kustomization.yaml", f, dir)
		}
	}
	return objs
}

func find(t *testing.T, objs []map[string]any, kind, name string, into any) {
	t.Helper()
	for _, o := range objs {
		meta, _ := o["metadata"].(map[string]any)
		if o["kind"] == kind && meta["name"] == name {
			b, _ := json.Marshal(o)
			if err := json.Unmarshal(b, into); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("no %s %s", kind, name)
}

func env(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

func TestWebhookManifestsFitTogether(t *testing.T) {
	objs := load(t, ".")
	var (
		ns   corev1.Namespace
		sa   corev1.ServiceAccount
		dep  appsv1.Deployment
		svc  corev1.Service
		mwc  admissionregistrationv1.MutatingWebhookConfiguration
		cert struct {
			Spec struct {
				SecretName string
				DNSNames   []string
			}
		}
		caCert struct{ Spec struct{ IsCA bool } }
	)
	find(t, objs, "Namespace", "warden-system", &ns)
	find(t, objs, "ServiceAccount", "warden-webhook", &sa)
	find(t, objs, "Deployment", "warden-webhook", &dep)
	find(t, objs, "Service", "warden-webhook", &svc)
	find(t, objs, "MutatingWebhookConfiguration", "warden-injector", &mwc)
	find(t, objs, "Certificate", "warden-webhook", &cert)
	find(t, objs, "Certificate", "warden-webhook-ca", &caCert)
	for _, o := range objs {
		if o["kind"] == "DaemonSet" {
			t.Error("deploy/ has a DaemonSet: warden runs per pod")
		}
	}

	if ns.Labels[inject.NamespaceLabel] != "disabled" {
		t.Errorf("warden-system must be labeled %s=disabled, has %v", inject.NamespaceLabel, ns.Labels)
	}
	pod := dep.Spec.Template.Spec
	if pod.ServiceAccountName != sa.Name || pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("the webhook runs as %q with token %v", pod.ServiceAccountName, pod.AutomountServiceAccountToken)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("containers %v", pod.Containers)
	}
	c := pod.Containers[0]
	e := env(c)
	if !slices.Equal(c.Args, []string{"webhook"}) || e["WARDEN_SIDECAR_IMAGE"] != c.Image {
		t.Errorf("args %v, image %s, sidecar image %s", c.Args, c.Image, e["WARDEN_SIDECAR_IMAGE"])
	}
	for _, v := range config.WebhookVars {
		if _, ok := e[v.Name]; !ok {
			t.Errorf("the Deployment does not set %s", v.Name)
		}
	}
	if _, err := config.WebhookFromEnv(func(k string) string { return e[k] }); err != nil {
		t.Errorf("the Deployment's environment: %v", err)
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "https" || ":"+strconv.Itoa(int(c.Ports[0].ContainerPort)) != e["WARDEN_WEBHOOK_ADDR"] {
		t.Errorf("port %v vs WARDEN_WEBHOOK_ADDR %s", c.Ports, e["WARDEN_WEBHOOK_ADDR"])
	}
	// The certificate files are in the mounted Secret that cert-manager writes.
	if len(c.VolumeMounts) != 1 || len(pod.Volumes) != 1 || pod.Volumes[0].Secret == nil ||
		pod.Volumes[0].Secret.SecretName != cert.Spec.SecretName ||
		e["WARDEN_WEBHOOK_CERT"] != filepath.Join(c.VolumeMounts[0].MountPath, "tls.crt") ||
		e["WARDEN_WEBHOOK_KEY"] != filepath.Join(c.VolumeMounts[0].MountPath, "tls.key") {
		t.Errorf("certificate: mounts %v, volumes %v, env %v, secret %s", c.VolumeMounts, pod.Volumes, e, cert.Spec.SecretName)
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Scheme != corev1.URISchemeHTTPS || p.HTTPGet.Port.StrVal != "https" {
			t.Errorf("probe %+v", p)
		}
	}

	// The Service reaches the Deployment's pods on the webhook's port.
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("the Service selects %s=%s, the pods have %v", k, v, dep.Spec.Template.Labels)
		}
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.StrVal != "https" {
		t.Errorf("service ports %v", svc.Spec.Ports)
	}
	svcDNS := svc.Name + "." + svc.Namespace + ".svc"
	if !slices.Contains(cert.Spec.DNSNames, svcDNS) || !caCert.Spec.IsCA {
		t.Errorf("certificate names %v, want %s", cert.Spec.DNSNames, svcDNS)
	}
	if got := mwc.Annotations["cert-manager.io/inject-ca-from"]; got != "warden-system/warden-webhook" {
		t.Errorf("caBundle from %q", got)
	}

	// Two entries: labeled namespaces at PathNamespace, the others at
	// PathOptIn; both fail closed, have no side effects, and never call
	// the webhook for its own namespace.
	if len(mwc.Webhooks) != 2 {
		t.Fatalf("%d webhooks", len(mwc.Webhooks))
	}
	for i, want := range []struct{ name, path string }{{"inject.warden.io", inject.PathNamespace}, {"opt-in.inject.warden.io", inject.PathOptIn}} {
		w := mwc.Webhooks[i]
		s := w.ClientConfig.Service
		if w.Name != want.name || s == nil || s.Name != svc.Name || s.Namespace != svc.Namespace || s.Path == nil || *s.Path != want.path ||
			s.Port == nil || *s.Port != svc.Spec.Ports[0].Port {
			t.Errorf("webhook %d: %s %+v", i, w.Name, s)
		}
		if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail || w.SideEffects == nil ||
			*w.SideEffects != admissionregistrationv1.SideEffectClassNone || w.TimeoutSeconds == nil || *w.TimeoutSeconds > 15 ||
			!slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) {
			t.Errorf("webhook %s: policy %v, side effects %v, timeout %v", w.Name, w.FailurePolicy, w.SideEffects, w.TimeoutSeconds)
		}
		if len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Resources, []string{"pods"}) ||
			!slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) {
			t.Errorf("webhook %s: rules %+v", w.Name, w.Rules)
		}
		sel, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
		if err != nil {
			t.Fatal(err)
		}
		if sel.Matches(labelSet(ns.Labels, ns.Name)) {
			t.Errorf("webhook %s selects warden-system", w.Name)
		}
	}
	labeled, err := metav1.LabelSelectorAsSelector(mwc.Webhooks[0].NamespaceSelector)
	if err != nil {
		t.Fatal(err)
	}
	optIn, _ := metav1.LabelSelectorAsSelector(mwc.Webhooks[1].NamespaceSelector)
	for _, tc := range []struct {
		name               string
		labels             map[string]string
		wantLabel, wantOpt bool
	}{
		{"shop", map[string]string{inject.NamespaceLabel: inject.LabelEnabled}, true, false},
		{"reports", nil, false, true},
		{"legacy", map[string]string{inject.NamespaceLabel: "disabled"}, false, false},
		{"kube-system", nil, false, false},
	} {
		set := labelSet(tc.labels, tc.name)
		if labeled.Matches(set) != tc.wantLabel || optIn.Matches(set) != tc.wantOpt {
			t.Errorf("namespace %s %v: labeled entry %v, opt-in entry %v", tc.name, tc.labels, labeled.Matches(set), optIn.Matches(set))
		}
	}
	// The match conditions name the annotations deploy/inject reads (the
	// API server test checks what they select).
	if mc := mwc.Webhooks[0].MatchConditions; len(mc) != 1 || !strings.Contains(mc[0].Expression, "'"+inject.AnnotationInject+"'") {
		t.Errorf("labeled match conditions %+v", mc)
	}
	if mc := mwc.Webhooks[1].MatchConditions; len(mc) != 1 || !strings.Contains(mc[0].Expression, "'"+inject.AnnotationPrefix+"'") ||
		!strings.Contains(mc[0].Expression, "'"+inject.AnnotationInject+"'") {
		t.Errorf("opt-in match conditions %+v", mc)
	}
}

// labelSet is a namespace's labels as the API server sees them: with
// kubernetes.io/metadata.name, which it sets on every namespace.
func labelSet(l map[string]string, name string) k8slabels.Set {
	out := k8slabels.Set{"kubernetes.io/metadata.name": name}
	for k, v := range l {
		out[k] = v
	}
	return out
}

func TestExampleIsInjectedWithoutWarnings(t *testing.T) {
	objs := load(t, "example")
	var ns corev1.Namespace
	var dep appsv1.Deployment
	find(t, objs, "Namespace", "warden-example", &ns)
	find(t, objs, "Deployment", "hello", &dep)
	if ns.Labels[inject.NamespaceLabel] != inject.LabelEnabled {
		t.Errorf("the example namespace is not labeled: %v", ns.Labels)
	}
	pod := &corev1.Pod{ObjectMeta: dep.Spec.Template.ObjectMeta, Spec: dep.Spec.Template.Spec}
	res, err := inject.Inject(pod, inject.ScopeNamespace, inject.Options{Image: dep.Spec.Template.Spec.Containers[0].Image})
	if err != nil || res.Pod == nil || len(res.Warnings) > 0 {
		t.Fatalf("the example app: %v, %+v", err, res)
	}
	if p := res.Pod.Spec.Containers[0].ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/app-health/app/readiness" || p.HTTPGet.Port.IntValue() != 15000 {
		t.Errorf("the example's readiness probe, injected: %+v", p)
	}
}

func kubectlKustomize(t *testing.T, c *kubetest.Cluster, dir string) []map[string]any {
	t.Helper()
	out, err := c.Kubectl(t, "", "kustomize", dir)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kubetest.Documents([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// apply does what an operator's `kubectl apply -k` does, with
// --dry-run=server: the API server validates every object against its
// schema (unknown fields included) and admits it. Namespaces are created
// for real first, since the API server checks that a namespaced object's
// namespace exists. cert-manager's kinds are checked only by the other
// test: this API server has no cert-manager CRDs.
func apply(t *testing.T, c *kubetest.Cluster, objs []map[string]any) (applied int) {
	t.Helper()
	var rest []map[string]any
	for _, o := range objs {
		switch {
		case o["kind"] == "Namespace":
			if _, err := c.Create(context.Background(), o, false, nil); err != nil {
				t.Fatalf("namespace: %v", err)
			}
		case strings.HasPrefix(o["apiVersion"].(string), "cert-manager.io/"):
			continue
		}
		rest = append(rest, o)
	}
	stream, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": rest})
	out, err := c.Kubectl(t, string(stream), "apply", "--dry-run=server", "--validate=strict", "-f", "-")
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, out)
	}
	return strings.Count(out, "(server dry run)")
}

func TestAPIServerAcceptsTheManifests(t *testing.T) {
	c := kubetest.Start(t)
	ctx := context.Background()

	// deploy/: the webhook, its image copied into WARDEN_SIDECAR_IMAGE by
	// kustomize.
	objs := kubectlKustomize(t, c, ".")
	var dep appsv1.Deployment
	find(t, objs, "Deployment", "warden-webhook", &dep)
	if ctr := dep.Spec.Template.Spec.Containers[0]; env(ctr)["WARDEN_SIDECAR_IMAGE"] != ctr.Image {
		t.Errorf("rendered: image %s, WARDEN_SIDECAR_IMAGE %s", ctr.Image, env(ctr)["WARDEN_SIDECAR_IMAGE"])
	}
	if n := apply(t, c, objs); n != len(objs)-4 { // 4 cert-manager objects
		t.Errorf("%d of %d objects applied", n, len(objs))
	}

	// Set the image where the README says to, and both follow.
	tmp := t.TempDir()
	copyTree(t, ".", tmp)
	k, _ := os.ReadFile(filepath.Join(tmp, "kustomization.yaml"))
	k = []byte(strings.Replace(string(k), "newTag: v0.1.0", "newTag: v9.9.9", 1))
	if err := os.WriteFile(filepath.Join(tmp, "kustomization.yaml"), k, 0o644); err != nil {
		t.Fatal(err)
	}
	find(t, kubectlKustomize(t, c, tmp), "Deployment", "warden-webhook", &dep)
	if ctr := dep.Spec.Template.Spec.Containers[0]; ctr.Image != "ghcr.io/warden-sidecar/warden:v9.9.9" || env(ctr)["WARDEN_SIDECAR_IMAGE"] != ctr.Image {
		t.Errorf("new tag: image %s, WARDEN_SIDECAR_IMAGE %s", ctr.Image, env(ctr)["WARDEN_SIDECAR_IMAGE"])
	}

	// The webhook's pod meets Pod Security "restricted", which its
	// namespace enforces (and which refuses a pod that does not).
	if _, err := c.Create(ctx, map[string]any{"apiVersion": "v1", "kind": "ServiceAccount",
		"metadata": map[string]any{"name": "warden-webhook", "namespace": "warden-system"}}, false, nil); err != nil {
		t.Fatal(err)
	}
	webhookPod := corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: dep.Spec.Template.ObjectMeta, Spec: dep.Spec.Template.Spec}
	webhookPod.Name, webhookPod.Namespace = "webhook", "warden-system"
	if _, err := c.Create(ctx, webhookPod, true, nil); err != nil {
		t.Errorf("the webhook's pod in warden-system: %v", err)
	}
	webhookPod.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
	if _, err := c.Create(ctx, webhookPod, true, nil); err == nil || !strings.Contains(err.Error(), `violates PodSecurity "restricted:latest"`) {
		t.Errorf("Pod Security is not enforced in warden-system: %v", err)
	}

	// deploy/example, and its pod as the webhook injects it: valid, and
	// admitted where the namespace allows what warden needs.
	objs = kubectlKustomize(t, c, "example")
	apply(t, c, objs)
	find(t, objs, "Deployment", "hello", &dep)
	if _, err := c.Create(ctx, map[string]any{"apiVersion": "v1", "kind": "ServiceAccount",
		"metadata": map[string]any{"name": "hello", "namespace": "warden-example"}}, false, nil); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: dep.Spec.Template.ObjectMeta, Spec: dep.Spec.Template.Spec}
	pod.Name, pod.Namespace = "hello", "warden-example"
	for _, source := range []string{inject.SocketCSI, inject.SocketHostPath} {
		pod.Annotations[inject.AnnotationSocketSource] = source
		res, err := inject.Inject(pod, inject.ScopeNamespace, inject.Options{Image: "ghcr.io/warden-sidecar/warden:v0.1.0"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Create(ctx, res.Pod, true, nil); err != nil {
			t.Errorf("the injected example pod (%s socket): %v", source, err)
		}
	}
	// Pod Security "baseline" refuses an injected pod: the capabilities.
	c.CreateNamespace(t, "baseline", map[string]string{"pod-security.kubernetes.io/enforce": "baseline"})
	delete(pod.Annotations, inject.AnnotationSocketSource)
	res, err := inject.Inject(pod, inject.ScopeNamespace, inject.Options{Image: "ghcr.io/warden-sidecar/warden:v0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	res.Pod.Namespace, res.Pod.Spec.ServiceAccountName = "baseline", ""
	if _, err := c.Create(ctx, res.Pod, true, nil); err == nil || !strings.Contains(err.Error(), "non-default capabilities") {
		t.Errorf("baseline: %v", err)
	}

	// warden.io/fast-path: "sockmap": the hostPath of the node's cgroup
	// tree, mounted read-only (recursively where possible), and the pod's
	// UID from the downward API are a valid pod where the namespace allows
	// them; "baseline" refuses the hostPath.
	pod.Annotations[inject.AnnotationFastPath] = "sockmap"
	res, err = inject.Inject(pod, inject.ScopeNamespace, inject.Options{Image: "ghcr.io/warden-sidecar/warden:v0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, res.Pod, true, nil); err != nil {
		t.Errorf("the injected example pod with %s: sockmap: %v", inject.AnnotationFastPath, err)
	}
	res.Pod.Namespace, res.Pod.Spec.ServiceAccountName = "baseline", ""
	if _, err := c.Create(ctx, res.Pod, true, nil); err == nil || !strings.Contains(err.Error(), `hostPath volumes (volume "warden-host-cgroup")`) {
		t.Errorf("baseline with %s: sockmap: %v", inject.AnnotationFastPath, err)
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		if !strings.HasSuffix(path, ".yaml") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
