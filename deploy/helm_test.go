package deploy_test

// The Helm chart in deploy/helm/warden: by default the same objects as
// the kustomization, and every variant valid against a real API server.

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/deploy/inject"
	"github.com/warden-sidecar/warden/deploy/kubetest"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// helmTemplate renders the chart as `helm template` does, into
// warden-system.
func helmTemplate(t *testing.T, args ...string) ([]map[string]any, error) {
	t.Helper()
	helm := testenv.NeedTool(t, filepath.Join(kubetest.BinDir(), "helm"), "run `make helm`, or set WARDEN_KUBE_BIN_DIR")
	cmd := exec.Command(helm, append([]string{"template", "warden", "helm/warden", "--namespace", "warden-system", "--kube-version", "1.37.2"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, &helmError{string(ee.Stderr)}
		}
		return nil, err
	}
	return kubetest.Documents(out)
}

type helmError struct{ stderr string }

func (e *helmError) Error() string { return "helm template: " + strings.TrimSpace(e.stderr) }

// comparable drops what only one of the two adds: the chart's
// bookkeeping labels (and the app.kubernetes.io labels the chart puts on
// the cert-manager objects, which deploy/ leaves without labels).
func comparable(o map[string]any) map[string]any {
	b, _ := yaml.Marshal(o)
	var c map[string]any
	_ = yaml.Unmarshal(b, &c)
	md, _ := c["metadata"].(map[string]any)
	if labels, ok := md["labels"].(map[string]any); ok {
		for k := range labels {
			if strings.HasPrefix(k, "app.kubernetes.io/") || strings.HasPrefix(k, "helm.sh/") {
				delete(labels, k)
			}
		}
		if len(labels) == 0 {
			delete(md, "labels")
		}
	}
	normalizeExpressions(c)
	return c
}

// normalizeExpressions collapses the whitespace of CEL expressions:
// kustomize re-folds the YAML block scalars they are written in (with a
// blank line, which CEL ignores).
func normalizeExpressions(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "expression" {
				v[k] = strings.Join(strings.Fields(s), " ")
				continue
			}
			normalizeExpressions(x)
		}
	case []any:
		for _, x := range v {
			normalizeExpressions(x)
		}
	}
}

func byKindName(objs []map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, o := range objs {
		md, _ := o["metadata"].(map[string]any)
		out[o["kind"].(string)+"/"+md["name"].(string)] = comparable(o)
	}
	return out
}

func TestAPIServerAcceptsTheHelmChart(t *testing.T) {
	c := kubetest.Start(t)

	// Defaults, with the namespace: the kustomization's objects.
	chart, err := helmTemplate(t, "--set", "namespace.create=true")
	if err != nil {
		t.Fatal(err)
	}
	kust := byKindName(kubectlKustomize(t, c, "."))
	got := byKindName(chart)
	for k, want := range kust {
		if !reflect.DeepEqual(got[k], want) {
			a, _ := yaml.Marshal(got[k])
			b, _ := yaml.Marshal(want)
			t.Errorf("%s: the chart renders\n%s\nthe kustomization\n%s", k, a, b)
		}
	}
	for k := range got {
		if _, ok := kust[k]; !ok {
			t.Errorf("the chart renders %s, which the kustomization does not have", k)
		}
	}
	if n := apply(t, c, chart); n != len(chart)-4 { // 4 cert-manager objects
		t.Errorf("defaults: %d of %d objects applied", n, len(chart))
	}

	// Self-signed, with injection defaults: no cert-manager object, a CA
	// in the caBundle that verifies the Secret's certificate for the
	// Service's name, and a webhook environment warden accepts.
	chart, err = helmTemplate(t, "--set", "certificates.mode=self-signed", "--set", "image.tag=v9.9.9",
		"--set", "injection.resources.limits.cpu=1", "--set", "injection.resources.requests.memory=96Mi",
		"--set", "injection.rateLimitMode=userspace", "--set", "webhook.optInFailurePolicy=Ignore", "--set", "webhook.logLevel=debug")
	if err != nil {
		t.Fatal(err)
	}
	if n := apply(t, c, chart); n != len(chart) {
		t.Errorf("self-signed: %d of %d objects applied", n, len(chart))
	}
	var (
		secret corev1.Secret
		mwc    admissionregistrationv1.MutatingWebhookConfiguration
		dep    appsv1.Deployment
	)
	find(t, chart, "Secret", "warden-webhook-tls", &secret)
	find(t, chart, "MutatingWebhookConfiguration", "warden-injector", &mwc)
	find(t, chart, "Deployment", "warden-webhook", &dep)
	if _, ok := mwc.Annotations["cert-manager.io/inject-ca-from"]; ok {
		t.Error("self-signed: the webhook configuration still asks cert-manager for its CA")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(mwc.Webhooks[0].ClientConfig.CABundle) || string(mwc.Webhooks[1].ClientConfig.CABundle) != string(mwc.Webhooks[0].ClientConfig.CABundle) {
		t.Fatalf("caBundle %q", mwc.Webhooks[0].ClientConfig.CABundle)
	}
	block, _ := pem.Decode(secret.Data["tls.crt"])
	if block == nil {
		t.Fatalf("tls.crt %q", secret.Data["tls.crt"])
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "warden-webhook.warden-system.svc", Roots: roots}); err != nil {
		t.Errorf("the Secret's certificate for the Service, against the caBundle: %v", err)
	}
	if string(secret.Data["ca.crt"]) != string(mwc.Webhooks[0].ClientConfig.CABundle) {
		t.Error("the Secret's ca.crt is not the caBundle")
	}
	if p := mwc.Webhooks[1].FailurePolicy; p == nil || *p != admissionregistrationv1.Ignore {
		t.Errorf("opt-in failure policy %v", p)
	}
	ctr := dep.Spec.Template.Spec.Containers[0]
	e := env(ctr)
	w, err := config.WebhookFromEnv(func(k string) string { return e[k] })
	if err != nil {
		t.Fatalf("the chart's webhook environment: %v", err)
	}
	opts, err := inject.NewOptions(w)
	if err != nil {
		t.Fatal(err)
	}
	if ctr.Image != "ghcr.io/warden-sidecar/warden:v9.9.9" || opts.Image != ctr.Image || w.LogLevel != "debug" ||
		opts.Resources.Limits.Cpu().String() != "1" || opts.Resources.Requests.Memory().String() != "96Mi" || opts.RateLimitMode != "userspace" {
		t.Errorf("image %s, webhook %+v, options %+v", ctr.Image, w, opts)
	}
	if dep.Spec.Template.Annotations["warden.io/webhook-certificate"] == "" {
		t.Error("the webhook's pods do not change with the certificate")
	}

	// An upgrade keeps the certificate: with the Secret in the cluster,
	// `helm install --dry-run=server` (which runs lookup against the API
	// server, as an upgrade does) renders the same certificate and CA.
	if _, err := c.Create(context.Background(), map[string]any{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
		"metadata": map[string]any{"name": "warden-webhook-tls", "namespace": "warden-system", // as a first install leaves it
			"labels":      map[string]any{"app.kubernetes.io/managed-by": "Helm"},
			"annotations": map[string]any{"meta.helm.sh/release-name": "warden", "meta.helm.sh/release-namespace": "warden-system"}},
		"data": secret.Data}, false, nil); err != nil {
		t.Fatal(err)
	}
	helm := testenv.NeedTool(t, filepath.Join(kubetest.BinDir(), "helm"), "run `make helm`")
	out, err := exec.Command(helm, "install", "warden", "helm/warden", "--namespace", "warden-system", "--kubeconfig", c.Kubeconfig,
		"--dry-run=server", "--set", "certificates.mode=self-signed").CombinedOutput()
	if err != nil {
		t.Fatalf("helm install --dry-run=server: %v\n%s", err, out)
	}
	_, manifest, _ := strings.Cut(string(out), "MANIFEST:\n")
	again, err := kubetest.Documents([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	var secret2 corev1.Secret
	var mwc2 admissionregistrationv1.MutatingWebhookConfiguration
	find(t, again, "Secret", "warden-webhook-tls", &secret2)
	find(t, again, "MutatingWebhookConfiguration", "warden-injector", &mwc2)
	if !reflect.DeepEqual(secret2.Data, secret.Data) || string(mwc2.Webhooks[0].ClientConfig.CABundle) != string(secret.Data["ca.crt"]) {
		t.Error("an upgrade replaced the self-signed certificate or the caBundle")
	}

	// Values the schema or the templates refuse, before anything reaches
	// the cluster.
	for _, tc := range []struct{ set, want string }{
		{"injection.rateLimitMode=kernel", "rateLimitMode"},
		{"certificates.mode=vault", "mode"},
		{"injection.resources.requests.cpu=lots", "cpu"},
		{"webhook.optInFailurePolicy=Retry", "optInFailurePolicy"},
	} {
		if _, err := helmTemplate(t, "--set", tc.set); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %s: %v, want an error naming %s", tc.set, err, tc.want)
		}
	}
}
