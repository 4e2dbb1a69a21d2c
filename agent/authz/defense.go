package authz

import (
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/warden-sidecar/warden/agent/openapi"
	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/internal/redact"
	"github.com/warden-sidecar/warden/internal/secevent"
)

// The active defense's stages: decoys (WARDEN_HONEYPOT_PATHS), first in the
// pipeline, and blocks a policy decision asks for (block_for_seconds).

// Block causes, as agent/ratelimit names them.
const (
	CauseHoneypot = "honeypot"
	CausePolicy   = "policy"
)

// Blocker blocks a request's source. Block runs on the request path, within
// Check: it must write the block where it is enforced (the kernel's map)
// before it returns, so that the source's next packet is dropped, and may
// read req (to describe the block in its event) but not keep it. The agent
// implements it (exemptions, the IPv6 prefix, closing the source's open
// connections, the source_blocked event).
type Blocker interface {
	Block(src netip.Addr, d time.Duration, cause string, req *pep.Request)
}

// decoys are the WARDEN_HONEYPOT_PATHS: exact paths, and prefixes (without
// their "/*") that match themselves and what lies below them.
type decoys struct {
	exact    map[string]struct{}
	prefixes []string
}

func newDecoys(paths []string) *decoys {
	if len(paths) == 0 {
		return nil
	}
	d := &decoys{exact: make(map[string]struct{}, len(paths))}
	for _, p := range paths {
		if pre, ok := strings.CutSuffix(p, "/*"); ok {
			d.prefixes = append(d.prefixes, pre)
			continue
		}
		d.exact[p] = struct{}{}
	}
	return d
}

// match reports whether the normalized path is a decoy; it allocates
// nothing (the map lookup converts without copying).
func (d *decoys) match(path []byte) bool {
	if _, ok := d.exact[string(path)]; ok {
		return true
	}
	for _, pre := range d.prefixes {
		if len(path) >= len(pre) && string(path[:len(pre)]) == pre &&
			(len(path) == len(pre) || path[len(pre)] == '/' || pre == "") {
			return true
		}
	}
	return false
}

// WithHoneypot makes the paths decoys: a request for one is answered
// exactly as a request for an unknown route (404 not_found, the body and
// headers of every other 404 warden writes), never reaches the app, is
// logged as honeypot_hit, and, when blockFor > 0 and a Blocker is set, has
// its source blocked for blockFor (cause honeypot).
func WithHoneypot(paths []string, blockFor time.Duration) Option {
	return func(a *Authorizer) {
		a.decoys = newDecoys(paths)
		a.decoyBlockFor = blockFor
	}
}

// WithBlocker blocks sources through b: decoy hits, and decisions with
// block_for_seconds, capped at maxBlockFor (0: the policy blocks nobody).
func WithBlocker(b Blocker, maxBlockFor time.Duration) Option {
	return func(a *Authorizer) {
		a.blocker = b
		a.maxBlockFor = maxBlockFor
	}
}

// decoyVerdict is an unknown route's answer: the OpenAPI stage's 404, so
// that a decoy looks like any route the API does not have.
var decoyVerdict = pep.Verdict{Status: http.StatusNotFound, Code: openapi.CodeNotFound, Stage: pep.StageHoneypot}

// checkDecoy answers a decoy hit; ok is false when the request was one.
func (a *Authorizer) checkDecoy(req *pep.Request) (v pep.Verdict, ok bool) {
	if !a.decoys.match(req.Path) {
		return pep.Verdict{}, true
	}
	a.events.Event(secevent.HoneypotHit, secevent.High).
		Str(secevent.FieldSourceIP, req.ClientIP).Str(secevent.FieldPeerID, req.PeerID).
		Bytes(secevent.FieldRequestID, req.ID).Bytes(secevent.FieldMethod, req.Method).
		Bytes(secevent.FieldPath, redact.Path(req.Path)).Str(secevent.FieldReason, pep.ReasonHoneypot).Send()
	if a.blocker != nil && a.decoyBlockFor > 0 {
		if src, err := netip.ParseAddr(req.ClientIP); err == nil {
			a.blocker.Block(src, a.decoyBlockFor, CauseHoneypot, req)
		}
	}
	return decoyVerdict, false
}

// applyBlock blocks the source of a request whose decision asks for it,
// cached or not: the decision applies to every request that gets it.
func (a *Authorizer) applyBlock(req *pep.Request, d time.Duration) {
	if a.blocker == nil || a.maxBlockFor <= 0 || d <= 0 {
		return
	}
	src, err := netip.ParseAddr(req.ClientIP)
	if err != nil {
		return
	}
	a.blocker.Block(src, min(d, a.maxBlockFor), CausePolicy, req)
}
