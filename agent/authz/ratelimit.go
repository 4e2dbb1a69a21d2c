package authz

import (
	"net/http"
	"strconv"
	"time"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/bundle"
	"github.com/warden-sidecar/warden/internal/gcra"
	"github.com/warden-sidecar/warden/internal/ratekeys"
	"github.com/warden-sidecar/warden/internal/redact"
	"github.com/warden-sidecar/warden/internal/secevent"
)

// Rate limits by layer-7 key, after the policy allowed a request: the
// decision's rate_limit (the PDP approves a rate as well as the request),
// else the default budget of the peer's SPIFFE ID (WARDEN_PEER_RATE_LIMIT),
// across all its connections. They apply to every request, cached
// decisions included, on every protocol path, since they sit here in the
// shared pipeline. A request over its budget gets 429 rate_limited with
// Retry-After, and never reaches the app.

// rateLimits is an Authorizer's layer-7 limits; off when keys is nil.
type rateLimits struct {
	keys *ratekeys.Keys // counts the refusals too
	peer gcra.Params    // unlimited: no default budget
}

// The kinds of keys: a policy naming a peer's SPIFFE ID as its key gets a
// bucket of its own, not the peer's default one.
const (
	keyPolicy ratekeys.Kind = iota
	keyPeer
)

// WithRateLimits keeps the buckets of the decisions' rate_limit keys, and
// of peers under the default budget peer (gcra.New(WARDEN_PEER_RATE_LIMIT,
// WARDEN_PEER_BURST); unlimited Params: no default), in keys. A decision's
// rate_limit replaces the default for its request. Without it, decisions'
// rate limits are not enforced.
func WithRateLimits(keys *ratekeys.Keys, peer gcra.Params) Option {
	return func(a *Authorizer) { a.rates.keys, a.rates.peer = keys, peer }
}

// takeRate charges the allowed request to its bucket; limited says it is
// over its budget, and wait when it may come again. A key already in the
// table costs a hash and a map lookup under a shard's lock, without
// allocating.
func (a *Authorizer) takeRate(req *pep.Request, d *bundle.Decision) (wait time.Duration, limited bool) {
	var ok bool
	switch {
	case a.rates.keys == nil:
		return 0, false
	case d.RateLimit.PerSecond > 0:
		ok, wait = a.rates.keys.Take(keyPolicy, d.RateLimit.Key, gcra.New(d.RateLimit.PerSecond, d.RateLimit.Burst))
	case !a.rates.peer.Unlimited() && req.PeerID != "":
		ok, wait = a.rates.keys.Take(keyPeer, req.PeerID, a.rates.peer)
	default:
		return 0, false
	}
	return wait, !ok
}

// refuseRate answers a request over its budget, and writes the sampled
// rate_limited event. The key is never written: a policy may build it from
// a credential (an API key header), which no event may carry.
func (a *Authorizer) refuseRate(st *state, req *pep.Request, d *bundle.Decision, wait time.Duration) pep.Verdict {
	if e := a.events.Sampled(secevent.RateLimited, secevent.Low, req.ClientIP); e != nil {
		limit, rate, burst := "policy", d.RateLimit.PerSecond, d.RateLimit.Burst
		if rate == 0 {
			limit, rate, burst = "peer", int64(time.Second/time.Duration(a.rates.peer.Interval)), int64(a.rates.peer.Tolerance/a.rates.peer.Interval)
		}
		e = e.Str(secevent.FieldSourceIP, req.ClientIP).Str(secevent.FieldPeerID, req.PeerID).
			Bytes(secevent.FieldRequestID, req.ID).Bytes(secevent.FieldMethod, req.Method).
			Bytes(secevent.FieldPath, redact.Path(req.Path)).Str(secevent.FieldReason, pep.ReasonRateLimited).
			Str("limit", limit).Int64("per_second", rate).Int64("burst", burst).Float64("retry_after_s", retrySeconds(wait))
		if sub, ok := st.in.Token["sub"].(string); ok {
			e = e.Str(secevent.FieldTokenSubject, sub)
		}
		e.Send()
	}
	return pep.Verdict{Status: http.StatusTooManyRequests, Code: pep.ReasonRateLimited, ClientHeaders: retryAfter(wait),
		Stage: pep.StageRateLimit, Revision: d.Revision, Cached: d.Cached}
}

// retrySeconds is wait in whole seconds, rounded up, at least 1: what
// Retry-After can say (RFC 9110 section 10.2.3).
func retrySeconds(wait time.Duration) float64 {
	return float64(max(1, (wait+time.Second-1)/time.Second))
}

// retryAfters are the Retry-After headers of the first waits, made once:
// a client over its budget is refused without an allocation.
var retryAfters = func() [][]pep.Header {
	hs := make([][]pep.Header, 301)
	for s := 1; s < len(hs); s++ {
		hs[s] = []pep.Header{{Name: "Retry-After", Value: strconv.Itoa(s)}}
	}
	return hs
}()

func retryAfter(wait time.Duration) []pep.Header {
	s := int(retrySeconds(wait))
	if s < len(retryAfters) {
		return retryAfters[s]
	}
	return []pep.Header{{Name: "Retry-After", Value: strconv.Itoa(s)}}
}
