package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"strings"

	"github.com/warden-sidecar/warden/agent"
	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/deploy/admission"
	"github.com/warden-sidecar/warden/deploy/inject"
)

// runWebhook serves the mutating admission webhook that injects warden:
// POST /mutate for namespaces labeled warden.io/inject=enabled, POST
// /mutate/opt-in for the others (deploy/webhook registers each with its
// namespaceSelector), GET /healthz.
func runWebhook(ctx context.Context, args []string, lookup func(string) (string, bool), _, stderr io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("webhook: unexpected argument %q: the webhook is configured by WARDEN_WEBHOOK_* variables", args[0])
	}
	cfg, err := config.WebhookFromEnv(lookup)
	if err != nil {
		return err
	}
	log := agent.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	opts, err := inject.NewOptions(cfg)
	if err != nil {
		return err
	}
	srv, err := admission.New(admission.Options{
		Addr:     cfg.Addr,
		CertFile: cfg.CertFile,
		KeyFile:  cfg.KeyFile,
		Handlers: map[string]admission.Handler{
			inject.PathNamespace: inject.Handler(inject.ScopeNamespace, opts),
			inject.PathOptIn:     inject.Handler(inject.ScopeOptIn, opts),
		},
		OnReview: func(r admission.Review) {
			ev := log.Info()
			if r.Status != 200 {
				ev = log.Warn().Int("status", r.Status).Str("error", r.Error)
			}
			ev = ev.Str("event", "admission").Str("path", r.Path).Str("uid", r.UID).Str("kind", r.Kind).
				Str("namespace", r.Namespace).Str("name", r.Name).Str("operation", r.Operation).Bool("dry_run", r.DryRun).
				Bool("allowed", r.Allowed).Bool("patched", r.Patched).Str("decision", r.Decision).Int("warnings", r.Warnings).
				Float64("duration_s", r.Duration.Seconds())
			if r.Message != "" {
				ev = ev.Str("message", r.Message)
			}
			ev.Send()
		},
		OnCertificate: func(c *x509.Certificate) {
			log.Info().Str("event", "certificate_loaded").Str("subject", c.Subject.String()).
				Str("dns_names", strings.Join(c.DNSNames, ",")).Str("serial", c.SerialNumber.Text(16)).
				Time("not_after", c.NotAfter).Send()
		},
		OnError: func(err error) {
			log.Warn().Str("event", "webhook_error").Err(err).Send()
		},
	})
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	// The injection defaults that replace sidecar.yaml's or warden's, if any.
	defaults := map[string]string{}
	for k, v := range map[string]string{"cpu_request": cfg.CPURequest, "cpu_limit": cfg.CPULimit, "memory_request": cfg.MemoryRequest,
		"memory_limit": cfg.MemoryLimit, "rate_limit_mode": cfg.RateLimitMode} {
		if v != "" {
			defaults[k] = v
		}
	}
	log.Info().Str("event", "listening").Str("listener", "webhook").Str("addr", srv.Addr().String()).
		Str("sidecar_image", cfg.SidecarImage).Interface("sidecar_defaults", defaults).Send()
	err = srv.Run(ctx)
	log.Info().Str("event", "stopped").Send()
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	return nil
}
