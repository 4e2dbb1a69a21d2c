package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/internal/secevent"
	"github.com/warden-sidecar/warden/spiffe"
)

// identity is the component that holds warden's SVID and trust bundles
// (the development CA or the Workload API), watches the SVID's expiry, and
// builds the allow-list once the own trust domain is known.
type identity struct {
	a          *Agent
	stopExpiry context.CancelFunc
	expiryDone chan struct{}
}

func (c *identity) name() string { return "identity" }

func (c *identity) ready() error {
	switch {
	case !c.a.identityLoaded.Load():
		return errors.New("identity not loaded")
	case c.a.svidNearExpiry():
		return errors.New("SVID near expiry and not renewed")
	}
	return nil
}

func (c *identity) start(ctx context.Context, _ func(func() error)) error {
	a := c.a
	if err := a.startIdentity(ctx); err != nil {
		return err
	}
	a.identityLoaded.Store(true) // a.source is set: views (and events' spiffe_id) may read it
	expiryCtx, stop := context.WithCancel(context.Background())
	c.stopExpiry, c.expiryDone = stop, make(chan struct{})
	go func() { defer close(c.expiryDone); a.watchExpiry(expiryCtx) }()

	// A failure from here on is this part's own: it stops what it started,
	// since only parts that started are shut down.
	svid, err := a.source.GetX509SVID()
	if err != nil {
		_ = c.shutdown(ctx)
		return fmt.Errorf("agent: own SVID: %w", err)
	}
	td := a.cfg.TrustDomain
	if td.IsZero() {
		td = svid.ID.TrustDomain()
	}
	if a.peers, err = spiffe.ParsePeerMatcher(a.cfg.AllowedPeers, td); err != nil {
		_ = c.shutdown(ctx)
		return fmt.Errorf("agent: WARDEN_ALLOWED_PEERS: %w", err)
	}
	a.log.Info().Str("event", "identity_ready").Str("spiffe_id", svid.ID.String()).
		Time("svid_expiry", svid.Certificates[0].NotAfter).Strs("allowed_peers", a.peers.Patterns()).
		Strs("bundle_trust_domains", tdNames(a.source.TrustDomains())).Send()
	return nil
}

func (c *identity) shutdown(context.Context) error {
	if c.stopExpiry != nil {
		c.stopExpiry()
		<-c.expiryDone
	}
	return c.a.closeSrc()
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
	return nil
}
func (a *Agent) rotated(svid *x509svid.SVID) {
	a.metrics.SVIDRotated()
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
				a.events.Event(secevent.IdentityExpiring, secevent.Critical).Str(secevent.FieldReason, "expired").
					Str("svid_expiry", leaf.NotAfter.UTC().Format(time.RFC3339)).
					Msg("own SVID expired without renewal: TLS handshakes are refused until a new one arrives")
			}
			continue // only a rotation can change anything now
		case !now.Before(next):
			if warned != leaf {
				warned = leaf
				a.events.Event(secevent.IdentityExpiring, secevent.High).Str(secevent.FieldReason, "near_expiry").
					Str("svid_expiry", leaf.NotAfter.UTC().Format(time.RFC3339)).
					Float64("margin_s", margin.Seconds()).Msg("own SVID not renewed and close to expiry: readiness is 503")
			}
			next = leaf.NotAfter.Add(time.Millisecond)
		}
		timer.Reset(time.Until(next))
	}
}
func (a *Agent) ownID() spiffeid.ID {
	svid, err := a.source.GetX509SVID()
	if err != nil {
		return spiffeid.ID{}
	}
	return svid.ID
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
	if !a.identityLoaded.Load() {
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
func tdNames(tds []spiffeid.TrustDomain) []string {
	out := make([]string, 0, len(tds))
	for _, td := range tds {
		out = append(out, td.Name())
	}
	return out
}
