package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/authz"
	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/agent/inspect"
	"github.com/warden-sidecar/warden/agent/openapi"
	"github.com/warden-sidecar/warden/agent/token"
	"github.com/warden-sidecar/warden/bundle"
	"github.com/warden-sidecar/warden/internal/gcra"
	"github.com/warden-sidecar/warden/internal/secevent"
	"github.com/warden-sidecar/warden/spiffe"
)

// policy is the component of the decision engine (bundle loading and
// polling), the token keys and the decision log, and the PEP (authz) that
// the inbound proxy asks.
type policy struct {
	a    *Agent
	stop func()
}

func (c *policy) name() string { return "policy" }

func (c *policy) ready() error {
	switch e := c.a.engine.Load(); {
	case e == nil || !e.Ready():
		return errors.New("policy not loaded")
	case !c.a.tokenKeys.Load():
		return errors.New("jwks not loaded")
	case !c.a.signatureKeys.Load():
		return errors.New("signature keys not loaded")
	}
	return nil
}

func (c *policy) start(ctx context.Context, _ func(func() error)) error {
	guard, stop, err := c.a.startPolicy(ctx)
	if err != nil {
		return err
	}
	c.a.guard, c.stop = guard, stop
	return nil
}

func (c *policy) shutdown(context.Context) error {
	c.stop()
	return nil
}

// startPolicy builds the decision engine and the PEP in front of it. The
// engine loads the first bundle in the background (readiness waits for it;
// until then every request is denied) and keeps polling for new revisions.
func (a *Agent) startPolicy(ctx context.Context) (*authz.Authorizer, func(), error) {
	plog := a.log.With().Str("component", "policy").Logger()
	engine, err := bundle.New(bundle.Options{
		Source:              a.cfg.PolicyBundle,
		PollInterval:        a.cfg.PolicyPollInterval,
		VerificationKeyPath: a.cfg.PolicyVerificationKey,
		VerificationAlg:     a.cfg.PolicyVerificationAlg,
		Decision:            a.cfg.PolicyDecision,
		CacheSize:           a.cfg.PolicyCacheSize,
		CacheTTL:            a.cfg.PolicyCacheTTL,
		CacheBytes:          a.cfg.PolicyCacheBytes,
		AllowNetwork:        a.cfg.PolicyAllowNetwork,
		EvalTimeout:         a.cfg.PolicyEvalTimeout,
		OnActivate: func(st bundle.Status) {
			a.metrics.BundleActivated()
			plog.Info().Str("event", "policy_activated").Str("source", st.Source).
				Str("revision", st.Revision).Time("loaded_at", st.LoadedAt).Send()
		},
		OnError: func(err error) {
			a.metrics.BundleRejected()
			a.bundleRejected(err)
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("agent: policy: %w", err)
	}
	a.engine.Store(engine)

	dlog, closeLog, err := a.decisionLogger()
	if err != nil {
		return nil, nil, err
	}
	opts, stopTokenKeys, err := a.startTokens(ctx)
	if err != nil {
		closeLog()
		return nil, nil, err
	}
	sigOpts, stopSignatures, err := a.startSignatures(ctx)
	if err != nil {
		stopTokenKeys()
		closeLog()
		return nil, nil, err
	}
	opts = append(opts, sigOpts...)
	stopTokens := func() { stopSignatures(); stopTokenKeys() }
	opts = append(opts, authz.WithEventLog(a.events), authz.WithObserver(a.metrics),
		authz.WithDecisionLogSample(a.cfg.DecisionLogSample))
	if a.cfg.AccessLog == "combined" {
		opts = append(opts, authz.WithAccessFields())
	}
	opts = append(opts, a.inputChecks()...)
	opts = append(opts, authz.WithRateLimits(a.rateKeys, gcra.New(int64(a.cfg.PeerRateLimit), int64(a.cfg.PeerBurst))))
	opts = append(opts, a.defenseOptions()...)
	var spec *openapi.Store
	if a.cfg.OpenAPISpec != "" {
		if spec, err = openapi.NewStore(a.cfg.OpenAPISpec, a.log.With().Str("component", "openapi").Logger()); err != nil {
			stopTokens()
			closeLog()
			return nil, nil, fmt.Errorf("agent: WARDEN_OPENAPI_SPEC=%s: %w", a.cfg.OpenAPISpec, err)
		}
		opts = append(opts, authz.WithOpenAPI(spec.Spec))
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := engine.Run(runCtx); err != nil && runCtx.Err() == nil {
			plog.Error().Str("event", "policy_stopped").Err(err).Send()
		}
	}()
	specDone := make(chan struct{})
	go func() {
		defer close(specDone)
		if spec != nil {
			spec.Watch(runCtx, a.cfg.OpenAPIPoll)
		}
	}()
	stop := func() {
		cancel()
		<-done
		<-specDone
		stopTokens()
		closeLog()
	}
	ownID := func() string { return a.ownID().String() }
	return authz.New(engine, ownID, dlog, opts...), stop, nil
}

// inputChecks are the PEP's body checks that the configuration turns on.
func (a *Agent) inputChecks() []authz.Option {
	var opts []authz.Option
	if a.cfg.JSONProtection {
		j := a.cfg.JSON
		opts = append(opts, authz.WithJSONLimits(inspect.JSONLimits{
			MaxDepth: j.MaxDepth, MaxKeys: j.MaxKeys, MaxArray: j.MaxArray, MaxString: j.MaxString, MaxNumber: j.MaxNumber,
		}))
	}
	if a.cfg.XMLProtection {
		x := a.cfg.XML
		opts = append(opts, authz.WithXMLLimits(inspect.XMLLimits{
			MaxDepth: x.MaxDepth, MaxAttributes: x.MaxAttributes, MaxElements: x.MaxElements, MaxText: x.MaxText,
		}))
	}
	if a.cfg.PolicyBody == config.PolicyBodyJSON {
		opts = append(opts, authz.WithPolicyBody(a.cfg.PolicyBodyMaxBytes))
	}
	return opts
}

// startTokens builds the token verifier WARDEN_JWT_JWKS asks for, with its
// keys: a JWKS file or URL loaded in the background (readiness waits for
// the first keys; until then tokens are refused), or the Workload API's JWT
// bundles, which startup waits for as it waits for the SVID.
func (a *Agent) startTokens(ctx context.Context) ([]authz.Option, func(), error) {
	if a.cfg.JWTJWKS == "" {
		a.tokenKeys.Store(true)
		return nil, func() {}, nil
	}
	tlog := a.log.With().Str("component", "token").Logger()
	var keys token.Keys
	var stop func()
	if a.cfg.JWTJWKS == config.JWKSSPIFFE {
		ws, ok := a.source.(*spiffe.WorkloadSource)
		if !ok {
			return nil, nil, fmt.Errorf("agent: WARDEN_JWT_JWKS=%s needs the Workload API identity", config.JWKSSPIFFE)
		}
		wctx, cancel := context.WithTimeout(ctx, a.cfg.IdentityTimeout)
		defer cancel()
		b, err := ws.JWTBundles(wctx)
		if err != nil {
			return nil, nil, fmt.Errorf("agent: WARDEN_JWT_JWKS=%s: %w", config.JWKSSPIFFE, err)
		}
		tlog.Info().Str("event", "jwt_bundles_loaded").Str("socket", a.cfg.SPIFFESocket).Send()
		keys, stop = token.SPIFFEKeys(b), func() { _ = b.Close() }
	} else {
		jwks, err := token.NewJWKS(token.JWKSOptions{
			Source:  a.cfg.JWTJWKS,
			Refresh: a.cfg.JWTJWKSRefresh,
			OnUpdate: func(u token.JWKSUpdate) {
				a.tokenKeys.Store(true)
				e := tlog.Info().Str("event", "jwks_loaded").Str("source", u.Source).Strs("kids", u.KIDs)
				if len(u.Skipped) > 0 {
					e = e.Strs("skipped", u.Skipped)
				}
				e.Send()
			},
			OnError: func(err error) {
				if !a.tokenKeys.Load() {
					tlog.Error().Str("event", "jwks_error").Err(err).Msg("no token keys yet: tokens are refused and /readyz is 503; retrying")
					return
				}
				tlog.Warn().Str("event", "jwks_error").Err(err).Msg("JWKS refresh failed; the keys loaded before stay")
			},
		})
		if err != nil {
			return nil, nil, fmt.Errorf("agent: WARDEN_JWT_JWKS: %w", err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = jwks.Run(runCtx) }()
		keys, stop = jwks, func() { cancel(); <-done }
	}
	v, err := token.New(token.Options{
		Keys:       keys,
		Issuers:    a.cfg.JWTIssuers,
		Audiences:  a.cfg.JWTAudiences,
		Algorithms: a.cfg.JWTAlgorithms,
		ClockSkew:  a.cfg.JWTClockSkew,
		// JWT-SVIDs follow go-spiffe's jwtsvid rules (typ, sub, algorithms).
		JWTSVID: a.cfg.JWTJWKS == config.JWKSSPIFFE,
	})
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("agent: tokens: %w", err)
	}
	if a.cfg.JWTJWKS == config.JWKSSPIFFE {
		a.tokenKeys.Store(true)
	}
	return []authz.Option{authz.WithTokens(v, a.cfg.JWTHeader, a.cfg.JWTRequired)}, stop, nil
}

// decisionLogger is the audit log: JSON lines in OPA's decision log schema
// (authz writes its own timestamp and no level), batched off the request
// path. On stderr, among the other lines, they also carry the stream's
// time, level and component, whatever WARDEN_LOG_LEVEL says.
func (a *Agent) decisionLogger() (zerolog.Logger, func(), error) {
	if a.cfg.DecisionLog == "stderr" {
		return a.log.Level(zerolog.InfoLevel).With().Str("level", "info").Str("component", "decision").Logger(), func() {}, nil
	}
	w, closeSink, err := openSink("WARDEN_DECISION_LOG", a.cfg.DecisionLog)
	if err != nil {
		return zerolog.Logger{}, nil, err
	}
	a.decisionOut.Store(w)
	return zerolog.New(w), closeSink, nil
}

// bundleRejected emits bundle_rejected: reason is the stage that failed
// (bundle.LoadError's: read, verify, parse, compile; fetch when the
// source could not be read at all). A bundle that fails verification may
// have been tampered with: high; the others are mostly mistakes: medium.
// The error says which file or rule; bundle's errors never hold URL
// credentials.
func (a *Agent) bundleRejected(err error) {
	reason, sev := "fetch", secevent.Medium
	var le *bundle.LoadError
	if errors.As(err, &le) {
		reason = le.Stage
		if le.Stage == "verify" {
			sev = secevent.High
		}
	}
	a.events.Event(secevent.BundleRejected, sev).Str(secevent.FieldReason, reason).
		Str("detail", err.Error()).Msg("bundle not activated; the active revision stays")
}

func (a *Agent) policyView() any {
	if e := a.engine.Load(); e != nil {
		return e.Status()
	}
	return bundle.Status{}
}
