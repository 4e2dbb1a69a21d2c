package config

import (
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Webhook is the configuration of `warden webhook`.
type Webhook struct {
	Addr         string
	CertFile     string
	KeyFile      string
	SidecarImage string
	// The injected sidecar's defaults; "": sidecar.yaml's (resources) or
	// warden's (rate-limit mode). Quantities are checked, not converted:
	// deploy/inject reads them.
	CPURequest, CPULimit, MemoryRequest, MemoryLimit string
	RateLimitMode                                    string
	LogLevel                                         string
	LogFormat                                        string
}

// WebhookFromEnv reads what `warden webhook` needs (the variables of Vars
// read ByWebhook). The certificate files are only named here: the server
// loads them, and says so when it can't.
func WebhookFromEnv[E Env](env E) (Webhook, error) {
	p := newParser(env)
	var v values
	p.parse(&v, ByWebhook)
	if p.err != nil {
		return Webhook{}, p.err
	}
	w := v.webhook
	w.LogLevel, w.LogFormat = v.LogLevel, v.LogFormat
	return w, nil
}

// image accepts a container image reference, which the webhook writes into
// every injected pod.
func (p *parser) image(name string) string {
	v := p.raw(name)
	switch {
	case v == "":
		p.failWith(emptyError(name, "", "the image of the injected sidecar, e.g. ghcr.io/warden-sidecar/warden:v0.1.0"))
	case strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) || strings.HasPrefix(v, "-"):
		p.fail(name, v, "an image reference such as ghcr.io/warden-sidecar/warden:v0.1.0")
	}
	return v
}

// quantity accepts an empty value or a Kubernetes resource quantity above
// 0 (100m, 0.5, 128Mi).
func (p *parser) quantity(name string) string {
	v := p.raw(name)
	if v == "" {
		return ""
	}
	q, err := resource.ParseQuantity(v)
	if err != nil || q.Sign() <= 0 {
		p.fail(name, v, "a Kubernetes quantity above 0, such as 100m, 0.5 or 128Mi")
		return ""
	}
	return v
}
