package agent

import (
	"context"
	"crypto"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/go-jose/go-jose/v4"

	"github.com/warden-sidecar/warden/agent/authz"
	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/agent/signature"
	"github.com/warden-sidecar/warden/agent/token"
)

// startSignatures builds the request signature verifier WARDEN_SIGNATURE_KEYS
// asks for: its keys load in the background like the JWT keys (readiness
// waits for the first ones; until then signed requests are refused as
// signed by an unknown key).
func (a *Agent) startSignatures(ctx context.Context) ([]authz.Option, func(), error) {
	if a.cfg.SignatureKeys == "" {
		a.signatureKeys.Store(true)
		return nil, func() {}, nil
	}
	slog := a.log.With().Str("component", "signature").Logger()
	jwks, err := token.NewJWKS(token.JWKSOptions{
		Source:  a.cfg.SignatureKeys,
		Refresh: a.cfg.JWTJWKSRefresh,
		// Shared secrets (hmac-sha256) only from a file: a URL serves
		// public keys.
		Secrets: !strings.Contains(a.cfg.SignatureKeys, "://"),
		OnUpdate: func(u token.JWKSUpdate) {
			a.signatureKeys.Store(true)
			slog.Info().Str("event", "signature_keys_loaded").Str("source", u.Source).Strs("kids", u.KIDs).Send()
		},
		OnError: func(err error) {
			slog.Warn().Str("event", "signature_keys_error").Err(err).Msg("signature keys not loaded; the keys loaded before stay")
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("agent: WARDEN_SIGNATURE_KEYS: %w", err)
	}
	v, err := signature.NewVerifier(signature.Options{
		Keys:       jwks,
		Required:   a.cfg.SignatureRequired,
		Components: a.cfg.SignatureComponents,
		MaxAge:     a.cfg.SignatureMaxAge,
		ClockSkew:  a.cfg.JWTClockSkew,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("agent: WARDEN_SIGNATURE_COMPONENTS or WARDEN_SIGNATURE_MAX_AGE: %w", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = jwks.Run(runCtx) }()
	return []authz.Option{authz.WithSignatures(v)}, func() { cancel(); <-done }, nil
}

// outboundSigner is the outbound proxy's Signer for WARDEN_OUTBOUND_SIGNING_KEY:
// a PEM key file, read once, whose keyid is its JWK thumbprint (RFC 7638,
// SHA-256, base64url), or warden's SVID key, whose keyid is its SPIFFE ID;
// the signer follows the SVID's rotation.
func (a *Agent) outboundSigner() (func() (*signature.Signer, error), error) {
	comps := a.cfg.SignatureComponents
	switch a.cfg.OutboundSigningKey {
	case "":
		return nil, nil
	case config.SigningKeySVID:
		var mu sync.Mutex
		var last crypto.Signer
		var signer *signature.Signer
		return func() (*signature.Signer, error) {
			svid, err := a.source.GetX509SVID()
			if err != nil {
				return nil, fmt.Errorf("WARDEN_OUTBOUND_SIGNING_KEY=svid: %w", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if svid.PrivateKey != last {
				s, err := signature.NewSigner(svid.PrivateKey, svid.ID.String(), comps, nil)
				if err != nil {
					return nil, fmt.Errorf("WARDEN_OUTBOUND_SIGNING_KEY=svid: %w", err)
				}
				last, signer = svid.PrivateKey, s
			}
			return signer, nil
		}, nil
	}
	pemData, err := os.ReadFile(a.cfg.OutboundSigningKey)
	if err != nil {
		return nil, fmt.Errorf("agent: WARDEN_OUTBOUND_SIGNING_KEY: %w", err)
	}
	key, err := signature.ParsePrivateKey(pemData)
	if err != nil {
		return nil, fmt.Errorf("agent: WARDEN_OUTBOUND_SIGNING_KEY=%s: %w", a.cfg.OutboundSigningKey, err)
	}
	tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("agent: WARDEN_OUTBOUND_SIGNING_KEY=%s: %w", a.cfg.OutboundSigningKey, err)
	}
	s, err := signature.NewSigner(key, base64.RawURLEncoding.EncodeToString(tp), comps, nil)
	if err != nil {
		return nil, fmt.Errorf("agent: WARDEN_OUTBOUND_SIGNING_KEY=%s: %w", a.cfg.OutboundSigningKey, err)
	}
	a.log.Info().Str("event", "outbound_signing").Str("keyid", base64.RawURLEncoding.EncodeToString(tp)).Send()
	return func() (*signature.Signer, error) { return s, nil }, nil
}
