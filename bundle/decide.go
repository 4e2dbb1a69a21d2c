package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// neverCancel is shared by the evaluations without a deadline; it is never
// cancelled.
var neverCancel = topdown.NewCancel()

// maxCacheTTL caps a policy's cache_ttl_seconds.
const maxCacheTTL = 24 * time.Hour

// maxBlockFor caps a policy's block_for_seconds before the PEP's own cap
// (WARDEN_MAX_BLOCK_FOR, at most as long): a block must expire.
const maxBlockFor = 24 * time.Hour

// Decision is the policy's answer for one request.
type Decision struct {
	Allow  bool
	Status int // 0: the PEP picks its default (403)
	// Reasons are the policy's own reasons, as its result's "reason" gave
	// them (a string, or a list or set of strings), at most MaxReasons of
	// at most MaxReasonBytes each; nil when it gave none. Reason is them
	// joined with "; ". Logged, never sent to clients. An undefined decision
	// or an error has none: the PEP names its own reason from err. Shared by
	// cached decisions: read-only.
	Reasons []string
	Reason  string
	Headers []Header // to add to the upstream request; shared by cached decisions: read-only
	// Mask lists what the decision log must erase from this decision's event,
	// as the bundle's data.system.log.mask says (OPA's convention, evaluated
	// with the event {"input": ..., "result": ...} as input): paths such as
	// "/input/headers/x-api-key" or "/result/reason", slash-separated with
	// each segment URL path-escaped, sorted. Its upsert operations are
	// ignored: warden's log only erases. Nil when the bundle has no mask or
	// it masks nothing; ["/input"] when the mask could not be evaluated, which
	// does not change the decision. Shared by cached decisions: read-only.
	Mask []string
	// RateLimit is the policy's rate_limit (ratelimit.go); zero when it
	// gave none. Shared by cached decisions: read-only.
	RateLimit RateLimit
	// BlockFor is how long the PEP blocks the request's source (the
	// result's block_for_seconds; 0: not at all). Kept in the decision
	// cache: every request that gets the decision blocks, cached or not.
	BlockFor time.Duration
	// Revision is the bundle revision that decided.
	Revision string
	Cached   bool
}

// owned returns d with its strings copied into one allocation. OPA's result
// may alias the evaluation's input, which own made one allocation of the
// whole request: a cached decision holding a substring of it would keep all
// of that request alive, uncounted by CacheBytes.
func (d Decision) owned() Decision {
	n := len(d.Reason) + len(d.RateLimit.Key)
	for _, r := range d.Reasons {
		n += len(r)
	}
	for _, h := range d.Headers {
		n += len(h.Name) + len(h.Value)
	}
	for _, m := range d.Mask {
		n += len(m)
	}
	if n == 0 && d.Headers == nil && d.Mask == nil && d.Reasons == nil {
		return d
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(d.Reason)
	b.WriteString(d.RateLimit.Key)
	for _, r := range d.Reasons {
		b.WriteString(r)
	}
	for _, h := range d.Headers {
		b.WriteString(h.Name)
		b.WriteString(h.Value)
	}
	for _, m := range d.Mask {
		b.WriteString(m)
	}
	all := block(b.String())
	d.Reason = all.take(len(d.Reason))
	d.RateLimit.Key = all.take(len(d.RateLimit.Key))
	if d.Reasons != nil {
		rs := make([]string, len(d.Reasons))
		for i, r := range d.Reasons {
			rs[i] = all.take(len(r))
		}
		d.Reasons = rs
	}
	if d.Headers != nil {
		hs := make([]Header, len(d.Headers))
		for i, h := range d.Headers {
			hs[i] = Header{Name: all.take(len(h.Name)), Value: all.take(len(h.Value))}
		}
		d.Headers = hs
	}
	if d.Mask != nil {
		ms := make([]string, len(d.Mask))
		for i, m := range d.Mask {
			ms[i] = all.take(len(m))
		}
		d.Mask = ms
	}
	return d
}

// size is what the cache counts for d besides the Decision itself: its
// strings and the arrays of its slices. The revision is not counted: the
// compiled revision owns it.
func (d *Decision) size() int {
	n := len(d.Reason) + len(d.RateLimit.Key) + cap(d.Reasons)*int(unsafe.Sizeof("")) + cap(d.Headers)*int(unsafe.Sizeof(Header{})) + cap(d.Mask)*int(unsafe.Sizeof(""))
	for _, r := range d.Reasons {
		n += len(r)
	}
	for _, h := range d.Headers {
		n += len(h.Name) + len(h.Value)
	}
	for _, m := range d.Mask {
		n += len(m)
	}
	return n
}

// Decide evaluates the active revision's decision for in. It fails closed:
// with no active bundle, an undefined or malformed result, or an evaluation
// error, the decision denies; in the error cases err says why.
//
// A cached decision costs one hash of the input fields the policy reads
// (see Status.CacheKey) and one map lookup, without allocating; only the
// first evaluation of those fields' values runs the policy.
func (e *Engine) Decide(ctx context.Context, in *Input) (Decision, error) {
	c := e.state.Load()
	if c == nil {
		return Decision{}, ErrNotReady
	}
	if in == nil {
		return Decision{Revision: c.revision}, errors.New("bundle: Decide without input")
	}
	if c.cache == nil || c.key.uncacheable(in) {
		d, _, err := c.eval(ctx, in, 0)
		return d, err
	}
	defaultTTL := c.ttl
	if c.key.keysBody(in) {
		defaultTTL = 0
	}
	buf := keyPool.Get().(*[]byte)
	key := appendKey((*buf)[:0], &c.key, in)
	d, ok := c.cache.Get(key)
	if !ok {
		var ttl time.Duration
		var err error
		if d, ttl, err = c.eval(ctx, in, defaultTTL); err != nil {
			putKey(buf, key)
			return d, err
		}
		if ttl > 0 {
			kept := d.owned()
			c.cache.Put(key, kept, kept.size(), ttl)
		}
	} else {
		d.Cached = true
	}
	putKey(buf, key)
	return d, nil
}

// eval runs the prepared query and reads its result, then the mask for it.
// ttl is how long the decision may be cached (0: not at all): the result's
// cache_ttl_seconds, else defaultTTL.
func (c *compiled) eval(ctx context.Context, in *Input, defaultTTL time.Duration) (Decision, time.Duration, error) {
	owned := own(in)
	input, err := inputValue(&owned)
	if err != nil {
		d := Decision{Revision: c.revision}
		if c.mask != nil {
			d.Mask = maskEverything
		}
		return d, 0, fmt.Errorf("bundle: revision %s: input: token: %w", c.revision, err)
	}
	// Always an external Cancel: without one, OPA starts a goroutine per
	// evaluation to watch ctx. The deadline is a runtime timer instead, which
	// runs a function (in a goroutine of its own) only if it fires.
	cancel := neverCancel
	if c.timeout > 0 {
		deadline := topdown.NewCancel()
		t := time.AfterFunc(c.timeout, deadline.Cancel)
		defer t.Stop()
		cancel = deadline
	}
	d, result, ttl, err := c.decide(ctx, cancel, input, defaultTTL, nil)
	if c.mask != nil {
		d.Mask = c.evalMask(ctx, cancel, input, result)
	}
	return d, ttl, err
}

// decide evaluates the decision query. result is the decision as OPA gave
// it, nil when undefined or in error, for the mask. tracer, when not nil,
// records the evaluation (Explain).
func (c *compiled) decide(ctx context.Context, cancel topdown.Cancel, input ast.Value, defaultTTL time.Duration, tracer topdown.QueryTracer) (d Decision, result any, ttl time.Duration, err error) {
	deny := Decision{Revision: c.revision}
	var rs rego.ResultSet
	if tracer == nil {
		rs, err = c.query.Eval(ctx, rego.EvalParsedInput(input), rego.EvalExternalCancel(cancel))
	} else {
		// Without rule indexing and early exit every rule is tried, so the
		// trace shows why each did not apply; the decision is the same.
		rs, err = c.query.Eval(ctx, rego.EvalParsedInput(input), rego.EvalExternalCancel(cancel), rego.EvalQueryTracer(tracer),
			rego.EvalRuleIndexing(false), rego.EvalEarlyExit(false))
	}
	if err != nil && topdown.IsCancel(err) {
		// Only the deadline cancels.
		return deny, nil, 0, fmt.Errorf("%w: revision %s, after %v", ErrEvalTimeout, c.revision, c.timeout)
	}
	if err != nil {
		return deny, nil, 0, fmt.Errorf("bundle: revision %s: evaluate: %w", c.revision, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return deny, nil, defaultTTL, nil
	}
	if len(rs) > 1 {
		return deny, nil, 0, fmt.Errorf("bundle: revision %s: decision has %d results", c.revision, len(rs))
	}
	result = rs[0].Expressions[0].Value
	d, ttl, err = readResult(result, defaultTTL)
	if err != nil {
		return deny, result, 0, fmt.Errorf("bundle: revision %s: decision: %w", c.revision, err)
	}
	d.Revision = c.revision
	return d, result, ttl, nil
}

// readResult accepts a boolean, or an object
//
//	{"allow": bool, "status": int, "reason": string or [string],
//	 "headers": {string: string}, "cache_ttl_seconds": int,
//	 "rate_limit": {"key": string, "per_second": int, "burst": int},
//	 "block_for_seconds": int}
//
// of which only allow is required and other keys are ignored. Anything else
// is an error (and the caller denies).
func readResult(v any, defaultTTL time.Duration) (Decision, time.Duration, error) {
	var d Decision
	switch r := v.(type) {
	case bool:
		d.Allow = r
		return d, defaultTTL, nil
	case map[string]any:
		allow, ok := r["allow"].(bool)
		if !ok {
			return Decision{}, 0, fmt.Errorf("allow is %s, want a boolean", describe(r["allow"]))
		}
		d.Allow = allow
		ttl := defaultTTL
		var err error
		if s, ok := r["status"]; ok {
			n, err := integer(s)
			if err != nil || n != 0 && (n < 100 || n > 599) {
				return Decision{}, 0, fmt.Errorf("status is %s, want an HTTP status code", describe(s))
			}
			d.Status = int(n)
		}
		if s, ok := r["reason"]; ok {
			if d.Reasons, err = readReasons(s); err != nil {
				return Decision{}, 0, err
			}
			d.Reason = strings.Join(d.Reasons, "; ")
		}
		if h, ok := r["headers"]; ok {
			if d.Headers, err = readHeaders(h); err != nil {
				return Decision{}, 0, err
			}
		}
		if v, ok := r["rate_limit"]; ok {
			if d.RateLimit, err = readRateLimit(v); err != nil {
				return Decision{}, 0, err
			}
		}
		if s, ok := r["block_for_seconds"]; ok {
			n, err := integer(s)
			if err != nil || n < 0 {
				return Decision{}, 0, fmt.Errorf("block_for_seconds is %s, want a non-negative integer", describe(s))
			}
			d.BlockFor = time.Duration(min(n, int64(maxBlockFor/time.Second))) * time.Second
		}
		if s, ok := r["cache_ttl_seconds"]; ok {
			n, err := integer(s)
			if err != nil || n < 0 {
				return Decision{}, 0, fmt.Errorf("cache_ttl_seconds is %s, want a non-negative integer", describe(s))
			}
			ttl = time.Duration(min(n, int64(maxCacheTTL/time.Second))) * time.Second
		}
		return d, ttl, nil
	}
	return Decision{}, 0, fmt.Errorf("result is %s, want a boolean or an object with allow", describe(v))
}

// Bounds of a decision's reasons: they are logged with every decision on
// the request path and kept in the decision cache, so a policy returning
// its whole input as reasons must not make every line megabytes long.
const (
	MaxReasons     = 8
	MaxReasonBytes = 256
)

// readReasons accepts a string or a list (a Rego array or set) of strings.
// Empty strings are dropped; beyond MaxReasons the last kept one says how
// many more there were; each is cut to MaxReasonBytes on a character
// boundary, marked with "...". Another type, in the list too, is an error:
// a malformed decision denies.
func readReasons(v any) ([]string, error) {
	switch r := v.(type) {
	case string:
		if r == "" {
			return nil, nil
		}
		return []string{truncateReason(r)}, nil
	case []any:
		var out []string
		n := 0 // non-empty reasons
		for i, e := range r {
			s, ok := e.(string)
			switch {
			case !ok:
				return nil, fmt.Errorf("reason[%d] is %s, want a string", i, describe(e))
			case s == "":
				continue
			case n < MaxReasons:
				out = append(out, truncateReason(s))
			}
			n++
		}
		if n > MaxReasons {
			out[MaxReasons-1] = fmt.Sprintf("(%d more)", n-MaxReasons+1)
		}
		return out, nil
	}
	return nil, fmt.Errorf("reason is %s, want a string or a list of strings", describe(v))
}

func truncateReason(s string) string {
	if len(s) <= MaxReasonBytes {
		return s
	}
	const mark = "..."
	n := MaxReasonBytes - len(mark)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + mark
}

func integer(v any) (int64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, errors.New("not a number")
	}
	return n.Int64()
}

func readHeaders(v any) ([]Header, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("headers is %s, want an object of strings", describe(v))
	}
	hs := make([]Header, 0, len(m))
	for name, v := range m {
		value, ok := v.(string)
		switch {
		case !ok:
			return nil, fmt.Errorf("header %q is %s, want a string", name, describe(v))
		case !validHeaderName(name):
			return nil, fmt.Errorf("header name %q is not an HTTP token", name)
		case !validHeaderValue(value):
			return nil, fmt.Errorf("header %q has a control character in its value", name)
		}
		hs = append(hs, Header{Name: name, Value: value})
	}
	// Deterministic order for the PEP and the decision log.
	slices.SortFunc(hs, func(a, b Header) int { return strings.Compare(a.Name, b.Name) })
	return hs, nil
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "missing or null"
	case bool:
		return "a boolean"
	case json.Number:
		return fmt.Sprintf("the number %v", v)
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// validHeaderValue refuses CR, LF, NUL and the other controls but HTAB: a
// policy must not be able to split the upstream request.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
