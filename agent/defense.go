package agent

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/authz"
	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/ratelimit"
	"github.com/warden-sidecar/warden/internal/redact"
	"github.com/warden-sidecar/warden/internal/secevent"
)

// The active defense: decoy hits and policy decisions block their source
// through the rate limiter (in the kernel's blocklist with eBPF, in the
// userspace one otherwise), warden closes the source's open connections,
// and every block and its end is a security event.

// defenseOptions are the pipeline's decoys and its Blocker.
func (a *Agent) defenseOptions() []authz.Option {
	opts := []authz.Option{authz.WithBlocker(pipelineBlocker{a}, a.cfg.MaxBlockFor)}
	if len(a.cfg.HoneypotPaths) > 0 {
		opts = append(opts, authz.WithHoneypot(a.cfg.HoneypotPaths, a.cfg.HoneypotBlockFor))
	}
	return opts
}

// kernelFeatures are the kernel features the defense asks for: decoys that
// block make the blocklist worth the eBPF program in auto mode. Policy
// blocks do not: any policy may return block_for_seconds, and the
// userspace limiter blocks as well.
func (a *Agent) kernelFeatures() []ratelimit.Feature {
	if len(a.cfg.HoneypotPaths) > 0 && a.cfg.HoneypotBlockFor > 0 {
		return []ratelimit.Feature{ratelimit.FeatureBlocklist}
	}
	return nil
}

// pipelineBlocker is the authz.Blocker: it runs on the request path.
type pipelineBlocker struct{ a *Agent }

func (b pipelineBlocker) Block(src netip.Addr, d time.Duration, cause string, req *pep.Request) {
	a := b.a
	_, err := a.block(src, d, ratelimit.Cause(cause), req)
	switch {
	case err == nil:
	case errors.Is(err, errExempt):
		a.log.Info().Str("event", "block_exempt").Str("source_ip", src.Unmap().String()).Str("prefix", a.blockPrefix(src).String()).
			Str("cause", cause).Msg("source not blocked: WARDEN_BLOCK_EXEMPT covers it")
	case errors.Is(err, ratelimit.ErrBlocklistFull):
		e := a.events.Event(secevent.BlocklistFull, secevent.High)
		describe(e, src, req).Str(secevent.FieldReason, cause).Str("prefix", a.blockPrefix(src).String()).
			Msg("source not blocked: the blocklist is full (WARDEN_BPF_MAX_SOURCES)")
	default:
		a.log.Warn().Str("event", "block_failed").Err(err).Str("source_ip", src.Unmap().String()).Str("cause", cause).
			Msg("source not blocked")
	}
}

// errExempt: the source is in WARDEN_BLOCK_EXEMPT.
var errExempt = errors.New("agent: block: the source is in WARDEN_BLOCK_EXEMPT")

// blockPrefix is what a block of src covers: the address, or for IPv6 its
// WARDEN_IPV6_PREFIX.
func (a *Agent) blockPrefix(src netip.Addr) netip.Prefix {
	src = src.Unmap()
	if src.Is6() {
		return netip.PrefixFrom(src, a.cfg.IPv6Prefix).Masked()
	}
	return netip.PrefixFrom(src, 32)
}

// exempt reports whether a block of p would cover a WARDEN_BLOCK_EXEMPT
// source (for IPv6, any address of the prefix).
func (a *Agent) exempt(p netip.Prefix) bool {
	for _, e := range a.cfg.BlockExempt {
		if e.Overlaps(p) {
			return true
		}
	}
	return false
}

// block blocks src for d: the limiter writes the block where it is
// enforced before this returns (with eBPF, the kernel drops the source's
// next packet), then the source's open connections are closed and, unless
// the block only renewed one in force, source_blocked is written. req,
// when not nil, is the request that caused it. WARDEN_BLOCK_EXEMPT holds
// for every cause but manual.
func (a *Agent) block(src netip.Addr, d time.Duration, cause ratelimit.Cause, req *pep.Request) (ratelimit.Blocked, error) {
	if cause != ratelimit.CauseManual && a.exempt(a.blockPrefix(src)) {
		return ratelimit.Blocked{}, errExempt
	}
	rl := a.limiter.Load()
	if rl == nil {
		return ratelimit.Blocked{}, ratelimit.ErrOff
	}
	b, err := rl.BlockFor(src, d, cause)
	if err != nil {
		return b, err
	}
	if pr := a.proxy.Load(); pr != nil {
		pr.CloseSource(b.Prefix)
	}
	if !b.Renewed {
		e := a.events.Event(secevent.SourceBlocked, secevent.High)
		describe(e, src, req).Str(secevent.FieldReason, string(cause)).Str("prefix", b.Prefix.String()).
			Float64("duration_s", d.Seconds()).
			Str("expires", time.Now().Add(d).UTC().Format(time.RFC3339)).Send()
	}
	return b, nil
}

// describe adds the source and what is known of the request to a security
// event; the path is redacted, no header is read.
func describe(e *zerolog.Event, src netip.Addr, req *pep.Request) *zerolog.Event {
	e = e.Str(secevent.FieldSourceIP, src.Unmap().String())
	if req != nil {
		e = e.Str(secevent.FieldPeerID, req.PeerID).Bytes(secevent.FieldRequestID, req.ID).
			Bytes(secevent.FieldMethod, req.Method).Bytes(secevent.FieldPath, redact.Path(req.Path))
	}
	return e
}

// Block drops ip's traffic to the inbound port for d, in the kernel or in
// userspace, whichever enforces, and closes its open connections (cause
// manual: WARDEN_BLOCK_EXEMPT does not apply). It fails when rate limiting
// is off or not started yet.
func (a *Agent) Block(ip netip.Addr, d time.Duration) error {
	_, err := a.block(ip, d, ratelimit.CauseManual, nil)
	return err
}

// Unblock lifts a block early; source_unblocked says so (when there was
// one to lift).
func (a *Agent) Unblock(ip netip.Addr) error {
	rl := a.limiter.Load()
	if rl == nil {
		return ratelimit.ErrOff
	}
	e, ok, err := rl.Lift(ip)
	if err != nil || !ok {
		return err
	}
	a.events.Event(secevent.SourceUnblocked, secevent.Low).Str(secevent.FieldSourceIP, ip.Unmap().String()).
		Str("prefix", e.Prefix.String()).Str(secevent.FieldReason, "lifted").Str("cause", string(e.Cause)).Send()
	return nil
}

// sweepInterval is how often ended blocks are swept and reported: the
// enforcers stop blocking at the expiry itself, the event follows within
// this.
const sweepInterval = 250 * time.Millisecond

// sweepBlocks reports the blocks that ended (source_unblocked, reason
// expired) until ctx ends.
func (a *Agent) sweepBlocks(ctx context.Context, rl *ratelimit.Running) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, e := range rl.Sweep(now) {
				a.events.Event(secevent.SourceUnblocked, secevent.Low).Str(secevent.FieldSourceIP, e.Prefix.Addr().String()).
					Str("prefix", e.Prefix.String()).Str(secevent.FieldReason, "expired").Str("cause", string(e.Cause)).Send()
			}
		}
	}
}
