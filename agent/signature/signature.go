package signature

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dunglas/httpsfv"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/token"
)

// Why a signed (or unsigned) request was refused: stable names for the log
// and metrics labels, never sent to the client.
const (
	ReasonMissing         = "missing"               // no signature while one is required
	ReasonUnknownKey      = "unknown_key"           // no label's keyid names a key usable here
	ReasonBadSignature    = "bad_signature"         // the signature does not verify over this request, or alg does not fit the key
	ReasonNotCovered      = "component_not_covered" // a required component is not covered, or content-digest is absent for a body
	ReasonStale           = "stale"                 // created too old or in the future, or older than what a full replay cache still remembers
	ReasonExpired         = "expired"               // past expires
	ReasonReplayed        = "replayed"              // this signature base was accepted before
	ReasonDigestMismatch  = "digest_mismatch"       // Content-Digest does not match the body, or names no algorithm known here
	ReasonMalformed       = "malformed"             // not parseable structured fields, wrong parameter types, unsupported component parameters, ...
	ReasonDuplicateHeader = "duplicate_header"      // Signature-Input, Signature or Content-Digest in more than one field line
)

// Error is a refusal. Reason is one of the Reason constants; Detail is for
// the operator's log: it names labels, keyids, components and times, never
// a signature, a secret or a header's value.
type Error struct {
	Reason string
	Detail string
}

func (e *Error) Error() string { return "signature: " + e.Reason + ": " + e.Detail }

func refuse(reason, detail string) *Error { return &Error{Reason: reason, Detail: detail} }

// ReasonOf returns the reason of a refusal, or malformed for any other error.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonMalformed
}

const (
	// DefaultMaxAge is how old a signature's created may be.
	DefaultMaxAge = 60 * time.Second
	// DefaultReplayEntries is the replay cache's capacity: 4.25 MiB, which
	// remembers every signature for the whole window up to about 4,300
	// signed requests a second with the default MaxAge (capacity divided by
	// MaxAge plus twice the clock skew). Past that, see replay.go.
	DefaultReplayEntries = 1 << 18

	// maxLabels bounds the signatures one request may carry.
	maxLabels = 8
	// maxComponents bounds a signature's covered components.
	maxComponents = 32
)

// DefaultComponents are the components a signature must cover when
// Options.Components is nil (WARDEN_SIGNATURE_COMPONENTS's default).
var DefaultComponents = []string{"@method", "@target-uri", "@authority", "content-digest", "authorization"}

// Request is what a signature is verified over or made for: the request
// as received (or as it will be sent). Its slices alias the caller's
// buffers and are read during the call only.
type Request struct {
	Method []byte
	Scheme string // "https" inbound
	// Authority is the Host as received; @authority lower-cases it and
	// drops the scheme's default port (RFC 9421 2.2.3).
	Authority []byte
	// RawTarget is the request-target as received (origin form: path and
	// "?" query; or absolute form), before any normalization.
	RawTarget []byte
	// Headers as received: repeated names repeated, in order.
	Headers []pep.Field
	Body    []byte // nil when none
}

// Options configure a Verifier.
type Options struct {
	// Keys resolve a signature's keyid (sub is ""): a token.JWKS, with
	// JWKSOptions.Secrets when shared secrets are allowed. A JWKS's Lookup
	// of an unknown keyid may wait for a refresh (KIDWait, at most once
	// per MinRefresh), as for tokens.
	Keys token.Keys
	// Required refuses unsigned requests (missing); when false an unsigned
	// request passes (Verify returns nil, nil) and a signed one is verified.
	Required bool
	// Components a signature must cover (component names: derived ones
	// such as "@method", lower-case field names); nil: DefaultComponents.
	// content-digest is required only of requests with a body, other
	// fields only of requests that carry them.
	Components []string
	// MaxAge bounds how old created may be (0: DefaultMaxAge); ClockSkew
	// is allowed on top of it, and for created in the future and expires.
	MaxAge, ClockSkew time.Duration
	// ReplayEntries is the replay cache's capacity (0:
	// DefaultReplayEntries), rounded up to a power of two.
	ReplayEntries int
	Now           func() time.Time // nil: time.Now
}

// Verifier verifies signed requests. It is safe for concurrent use.
type Verifier struct {
	keys     token.Keys
	required bool
	derived  []string // required derived components
	fields   []string // required fields (content-digest included)
	maxAge   time.Duration
	skew     time.Duration
	now      func() time.Time
	replay   *replayCache
}

// Verified describes the accepted signature: what input.signature shows
// the policy.
type Verified struct {
	KeyID string
	Alg   string // the RFC 9421 algorithm it was verified with
	// Created is the signature's created, in Unix seconds.
	Created int64
	// Components are the covered component identifiers in order, as
	// Signature-Input serializes them without the name's quotes:
	// "@method", "content-digest", `@query-param;name="id"`, "x-id;bs".
	Components []string
}

// Stats are the replay cache's figures, for metrics.
type Stats struct {
	ReplayCapacity int
	// ReplayEvictions counts signatures forgotten before their window
	// ended because the cache was full: the cache is too small for the
	// rate of signed requests, and signatures older than the ones evicted
	// are being refused as stale (see replay.go).
	ReplayEvictions uint64
}

// NewVerifier checks the options.
func NewVerifier(o Options) (*Verifier, error) {
	if o.Keys == nil {
		return nil, errors.New("signature: no keys")
	}
	if o.MaxAge < 0 || o.ClockSkew < 0 || o.ReplayEntries < 0 {
		return nil, errors.New("signature: negative MaxAge, ClockSkew or ReplayEntries")
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.ReplayEntries == 0 {
		o.ReplayEntries = DefaultReplayEntries
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	v := &Verifier{keys: o.Keys, required: o.Required, maxAge: o.MaxAge, skew: o.ClockSkew, now: o.Now}
	_, derived, fields, err := checkComponents(o.Components)
	if err != nil {
		return nil, err
	}
	v.derived, v.fields = derived, fields
	v.replay = newReplayCache(o.ReplayEntries)
	return v, nil
}

// checkComponents returns the component names trimmed and in lower case,
// in order, and split into derived ones and fields; nil is
// DefaultComponents.
// CheckComponents reports whether names can be required of a signature:
// the configuration's check of WARDEN_SIGNATURE_COMPONENTS.
func CheckComponents(names []string) error {
	_, _, _, err := checkComponents(names)
	return err
}

func checkComponents(names []string) (all, derived, fields []string, err error) {
	if names == nil {
		names = DefaultComponents
	}
	all = make([]string, 0, len(names))
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		switch {
		case slices.Contains(all, n):
			return nil, nil, nil, fmt.Errorf("signature: component %q listed twice", n)
		case strings.HasPrefix(n, "@"):
			if !requestDerived[n] || n == "@query-param" {
				return nil, nil, nil, fmt.Errorf("signature: component %q: want one of @method, @target-uri, @authority, @scheme, @request-target, @path, @query or a field name", n)
			}
			derived = append(derived, n)
		case validFieldName(n):
			fields = append(fields, n)
		default:
			return nil, nil, nil, fmt.Errorf("signature: component %q is not a field name", n)
		}
		all = append(all, n)
	}
	return all, derived, fields, nil
}

// Stats returns the replay cache's figures.
func (v *Verifier) Stats() Stats {
	return Stats{ReplayCapacity: v.replay.capacity(), ReplayEvictions: v.replay.evictions.Load()}
}

// bufPool holds the signature base buffers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Verify checks r's signature. It returns (nil, nil) for an unsigned
// request when signatures are not required, the accepted signature, or an
// *Error.
func (v *Verifier) Verify(r *Request) (*Verified, error) {
	var input, sig, digest []byte
	var nInput, nSig, nDigest int
	for _, h := range r.Headers {
		switch {
		case equalFold(h.Name, "signature-input"):
			input, nInput = h.Value, nInput+1
		case equalFold(h.Name, "signature"):
			sig, nSig = h.Value, nSig+1
		case equalFold(h.Name, "content-digest"):
			digest, nDigest = h.Value, nDigest+1
		}
	}
	switch {
	case nInput > 1 || nSig > 1:
		return nil, refuse(ReasonDuplicateHeader, "Signature-Input or Signature in more than one field line")
	case nDigest > 1:
		return nil, refuse(ReasonDuplicateHeader, "Content-Digest in more than one field line")
	case nInput == 0 && nSig == 0:
		if v.required {
			return nil, refuse(ReasonMissing, "no Signature-Input and Signature")
		}
		return nil, nil
	case nInput == 0 || nSig == 0:
		return nil, refuse(ReasonMalformed, "Signature-Input and Signature must come together")
	}

	inputs, err := httpsfv.UnmarshalDictionary([]string{string(input)})
	if err != nil {
		return nil, refuse(ReasonMalformed, "Signature-Input: "+err.Error())
	}
	sigs, err := httpsfv.UnmarshalDictionary([]string{string(sig)})
	if err != nil {
		return nil, refuse(ReasonMalformed, "Signature: "+err.Error())
	}
	if len(inputs.Names()) > maxLabels || len(sigs.Names()) > maxLabels {
		return nil, refuse(ReasonMalformed, fmt.Sprintf("more than %d signatures", maxLabels))
	}
	if len(inputs.Names()) != len(sigs.Names()) {
		return nil, refuse(ReasonMalformed, "Signature-Input and Signature name different labels")
	}
	cands, cerr := v.candidates(r, inputs, sigs)
	if cerr != nil {
		return nil, cerr
	}

	// Every candidate is verified, not only the first that passes: the
	// replay cache must remember each valid base, or a replay could
	// reorder the labels and be accepted by the one not yet remembered.
	now := v.now()
	var (
		valid   [maxCandidates]*candidate
		bases   [maxCandidates]*[]byte
		n       int
		failure *Error
	)
	defer func() {
		for _, bp := range bases[:n] {
			bufPool.Put(bp)
		}
	}()
	for _, c := range cands {
		if c.err == nil {
			c.err = v.checkTimes(c, now)
		}
		if c.err == nil {
			bp := bufPool.Get().(*[]byte)
			*bp, c.err = appendBase((*bp)[:0], r, c.components, c.params)
			if c.err == nil && v.replay.seen(*bp, now.UnixNano()) {
				c.err = refuse(ReasonReplayed, "signature "+quote(c.label)+" by key "+quote(c.keyID)+" was accepted before")
			}
			if c.err == nil && !c.alg.verify(c.key, *bp, c.sig) {
				c.err = refuse(ReasonBadSignature, "signature "+quote(c.label)+" by key "+quote(c.keyID)+" does not verify")
			}
			if c.err == nil {
				valid[n], bases[n] = c, bp
				n++
				continue
			}
			bufPool.Put(bp)
		}
		if failure == nil {
			failure = c.err
		}
	}
	if n == 0 {
		return nil, failure
	}
	if nDigest > 0 { // covered or not: a wrong digest is never let through
		if err := checkDigest(digest, r.Body); err != nil {
			return nil, err
		}
	}
	for i, c := range valid[:n] {
		switch v.replay.check(*bases[i], c.deadline, now.UnixNano()) {
		case replaySeen:
			return nil, refuse(ReasonReplayed, "signature "+quote(c.label)+" by key "+quote(c.keyID)+" was accepted before")
		case replayFull:
			return nil, refuse(ReasonStale, "replay cache full: signature "+quote(c.label)+" is older than the ones it had to forget")
		}
	}

	c := valid[0]
	comps := make([]string, len(c.components))
	for i, comp := range c.components {
		comps[i] = comp.String()
	}
	return &Verified{KeyID: c.keyID, Alg: c.alg.String(), Created: c.created, Components: comps}, nil
}

// equalFold compares an ASCII header name with a lower-case one.
func equalFold(name []byte, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// quote bounds and quotes an attacker-chosen value (a label, a keyid, a
// component name) for Detail.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("%q", s)
}
