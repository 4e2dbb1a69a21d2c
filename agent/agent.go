package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/warden-sidecar/warden/agent/admin"
	"github.com/warden-sidecar/warden/agent/authz"
	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/agent/proxy"
	"github.com/warden-sidecar/warden/bundle"
	"github.com/warden-sidecar/warden/spiffe"
)

// identityTimeout bounds the wait for the first SVID from the Workload API.
const identityTimeout = 30 * time.Second

// Agent is one running sidecar.
type Agent struct {
	cfg config.Config
	log zerolog.Logger

	source   spiffe.Source
	closeSrc func() error

	engine        atomic.Pointer[bundle.Engine]
	identityReady atomic.Bool
	listening     atomic.Bool
	draining      atomic.Bool

	mu          sync.Mutex
	inboundAddr net.Addr
	adminAddr   net.Addr
	lastRotated time.Time
}

// New prepares an agent; Run starts it.
func New(cfg config.Config, log zerolog.Logger) *Agent {
	return &Agent{cfg: cfg, log: log}
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
	if a.cfg.AdminPprof {
		adm.EnablePprof()
	}
	a.setAddr(&a.adminAddr, adminLn.Addr())
	a.log.Info().Str("event", "listening").Str("listener", "admin").Str("addr", adminLn.Addr().String()).Send()

	errc := make(chan error, 2)
	go func() { errc <- adm.Serve(adminLn) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = adm.Shutdown(ctx)
	}()

	if err := a.startIdentity(ctx); err != nil {
		return err
	}
	defer a.closeSrc()

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
		Time("svid_expiry", svid.Certificates[0].NotAfter).Strs("allowed_peers", peers.Patterns()).Send()

	guard, stopPolicy, err := a.startPolicy(ctx)
	if err != nil {
		return err
	}
	defer stopPolicy()

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
		OwnID:               a.ownID,
		AllowPeer:           peers.Allowed,
		Guard:               guard,
		Log:                 a.log.With().Str("component", "proxy").Logger(),
	})
	inLn, err := net.Listen("tcp", a.cfg.InboundAddr)
	if err != nil {
		return fmt.Errorf("agent: inbound listener on %s: %w", a.cfg.InboundAddr, err)
	}
	a.setAddr(&a.inboundAddr, inLn.Addr())
	go func() { errc <- px.Serve(proxy.NewListener(inLn, spiffe.ServerTLSConfig(a.source, a.source))) }()
	a.listening.Store(true)
	a.log.Info().Str("event", "listening").Str("listener", "inbound").Str("addr", inLn.Addr().String()).
		Str("upstream", a.cfg.UpstreamAddr).Send()

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
	a.listening.Store(false)
	a.log.Info().Str("event", "stopped").Send()
	return nil
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
		wctx, cancel := context.WithTimeout(ctx, identityTimeout)
		defer cancel()
		src, err := workloadapi.NewX509Source(wctx, workloadapi.WithClientOptions(workloadapi.WithAddr(a.cfg.SPIFFESocket)))
		if err != nil {
			return fmt.Errorf("agent: no X.509-SVID from the Workload API at SPIFFE_ENDPOINT_SOCKET=%s within %s: %w", a.cfg.SPIFFESocket, identityTimeout, err)
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
		closeLog()
	}
	ownID := func() string { return a.ownID().String() }
	return authz.New(engine, ownID, dlog), stop, nil
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

func (a *Agent) rotated(svid *x509svid.SVID) {
	a.mu.Lock()
	a.lastRotated = time.Now()
	a.mu.Unlock()
	a.log.Info().Str("event", "svid_rotated").Str("spiffe_id", svid.ID.String()).
		Time("svid_expiry", svid.Certificates[0].NotAfter).Send()
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
	case a.engine.Load() == nil || !a.engine.Load().Ready():
		return false, "policy not loaded"
	case !a.listening.Load():
		return false, "inbound listener not up"
	}
	return true, ""
}

type identityView struct {
	SPIFFEID    string     `json:"spiffe_id"`
	TrustDomain string     `json:"trust_domain"`
	SVIDExpiry  *time.Time `json:"svid_expiry,omitempty"`
	LastRotated *time.Time `json:"last_rotation,omitempty"`
	Mode        string     `json:"mode"`
}

func (a *Agent) identityView() any {
	v := identityView{Mode: a.cfg.Identity}
	if !a.identityReady.Load() {
		return v
	}
	if svid, err := a.source.GetX509SVID(); err == nil {
		exp := svid.Certificates[0].NotAfter.UTC()
		v.SPIFFEID, v.TrustDomain, v.SVIDExpiry = svid.ID.String(), svid.ID.TrustDomain().Name(), &exp
	}
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
