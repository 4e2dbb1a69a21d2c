package agent

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/warden-sidecar/warden/agent/admin"
	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/agent/proxy"
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
