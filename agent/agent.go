package agent

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/warden-sidecar/warden/agent/admin"
	"github.com/warden-sidecar/warden/agent/authz"
	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/agent/outbound"
	"github.com/warden-sidecar/warden/agent/proxy"
	"github.com/warden-sidecar/warden/agent/ratelimit"
	"github.com/warden-sidecar/warden/agent/token"
	"github.com/warden-sidecar/warden/bundle"
	"github.com/warden-sidecar/warden/spiffe"
)

// identitySource is what the agent needs from either identity mode: the
// SVID and bundles handshakes read, and the trust domains for /identity.
type identitySource interface {
	spiffe.Source
	TrustDomains() []spiffeid.TrustDomain
}

// Agent is one running sidecar.
type Agent struct {
	cfg config.Config
	log zerolog.Logger

	source   identitySource
	closeSrc func() error
	renewed  chan struct{} // signalled at each rotation, for watchExpiry

	engine        atomic.Pointer[bundle.Engine]
	limiter       atomic.Pointer[ratelimit.Running]
	tokenKeys     atomic.Bool // token verification keys loaded (or none needed)
	identityReady atomic.Bool
	listening     atomic.Bool
	draining      atomic.Bool

	mu           sync.Mutex
	inboundAddr  net.Addr
	adminAddr    net.Addr
	outboundAddr net.Addr
	lastRotated  time.Time
}

// New prepares an agent; Run starts it.
func New(cfg config.Config, log zerolog.Logger) *Agent {
	return &Agent{cfg: cfg, log: log, renewed: make(chan struct{}, 1)}
}

// Run serves until ctx is cancelled, then drains: readiness turns 503, the
// listener stops accepting, and in-flight requests get WARDEN_DRAIN_TIMEOUT
// to finish. It returns nil after a clean drain.
func (a *Agent) Run(ctx context.Context) error {
	adminLn, err := net.Listen("tcp", a.cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("agent: admin listener on %s: %w", a.cfg.AdminAddr, err)
	}
	adm := admin.New(a.readiness)
	adm.HandleJSON("/identity", a.identityView)
	adm.HandleJSON("/policy", a.policyView)
	adm.HandleJSON("/ratelimit", a.rateLimitView)
	if a.cfg.AdminPprof {
		adm.EnablePprof()
	}
	a.setAddr(&a.adminAddr, adminLn.Addr())
	a.log.Info().Str("event", "listening").Str("listener", "admin").Str("addr", adminLn.Addr().String()).Send()

	errc := make(chan error, 3)
	go func() { errc <- adm.Serve(adminLn) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = adm.Shutdown(ctx)
	}()

	if err := a.startIdentity(ctx); err != nil {
		if ctx.Err() != nil {
			a.log.Info().Str("event", "stopped").Msg("stopped while waiting for an identity")
			return nil
		}
		return err
	}
	defer a.closeSrc()
	expiryCtx, stopExpiry := context.WithCancel(ctx)
	expiryDone := make(chan struct{})
	go func() { defer close(expiryDone); a.watchExpiry(expiryCtx) }()
	defer func() { stopExpiry(); <-expiryDone }()

	svid, err := a.source.GetX509SVID()
	if err != nil {
		return fmt.Errorf("agent: own SVID: %w", err)
	}
	td := a.cfg.TrustDomain
	if td.IsZero() {
		td = svid.ID.TrustDomain()
	}
	peers, err := spiffe.ParsePeerMatcher(a.cfg.AllowedPeers, td)
	if err != nil {
		return fmt.Errorf("agent: WARDEN_ALLOWED_PEERS: %w", err)
	}
	a.log.Info().Str("event", "identity_ready").Str("spiffe_id", svid.ID.String()).
		Time("svid_expiry", svid.Certificates[0].NotAfter).Strs("allowed_peers", peers.Patterns()).
		Strs("bundle_trust_domains", tdNames(a.source.TrustDomains())).Send()

	guard, stopPolicy, err := a.startPolicy(ctx)
	if err != nil {
		return err
	}
	defer stopPolicy()

	inLn, err := net.Listen("tcp", a.cfg.InboundAddr)
	if err != nil {
		return fmt.Errorf("agent: inbound listener on %s: %w", a.cfg.InboundAddr, err)
	}
	// The limiter starts once the inbound port is bound: the kernel
	// program needs the port (":0" picks one) and the route to the address.
	rl, err := a.startRateLimit(inLn.Addr().(*net.TCPAddr))
	if err != nil {
		inLn.Close()
		return err
	}
	defer func() {
		if err := rl.Close(); err != nil {
			a.log.Error().Str("event", "ratelimit_close_failed").Err(err).Send()
		}
	}()
	var limiter proxy.Limiter
	if rl.Userspace != nil {
		limiter = rl.Userspace
	}
	px := proxy.New(proxy.Options{
		UpstreamAddr:        a.cfg.UpstreamAddr,
		UpstreamTimeout:     a.cfg.UpstreamTimeout,
		UpstreamMaxConns:    a.cfg.UpstreamMaxConns,
		ReadTimeout:         a.cfg.ReadTimeout,
		WriteTimeout:        a.cfg.WriteTimeout,
		IdleTimeout:         a.cfg.IdleTimeout,
		MaxHeaderBytes:      a.cfg.MaxHeaderBytes,
		MaxRequestBodyBytes: a.cfg.MaxRequestBodyBytes,
		MaxConnections:      a.cfg.MaxConnections,
		HandshakeTimeout:    a.cfg.HandshakeTimeout,
		Hardening:           hardening(a.cfg),
		OwnID:               a.ownID,
		AllowPeer:           peers.Allowed,
		Guard:               guard,
		Limiter:             limiter,
		Log:                 a.log.With().Str("component", "proxy").Logger(),
	})
	ob, obLn, err := a.outbound()
	if err != nil {
		inLn.Close()
		return err
	}
	a.setAddr(&a.inboundAddr, inLn.Addr())
	go func() {
		errc <- px.Serve(proxy.NewListener(inLn, spiffe.ServerTLSConfig(a.source, a.source), limiter, a.cfg.HandshakeTimeout))
	}()
	a.log.Info().Str("event", "listening").Str("listener", "inbound").Str("addr", inLn.Addr().String()).
		Str("upstream", a.cfg.UpstreamAddr).Send()
	if ob != nil {
		a.setAddr(&a.outboundAddr, obLn.Addr())
		go func() { errc <- ob.Serve(obLn) }()
		a.log.Info().Str("event", "listening").Str("listener", "outbound").Str("addr", obLn.Addr().String()).
			Int("routes", len(a.cfg.OutboundRoutes)).Send()
	}
	a.listening.Store(true)

	select {
	case <-ctx.Done():
	case err := <-errc:
		a.listening.Store(false)
		return fmt.Errorf("agent: server stopped: %w", err)
	}

	a.draining.Store(true)
	a.log.Info().Str("event", "draining").Float64("drain_timeout_s", a.cfg.DrainTimeout.Seconds()).Send()
	drainCtx, cancel := context.WithTimeout(context.Background(), a.cfg.DrainTimeout)
	defer cancel()
	if err := px.Shutdown(drainCtx); err != nil {
		return fmt.Errorf("agent: drain: in-flight requests still running after %s: %w", a.cfg.DrainTimeout, err)
	}
	// Outbound drains after inbound: the app may call out while it finishes
	// the requests that came in.
	if ob != nil {
		if err := ob.Shutdown(drainCtx); err != nil {
			return fmt.Errorf("agent: drain: outbound requests still running after %s: %w", a.cfg.DrainTimeout, err)
		}
	}
	a.listening.Store(false)
	a.log.Info().Str("event", "stopped").Send()
	return nil
}

// hardening is the proxy's request checks as the configuration sets them.
func hardening(cfg config.Config) proxy.Hardening {
	h := proxy.Hardening{
		AllowGetBody:        cfg.AllowGetBody,
		KeepSemicolons:      cfg.PathSemicolon == config.PathSemicolonKeep,
		StripHeaders:        cfg.StripHeaders,
		AllowMethodOverride: cfg.AllowMethodOverride,
		AllowedMethods:      cfg.AllowedMethods,
		MaxHeaders:          cfg.MaxHeaders,
	}
	switch cfg.HeadersWithUnderscores {
	case config.UnderscoresReject:
		h.Underscores = proxy.UnderscoresReject
	case config.UnderscoresAllow:
		h.Underscores = proxy.UnderscoresAllow
	}
	return h
}

func (a *Agent) startIdentity(ctx context.Context) error {
	switch a.cfg.Identity {
	case config.IdentityDev:
		ca, err := spiffe.LoadOrCreateDevCA(a.cfg.DevDir, a.cfg.SPIFFEID.TrustDomain())
		if err != nil {
			return fmt.Errorf("agent: dev identity: %w", err)
		}
		src, err := spiffe.NewDevSource(ca, a.cfg.SPIFFEID, a.rotated)
		if err != nil {
			return fmt.Errorf("agent: dev identity: %w", err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := src.Run(runCtx); err != nil {
				a.log.Error().Str("event", "svid_renewal_failed").Err(err).Send()
			}
		}()
		a.source = src
		a.closeSrc = func() error { cancel(); <-done; return nil }
		a.log.Warn().Str("event", "dev_identity").Str("dev_dir", a.cfg.DevDir).
			Str("trust_bundle", a.cfg.DevDir+"/"+spiffe.DevCACertFile).
			Msg("using the embedded development CA: not for production")
	case config.IdentityWorkloadAPI:
		ilog := a.log.With().Str("component", "identity").Logger()
		ilog.Info().Str("event", "identity_waiting").Str("socket", a.cfg.SPIFFESocket).
			Float64("timeout_s", a.cfg.IdentityTimeout.Seconds()).Msg("waiting for the first SVID from the Workload API")
		wctx, cancel := context.WithTimeout(ctx, a.cfg.IdentityTimeout)
		defer cancel()
		src, err := spiffe.NewWorkloadSource(wctx, a.cfg.SPIFFESocket, spiffe.WorkloadEvents{
			Rotated: a.rotated,
			Bundles: func(tds []spiffeid.TrustDomain) {
				ilog.Info().Str("event", "bundles_updated").Strs("trust_domains", tdNames(tds)).Send()
			},
			Lost: func(err error) {
				ilog.Warn().Str("event", "workload_api_unavailable").Str("socket", a.cfg.SPIFFESocket).Err(err).
					Msg("Workload API stream failed; serving with the SVID and bundles already received, retrying")
			},
			Restored: func() {
				ilog.Info().Str("event", "workload_api_restored").Str("socket", a.cfg.SPIFFESocket).Send()
			},
		})
		if err != nil {
			return fmt.Errorf("agent: WARDEN_IDENTITY_TIMEOUT=%s passed without an SVID from SPIFFE_ENDPOINT_SOCKET=%s: %w",
				a.cfg.IdentityTimeout, a.cfg.SPIFFESocket, err)
		}
		a.source = src
		a.closeSrc = src.Close
	default:
		return fmt.Errorf("agent: unknown identity mode %q", a.cfg.Identity)
	}
	a.mu.Lock()
	a.lastRotated = time.Now()
	a.mu.Unlock()
	a.identityReady.Store(true)
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
			plog.Info().Str("event", "policy_activated").Str("source", st.Source).
				Str("revision", st.Revision).Time("loaded_at", st.LoadedAt).Send()
		},
		OnError: func(err error) {
			plog.Error().Str("event", "policy_rejected").Err(err).Msg("bundle not activated; the active revision stays")
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
	opts, stopTokens, err := a.startTokens(ctx)
	if err != nil {
		closeLog()
		return nil, nil, err
	}
	opts = append(opts, authz.WithEventLog(a.log.With().Str("component", "authz").Logger()))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := engine.Run(runCtx); err != nil && runCtx.Err() == nil {
			plog.Error().Str("event", "policy_stopped").Err(err).Send()
		}
	}()
	stop := func() {
		cancel()
		<-done
		stopTokens()
		closeLog()
	}
	ownID := func() string { return a.ownID().String() }
	return authz.New(engine, ownID, dlog, opts...), stop, nil
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

// decisionLogger is the audit log: JSON lines with event "decision", always
// at info level whatever WARDEN_LOG_LEVEL says, batched off the request path.
func (a *Agent) decisionLogger() (zerolog.Logger, func(), error) {
	switch a.cfg.DecisionLog {
	case "stderr":
		return a.log.Level(zerolog.InfoLevel).With().Str("component", "decision").Logger(), func() {}, nil
	case "stdout":
		w := NewBatchWriter(os.Stdout, 0)
		return zerolog.New(w).With().Timestamp().Logger(), func() { _ = w.Close() }, nil
	}
	f, err := os.OpenFile(a.cfg.DecisionLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return zerolog.Logger{}, nil, fmt.Errorf("agent: WARDEN_DECISION_LOG: %w", err)
	}
	w := NewBatchWriter(f, 0)
	return zerolog.New(w).With().Timestamp().Logger(), func() { _ = w.Close(); _ = f.Close() }, nil
}

func (a *Agent) policyView() any {
	if e := a.engine.Load(); e != nil {
		return e.Status()
	}
	return bundle.Status{}
}

// outbound builds the outbound proxy and binds its listener, or returns nil
// when there is nothing to route: without routes every request would be
// refused, and an idle listener would only claim the port.
func (a *Agent) outbound() (*outbound.Server, net.Listener, error) {
	if a.cfg.OutboundAddr == "" {
		return nil, nil, nil
	}
	if len(a.cfg.OutboundRoutes) == 0 {
		a.log.Info().Str("event", "outbound_disabled").Msg("no WARDEN_OUTBOUND_ROUTES: no outbound listener")
		return nil, nil, nil
	}
	routes := make([]outbound.Route, 0, len(a.cfg.OutboundRoutes))
	for _, r := range a.cfg.OutboundRoutes {
		routes = append(routes, outbound.Route{Host: r.Host, Addr: r.Addr, ID: r.ID})
	}
	ob := outbound.New(outbound.Options{
		Routes:              routes,
		SVID:                a.source,
		Bundles:             a.source,
		Timeout:             a.cfg.OutboundTimeout,
		MaxConnsPerRoute:    a.cfg.UpstreamMaxConns,
		ReadTimeout:         a.cfg.ReadTimeout,
		WriteTimeout:        a.cfg.WriteTimeout,
		IdleTimeout:         a.cfg.IdleTimeout,
		MaxHeaderBytes:      a.cfg.MaxHeaderBytes,
		MaxRequestBodyBytes: a.cfg.MaxRequestBodyBytes,
		MaxConnections:      a.cfg.MaxConnections,
		Log:                 a.log.With().Str("component", "outbound").Logger(),
	})
	ln, err := net.Listen("tcp", a.cfg.OutboundAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: outbound listener on %s: %w", a.cfg.OutboundAddr, err)
	}
	return ob, ln, nil
}

func (a *Agent) rotated(svid *x509svid.SVID) {
	a.mu.Lock()
	a.lastRotated = time.Now()
	a.mu.Unlock()
	select {
	case a.renewed <- struct{}{}:
	default:
	}
	a.log.Info().Str("event", "svid_rotated").Str("spiffe_id", svid.ID.String()).
		Str("serial", svid.Certificates[0].SerialNumber.String()).
		Time("svid_expiry", svid.Certificates[0].NotAfter).Send()
}

// watchExpiry logs, once per SVID, when the own SVID comes within its
// renewal margin without having been renewed (readiness is 503 from then
// on) and when it expires (handshakes fail from then on).
func (a *Agent) watchExpiry(ctx context.Context) {
	var warned, expired *x509.Certificate
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.renewed:
		case <-timer.C:
		}
		svid, err := a.source.GetX509SVID()
		if err != nil {
			continue // the source is closing
		}
		leaf, now := svid.Certificates[0], time.Now()
		margin := spiffe.RenewalMargin(leaf)
		next := leaf.NotAfter.Add(-margin)
		switch {
		case now.After(leaf.NotAfter):
			if expired != leaf {
				expired = leaf
				a.log.Error().Str("event", "svid_expired").Str("spiffe_id", svid.ID.String()).Time("svid_expiry", leaf.NotAfter).
					Msg("own SVID expired without renewal: TLS handshakes are refused until a new one arrives")
			}
			continue // only a rotation can change anything now
		case !now.Before(next):
			if warned != leaf {
				warned = leaf
				a.log.Warn().Str("event", "svid_expiring").Str("spiffe_id", svid.ID.String()).Time("svid_expiry", leaf.NotAfter).
					Float64("margin_s", margin.Seconds()).Msg("own SVID not renewed and close to expiry: readiness is 503")
			}
			next = leaf.NotAfter.Add(time.Millisecond)
		}
		timer.Reset(time.Until(next))
	}
}

func tdNames(tds []spiffeid.TrustDomain) []string {
	out := make([]string, 0, len(tds))
	for _, td := range tds {
		out = append(out, td.Name())
	}
	return out
}

func (a *Agent) ownID() spiffeid.ID {
	svid, err := a.source.GetX509SVID()
	if err != nil {
		return spiffeid.ID{}
	}
	return svid.ID
}

func (a *Agent) readiness() (bool, string) {
	switch {
	case a.draining.Load():
		return false, "draining"
	case !a.identityReady.Load():
		return false, "identity not loaded"
	case a.svidNearExpiry():
		return false, "SVID near expiry and not renewed"
	case a.engine.Load() == nil || !a.engine.Load().Ready():
		return false, "policy not loaded"
	case !a.tokenKeys.Load():
		return false, "jwks not loaded"
	case !a.listening.Load():
		return false, "inbound listener not up"
	}
	return true, ""
}

// svidNearExpiry is true within spiffe.RenewalMargin of the own SVID's
// expiry: a pod whose agent stopped renewing leaves the load balancer
// before its handshakes start failing.
func (a *Agent) svidNearExpiry() bool {
	svid, err := a.source.GetX509SVID()
	return err != nil || spiffe.NearExpiry(svid, time.Now())
}

type identityView struct {
	SPIFFEID           string     `json:"spiffe_id"`
	TrustDomain        string     `json:"trust_domain"`
	SVIDExpiry         *time.Time `json:"svid_expiry,omitempty"`
	BundleTrustDomains []string   `json:"bundle_trust_domains"`
	LastRotated        *time.Time `json:"last_rotation,omitempty"`
	Mode               string     `json:"mode"`
}

func (a *Agent) identityView() any {
	v := identityView{Mode: a.cfg.Identity, BundleTrustDomains: []string{}}
	if !a.identityReady.Load() {
		return v
	}
	if svid, err := a.source.GetX509SVID(); err == nil {
		exp := svid.Certificates[0].NotAfter.UTC()
		v.SPIFFEID, v.TrustDomain, v.SVIDExpiry = svid.ID.String(), svid.ID.TrustDomain().Name(), &exp
	}
	v.BundleTrustDomains = tdNames(a.source.TrustDomains())
	a.mu.Lock()
	last := a.lastRotated.UTC()
	a.mu.Unlock()
	v.LastRotated = &last
	return v
}

func (a *Agent) setAddr(dst *net.Addr, addr net.Addr) {
	a.mu.Lock()
	*dst = addr
	a.mu.Unlock()
}

// Addrs returns the bound inbound and admin addresses (nil until bound).
func (a *Agent) Addrs() (inbound, adminAddr net.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inboundAddr, a.adminAddr
}

// OutboundAddr returns the bound outbound address (nil until bound, and
// when there is no outbound listener).
func (a *Agent) OutboundAddr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.outboundAddr
}
