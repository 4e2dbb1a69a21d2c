package config

import (
	"strings"
)

// Webhook is the configuration of `warden webhook`.
type Webhook struct {
	Addr         string
	CertFile     string
	KeyFile      string
	SidecarImage string
	LogLevel     string
	LogFormat    string
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
