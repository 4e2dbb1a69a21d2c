package config

import (
	"strings"
	"testing"
)

func TestConfigUpstreamPortReplacesThePortOfTheUpstreamAddress(t *testing.T) {
	c, err := FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev", "WARDEN_UPSTREAM_PORT": "9000"}))
	if err != nil || c.UpstreamAddr != "127.0.0.1:9000" || c.UpstreamPort != 9000 {
		t.Errorf("%q %d %v", c.UpstreamAddr, c.UpstreamPort, err)
	}
	c, err = FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev", "WARDEN_UPSTREAM_ADDR": "[::1]:8080", "WARDEN_UPSTREAM_PORT": "0080"}))
	if err != nil || c.UpstreamAddr != "[::1]:80" {
		t.Errorf("%q %v", c.UpstreamAddr, err)
	}
	c, err = FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev"}))
	if err != nil || c.UpstreamAddr != "127.0.0.1:8080" || c.UpstreamPort != 0 {
		t.Errorf("unset: %q %d %v", c.UpstreamAddr, c.UpstreamPort, err)
	}
	for _, v := range []string{"http", "0", "65536", "-1", "80 80"} {
		_, err := FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev", "WARDEN_UPSTREAM_PORT": v}))
		want := `config: WARDEN_UPSTREAM_PORT="` + strings.TrimSpace(v) + `": expected a port from 1 to 65535 (it replaces the port of WARDEN_UPSTREAM_ADDR)`
		if err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %s", v, err, want)
		}
	}
}

// Validate checks what the webhook can see, an environment, and leaves
// the files the pod will have to the sidecar's own startup.
func TestConfigValidateLeavesFilesToThePod(t *testing.T) {
	files := map[string]string{
		"SPIFFE_ENDPOINT_SOCKET":         "unix:///spiffe-workload-api/spire-agent.sock",
		"WARDEN_POLICY_BUNDLE":           "/policies/bundle.tar.gz",
		"WARDEN_POLICY_VERIFICATION_KEY": "/policies/key.pem",
		"WARDEN_JWT_JWKS":                "/jwks/keys.json",
		"WARDEN_JWT_ISSUERS":             "https://sts.example",
		"WARDEN_JWT_AUDIENCES":           "orders",
	}
	if err := Validate(env(files)); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if _, err := FromEnv(env(files)); err == nil || !strings.Contains(err.Error(), `WARDEN_POLICY_BUNDLE="/policies/bundle.tar.gz": expected an existing directory or .tar.gz file`) {
		t.Errorf("FromEnv still checks the files: %v", err)
	}
	for name, v := range map[string]string{
		"WARDEN_POLICY_BUNDLE":    "ftp://bundles.example/b.tar.gz",
		"WARDEN_JWT_JWKS":         "ftp://sts.example/jwks",
		"WARDEN_CONN_RATE_LIMIT":  "fast",
		"WARDEN_INBOUND_ADDR":     "nowhere",
		"WARDEN_ALLOWED_PEERS":    "frontend",
		"WARDEN_UPSTREAM_PORT":    "http",
		"WARDEN_POLICY_CACHE_TTL": "-1s",
	} {
		bad := map[string]string{}
		for k, val := range files {
			bad[k] = val
		}
		bad[name] = v
		if err := Validate(env(bad)); err == nil || !strings.Contains(err.Error(), "config: "+name+"=") {
			t.Errorf("%s=%q: %v", name, v, err)
		}
	}
	if err := Validate(env(nil)); err == nil || !strings.Contains(err.Error(), "needs SPIFFE_ENDPOINT_SOCKET") {
		t.Errorf("empty environment: %v", err)
	}
}

func TestWebhookFromEnv(t *testing.T) {
	w, err := WebhookFromEnv(env(map[string]string{"WARDEN_SIDECAR_IMAGE": "ghcr.io/warden-sidecar/warden:v0.1.0"}))
	if err != nil {
		t.Fatal(err)
	}
	want := Webhook{Addr: ":9443", CertFile: "/etc/warden/webhook/tls.crt", KeyFile: "/etc/warden/webhook/tls.key",
		SidecarImage: "ghcr.io/warden-sidecar/warden:v0.1.0", LogLevel: "info", LogFormat: "json"}
	if w != want {
		t.Errorf("defaults %+v", w)
	}
	w, err = WebhookFromEnv(env(map[string]string{"WARDEN_SIDECAR_IMAGE": "x", "WARDEN_SIDECAR_CPU_LIMIT": "1", "WARDEN_SIDECAR_MEMORY_REQUEST": "96Mi",
		"WARDEN_SIDECAR_RATE_LIMIT_MODE": "userspace"}))
	if err != nil || w.CPULimit != "1" || w.MemoryRequest != "96Mi" || w.CPURequest != "" || w.RateLimitMode != "userspace" {
		t.Errorf("injection defaults %+v %v", w, err)
	}
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "config: WARDEN_SIDECAR_IMAGE is empty: expected the image of the injected sidecar, e.g. ghcr.io/warden-sidecar/warden:v0.1.0"},
		{map[string]string{"WARDEN_SIDECAR_IMAGE": "a b"}, `config: WARDEN_SIDECAR_IMAGE="a b": expected an image reference such as ghcr.io/warden-sidecar/warden:v0.1.0`},
		{map[string]string{"WARDEN_SIDECAR_IMAGE": "x", "WARDEN_WEBHOOK_ADDR": "9443"}, `config: WARDEN_WEBHOOK_ADDR="9443": expected host:port, e.g. 127.0.0.1:8080`},
		{map[string]string{"WARDEN_SIDECAR_IMAGE": "x", "WARDEN_LOG_LEVEL": "trace"}, `config: WARDEN_LOG_LEVEL="trace": expected one of debug, info, warn, error`},
		{map[string]string{"WARDEN_SIDECAR_IMAGE": "x", "WARDEN_SIDECAR_CPU_REQUEST": "lots"}, `config: WARDEN_SIDECAR_CPU_REQUEST="lots": expected a Kubernetes quantity above 0, such as 100m, 0.5 or 128Mi`},
		{map[string]string{"WARDEN_SIDECAR_IMAGE": "x", "WARDEN_SIDECAR_MEMORY_LIMIT": "0"}, `config: WARDEN_SIDECAR_MEMORY_LIMIT="0": expected a Kubernetes quantity above 0, such as 100m, 0.5 or 128Mi`},
		{map[string]string{"WARDEN_SIDECAR_IMAGE": "x", "WARDEN_SIDECAR_RATE_LIMIT_MODE": "kernel"}, `config: WARDEN_SIDECAR_RATE_LIMIT_MODE="kernel": expected one of auto, ebpf, userspace, off`},
	}
	for _, tt := range tests {
		if _, err := WebhookFromEnv(env(tt.env)); err == nil || err.Error() != tt.want {
			t.Errorf("%v: %v, want %s", tt.env, err, tt.want)
		}
	}
}

// As TestVarsDocumented: the README's table has a row for every variable
// of `warden webhook`, with its default.
