package config

import (
	"errors"
	"strings"
)

// WebhookVars lists the variables `warden webhook` reads, besides
// WARDEN_LOG_LEVEL and WARDEN_LOG_FORMAT of Vars.
var WebhookVars = []Var{
	{"WARDEN_WEBHOOK_ADDR", ":9443", "`warden webhook`: HTTPS listener of the admission webhook (`POST /mutate`, `POST /mutate/opt-in`, `GET /healthz`)"},
	{"WARDEN_WEBHOOK_CERT", "/etc/warden/webhook/tls.crt", "`warden webhook`: PEM serving certificate (with its chain); read again when the file changes, so a rotated certificate (cert-manager) needs no restart"},
	{"WARDEN_WEBHOOK_KEY", "/etc/warden/webhook/tls.key", "`warden webhook`: PEM private key of WARDEN_WEBHOOK_CERT, read again with it"},
	{"WARDEN_SIDECAR_IMAGE", "", "`warden webhook`: image of the injected `warden` and `warden-init` containers, e.g. `ghcr.io/warden-sidecar/warden:v0.1.0`; required"},
}

// Webhook is the configuration of `warden webhook`.
type Webhook struct {
	Addr         string
	CertFile     string
	KeyFile      string
	SidecarImage string
	LogLevel     string
	LogFormat    string
}

// WebhookFromEnv reads what `warden webhook` needs. The certificate files
// are only named here: the server loads them, and says so when it can't.
func WebhookFromEnv(getenv func(string) string) (Webhook, error) {
	p := &parser{getenv: getenv}
	w := Webhook{
		Addr:         p.addr("WARDEN_WEBHOOK_ADDR"),
		CertFile:     p.str("WARDEN_WEBHOOK_CERT"),
		KeyFile:      p.str("WARDEN_WEBHOOK_KEY"),
		SidecarImage: p.str("WARDEN_SIDECAR_IMAGE"),
		LogLevel:     p.oneOf("WARDEN_LOG_LEVEL", "debug", "info", "warn", "error"),
		LogFormat:    p.oneOf("WARDEN_LOG_FORMAT", "json", "console"),
	}
	if p.err != nil {
		return Webhook{}, p.err
	}
	switch {
	case w.SidecarImage == "":
		return Webhook{}, errors.New("config: WARDEN_SIDECAR_IMAGE is empty: expected the image of the injected sidecar, e.g. ghcr.io/warden-sidecar/warden:v0.1.0")
	case strings.ContainsFunc(w.SidecarImage, func(r rune) bool { return r <= ' ' || r == 0x7f }) || strings.HasPrefix(w.SidecarImage, "-"):
		p.fail("WARDEN_SIDECAR_IMAGE", w.SidecarImage, "an image reference such as ghcr.io/warden-sidecar/warden:v0.1.0")
	}
	if p.err != nil {
		return Webhook{}, p.err
	}
	return w, nil
}
