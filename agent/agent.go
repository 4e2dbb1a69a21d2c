package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/warden-sidecar/warden/agent/authz"
	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/agent/metrics"
	"github.com/warden-sidecar/warden/agent/proxy"
	"github.com/warden-sidecar/warden/agent/ratelimit"
	"github.com/warden-sidecar/warden/bundle"
	"github.com/warden-sidecar/warden/internal/ratekeys"
	"github.com/warden-sidecar/warden/internal/secevent"
	"github.com/warden-sidecar/warden/spiffe"
)

// identitySource is what the agent needs from either identity mode: the
// SVID and bundles handshakes read, and the trust domains for /identity.
type identitySource interface {
	spiffe.Source
	TrustDomains() []spiffeid.TrustDomain
}

// component is one part of the running sidecar, with the lifecycle every
// part shares. start acquires what the part needs and returns once it
// serves (or fails); work that runs until shutdown goes to run, whose
// functions are supervised together: the first to fail stops the agent.
// ready says why the part cannot serve yet, or nil. shutdown stops it
// within ctx's deadline; parts stop in the reverse order of their start.
type component interface {
	name() string
	start(ctx context.Context, run func(func() error)) error
	ready() error
	shutdown(ctx context.Context) error
}

// Agent is one running sidecar.
type Agent struct {
	cfg config.Config
	log zerolog.Logger

	source   identitySource
	closeSrc func() error
	renewed  chan struct{} // signalled at each rotation, for watchExpiry
	peers    *spiffe.PeerMatcher
	guard    *authz.Authorizer

	// The buckets of the policy's rate_limit keys and the peers' default
	// budget (WARDEN_RATE_LIMIT_KEYS), which the pipeline charges.
	rateKeys *ratekeys.Keys

	engine         atomic.Pointer[bundle.Engine]
	limiter        atomic.Pointer[ratelimit.Running]
	fastPath       atomic.Pointer[fastPath]
	tokenKeys      atomic.Bool // token verification keys loaded (or none needed)
	signatureKeys  atomic.Bool // request signature keys loaded (or none needed)
	identityLoaded atomic.Bool // source is set
	draining       atomic.Bool

	// What /metrics reads: the registry the parts count in, and the parts
	// it reads at scrape time that are built after New.
	metrics     *metrics.Metrics
	proxy       atomic.Pointer[proxy.Server]
	logOut      *BatchWriter                // the root logger's writer, when batched
	decisionOut atomic.Pointer[BatchWriter] // the decision log's own writer, if any

	// events is the security events' log (events.go), set by the first
	// part to start and used by the others; securityDropped counts the
	// events its destination lost.
	events          *secevent.Log
	securityDropped atomic.Pointer[func() uint64]

	// The lifecycle: what started, in order, and the group supervising
	// their work. failed is cancelled when a supervised function fails.
	components []component
	started    []component
	startedMu  sync.Mutex
	group      *errgroup.Group
	failed     context.Context

	mu           sync.Mutex
	inboundAddr  net.Addr
	adminAddr    net.Addr
	outboundAddr net.Addr
	lastRotated  time.Time
}

// Addrs are the addresses an agent's listeners are bound to; Outbound is
// nil without an outbound listener.
type Addrs struct {
	Inbound, Admin, Outbound net.Addr
}

// New prepares an agent; Start or Run starts it.
func New(cfg config.Config, log zerolog.Logger, opts ...Option) *Agent {
	a := &Agent{cfg: cfg, log: log, renewed: make(chan struct{}, 1)}
	for _, o := range opts {
		o(a)
	}
	a.rateKeys = ratekeys.New(cfg.RateLimitKeys)
	a.metrics = a.newMetrics()
	// The order parts start in; they stop in reverse. The security log
	// goes first, so that it is there for every other part and closes after
	// their last events; then the admin server, so probes get answers (503) while the identity is awaited; the
	// outbound listener before the inbound one, so the app can call out as
	// soon as requests come in, and drains after them.
	a.components = []component{
		&securityLog{a: a},
		&adminServer{a: a},
		&identity{a: a},
		&policy{a: a},
		&outboundServer{a: a},
		&inboundServer{a: a},
	}
	return a
}

// Start starts every part in order and returns the bound addresses once the
// inbound listener serves. When a part fails to start, those already
// started are stopped (in reverse order) and its error is returned; ctx
// ending during start (while the identity is awaited, say) stops them too
// and returns ctx's error. After Start, Wait supervises.
func (a *Agent) Start(ctx context.Context) (Addrs, error) {
	g, failed := errgroup.WithContext(context.Background())
	a.group, a.failed = g, failed
	run := func(f func() error) { g.Go(f) }
	for _, c := range a.components {
		err := c.start(ctx, run)
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), a.cfg.DrainTimeout)
			defer cancel()
			if serr := a.shutdown(stopCtx); serr != nil {
				a.log.Error().Str("event", "shutdown_failed").Err(serr).Send()
			}
			_ = g.Wait()
			return Addrs{}, err
		}
		a.startedMu.Lock()
		a.started = append(a.started, c)
		a.startedMu.Unlock()
	}
	return a.addrs(), nil
}

// Wait serves until ctx is cancelled or a part fails, then drains: readiness
// turns 503, the listeners stop accepting, and in-flight requests get
// WARDEN_DRAIN_TIMEOUT to finish, one deadline for every listener. It
// returns nil after a clean drain, the failure that stopped the agent
// otherwise.
func (a *Agent) Wait(ctx context.Context) error {
	var cause error
	select {
	case <-ctx.Done():
	case <-a.failed.Done():
		cause = fmt.Errorf("agent: server stopped: %w", context.Cause(a.failed))
	}
	a.draining.Store(true)
	a.log.Info().Str("event", "draining").Float64("drain_timeout_s", a.cfg.DrainTimeout.Seconds()).Send()
	drainCtx, cancel := context.WithTimeout(context.Background(), a.cfg.DrainTimeout)
	defer cancel()
	err := a.shutdown(drainCtx)
	if gerr := a.group.Wait(); cause == nil && gerr != nil {
		cause = fmt.Errorf("agent: server stopped: %w", gerr)
	}
	if err = errors.Join(cause, err); err != nil {
		return err
	}
	a.log.Info().Str("event", "stopped").Send()
	return nil
}

// Run is Start, then Wait. A ctx that ends while the agent starts (waiting
// for its identity) is a clean stop.
func (a *Agent) Run(ctx context.Context) error {
	if _, err := a.Start(ctx); err != nil {
		if ctx.Err() != nil {
			a.log.Info().Str("event", "stopped").Msg("stopped while starting")
			return nil
		}
		return err
	}
	return a.Wait(ctx)
}

// shutdown stops what started, last first, each within ctx; every part is
// asked to stop whatever the others answer.
func (a *Agent) shutdown(ctx context.Context) error {
	a.startedMu.Lock()
	started := a.started
	a.started = nil
	a.startedMu.Unlock()
	var errs []error
	for i := len(started) - 1; i >= 0; i-- {
		if err := started[i].shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("agent: %s: %w", started[i].name(), err))
		}
	}
	return errors.Join(errs...)
}

// readiness is /readyz: draining, or the first part that is not ready, or
// an SVID about to expire unrenewed.
func (a *Agent) readiness() (bool, string) {
	if a.draining.Load() {
		return false, "draining"
	}
	for _, c := range a.components {
		if err := c.ready(); err != nil {
			return false, err.Error()
		}
	}
	return true, ""
}

func (a *Agent) setAddr(dst *net.Addr, addr net.Addr) {
	a.mu.Lock()
	*dst = addr
	a.mu.Unlock()
}

func (a *Agent) addrs() Addrs {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Addrs{Inbound: a.inboundAddr, Admin: a.adminAddr, Outbound: a.outboundAddr}
}

// Addrs returns the bound inbound and admin addresses (nil until bound).
func (a *Agent) Addrs() (inbound, adminAddr net.Addr) {
	ad := a.addrs()
	return ad.Inbound, ad.Admin
}

// OutboundAddr returns the bound outbound address (nil until bound, and
// when there is no outbound listener).
func (a *Agent) OutboundAddr() net.Addr {
	return a.addrs().Outbound
}
