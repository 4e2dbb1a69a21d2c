package token

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/warden-sidecar/warden/internal/cache"
)

// MaxTokenBytes bounds a token: a longer one is refused before any parsing.
const MaxTokenBytes = 8 << 10

// DefaultCacheSize is how many verified tokens are kept when Options.CacheSize is 0.
const DefaultCacheSize = 10000

// Reason is why a token was refused: a stable name for the log, never sent
// to the client.
type Reason string

// The reasons a token is refused.
const (
	ReasonMissing         Reason = "missing"               // none sent while one is required
	ReasonOversized       Reason = "oversized"             // over MaxTokenBytes
	ReasonMalformed       Reason = "malformed"             // not a compact JWS with JSON claims, no kid, a claim of the wrong type, no exp
	ReasonAlgorithm       Reason = "algorithm_not_allowed" // alg not allowed, or not one the key may verify
	ReasonUnknownKID      Reason = "unknown_kid"           // no key by that kid, even after a refresh
	ReasonKeysUnavailable Reason = "keys_unavailable"      // no keys loaded yet
	ReasonBadSignature    Reason = "bad_signature"
	ReasonExpired         Reason = "expired"
	ReasonNotYetValid     Reason = "not_yet_valid" // nbf or iat in the future (beyond the clock skew)
	ReasonIssuer          Reason = "wrong_issuer"
	ReasonAudience        Reason = "wrong_audience"
)

// Error is a refused token. Detail is for the operator's log; it never holds
// the token, and the values it quotes from it are bounded.
type Error struct {
	Reason Reason
	Detail string
}

func (e *Error) Error() string { return "token: " + string(e.Reason) + ": " + e.Detail }

func refuse(r Reason, detail string) *Error { return &Error{Reason: r, Detail: detail} }

// ReasonOf returns the reason of a refusal error, or malformed for any other.
func ReasonOf(err error) Reason {
	var te *Error
	if errors.As(err, &te) {
		return te.Reason
	}
	return ReasonMalformed
}

// Options configure a Verifier.
type Options struct {
	Keys Keys
	// Issuers lists the accepted "iss" values; empty: iss is not checked
	// (JWT-SVIDs, whose issuer is the trust domain of their subject).
	Issuers []string
	// Audiences lists the accepted "aud" values; a token must name one.
	Audiences []string
	// Algorithms are the accepted JWS algorithms; empty: DefaultAlgorithms.
	Algorithms []string
	// ClockSkew is the tolerance on exp, nbf and iat.
	ClockSkew time.Duration
	// CacheSize bounds the verified tokens kept; 0 means DefaultCacheSize,
	// a negative value keeps none. What they hold is bounded too, each
	// counting its token, its claims and its entry: DefaultCacheBytes by
	// default, else 4 KiB per entry (at least 1 MiB).
	CacheSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// JWTSVID makes a token follow the JWT-SVID rules as go-spiffe's
	// svid/jwtsvid (v2.9.0) applies them, on top of the checks above: the
	// "typ" header, when present, is exactly "JWT" or "JOSE"; "sub" is
	// present and a SPIFFE ID; and the algorithm is one of
	// JWTSVIDAlgorithms (EdDSA is not), whatever Algorithms allows besides.
	// A token breaking them is refused as malformed (typ, sub) or
	// algorithm_not_allowed. Set it with SPIFFEKeys (WARDEN_JWT_JWKS=spiffe).
	JWTSVID bool
}

// JWTSVIDAlgorithms are the algorithms a JWT-SVID may be signed with: the
// JWT-SVID specification's list, the one go-spiffe's svid/jwtsvid accepts.
var JWTSVIDAlgorithms = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}

// Verified is a verified token's meaning for the policy. It is shared by
// every request that carries the same token: read-only.
type Verified struct {
	// Claims are all the token's claims with the normalized ones: iss,
	// sub, aud (list), exp, iat, nbf (integers), user, name, roles and
	// scope (lists). This is input.token.
	Claims map[string]any
	// JSON is Claims as JSON (keys sorted), for the decision log.
	JSON []byte
	// Key is a digest of JSON: the decision cache key for Claims.
	Key string
	// Expiry is exp.
	Expiry time.Time
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	keys      Keys
	issuers   []string
	audiences []string
	algs      []jose.SignatureAlgorithm
	skew      time.Duration
	now       func() time.Time
	ownClock  bool                 // Options.Now was set: cached tokens are checked against it too
	cache     *cache.Cache[cached] // nil: no cache
	jwtSVID   bool
}

// New builds a Verifier.
func New(opts Options) (*Verifier, error) {
	if opts.Keys == nil {
		return nil, errors.New("token: no keys")
	}
	if len(opts.Audiences) == 0 {
		return nil, errors.New("token: no audiences: a token meant for any service would be accepted")
	}
	algs := opts.Algorithms
	if len(algs) == 0 {
		algs = DefaultAlgorithms
	}
	if err := CheckAlgorithms(algs); err != nil {
		return nil, err
	}
	if opts.JWTSVID {
		svidAlgs := slices.DeleteFunc(slices.Clone(algs), func(a string) bool { return !slices.Contains(JWTSVIDAlgorithms, a) })
		if len(svidAlgs) == 0 {
			return nil, fmt.Errorf("token: JWT-SVIDs: none of the allowed algorithms (%s) may sign one (%s)",
				strings.Join(algs, ", "), strings.Join(JWTSVIDAlgorithms, ", "))
		}
		algs = svidAlgs
	}
	if opts.ClockSkew < 0 {
		return nil, errors.New("token: negative clock skew")
	}
	v := &Verifier{
		keys:      opts.Keys,
		issuers:   slices.Clone(opts.Issuers),
		audiences: slices.Clone(opts.Audiences),
		skew:      opts.ClockSkew,
		now:       opts.Now,
		jwtSVID:   opts.JWTSVID,
	}
	for _, a := range algs {
		v.algs = append(v.algs, jose.SignatureAlgorithm(a))
	}
	if v.ownClock = v.now != nil; !v.ownClock {
		v.now = time.Now
	}
	v.cache = newCache(opts.CacheSize)
	return v, nil
}

// Verify checks raw (the token without any "Bearer " prefix) and returns
// its claims, or an *Error. A token verified before and not yet expired
// costs a hash and a map lookup, and allocates nothing.
func (v *Verifier) Verify(raw []byte) (*Verified, error) {
	if len(raw) > MaxTokenBytes {
		return nil, refuse(ReasonOversized, fmt.Sprintf("%d bytes, limit %d", len(raw), MaxTokenBytes))
	}
	if len(raw) == 0 {
		return nil, refuse(ReasonMalformed, "empty token")
	}
	gen := v.keys.Generation()
	if v.cache != nil {
		// A token is cached until exp + skew, counted from its verification
		// on the monotonic clock: a step of the wall clock neither extends
		// nor cuts it, and a hit reads no other clock, unless Options.Now
		// gave one of its own.
		if c, ok := v.cache.Get(raw); ok && c.gen == gen && (!v.ownClock || v.now().Before(c.v.Expiry.Add(v.skew))) {
			return c.v, nil
		}
	}
	now := v.now()
	vt, err := v.verify(raw, now)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.Put(raw, cached{vt, gen}, vt.size(), vt.Expiry.Add(v.skew).Sub(now))
	}
	return vt, nil
}

// verify is the full check of a token not in the cache.
func (v *Verifier) verify(raw []byte, now time.Time) (*Verified, error) {
	// Compact serialization only: ParseSigned would also take the JSON
	// serialization and strip whitespace, and a token is one header value.
	if bytes.Count(raw, []byte{'.'}) != 2 {
		return nil, refuse(ReasonMalformed, "not a compact JWS (three dot-separated parts)")
	}
	jws, err := jose.ParseSignedCompact(string(raw), v.algs)
	if err != nil {
		var unexpected *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &unexpected) {
			return nil, refuse(ReasonAlgorithm, fmt.Sprintf("alg %s", quote(string(unexpected.Got))))
		}
		return nil, refuse(ReasonMalformed, "JWS: "+err.Error())
	}
	if len(jws.Signatures) != 1 {
		return nil, refuse(ReasonMalformed, "not exactly one signature")
	}
	hdr := jws.Signatures[0].Header
	if hdr.KeyID == "" {
		return nil, refuse(ReasonMalformed, "no kid in the header")
	}
	// The claims are read before the signature is checked only to find the
	// key (SPIFFE picks the bundle by subject); nothing else trusts them
	// until Verify succeeded on these same bytes.
	if v.jwtSVID {
		if err := checkJWTSVIDType(hdr); err != nil {
			return nil, err
		}
	}
	claims, err := decodeClaims(jws.UnsafePayloadWithoutVerification())
	if err != nil {
		return nil, err
	}
	sub, _ := claims["sub"].(string)
	if v.jwtSVID {
		if err := checkJWTSVIDSubject(claims); err != nil {
			return nil, err
		}
	}
	key, err := v.keys.Lookup(hdr.KeyID, sub)
	if err != nil {
		return nil, err
	}
	if !key.fits(hdr.Algorithm) {
		return nil, refuse(ReasonAlgorithm, fmt.Sprintf("alg %s does not fit key %s", quote(hdr.Algorithm), quote(hdr.KeyID)))
	}
	if _, err := jws.Verify(key.Public); err != nil {
		return nil, refuse(ReasonBadSignature, "signature does not verify with key "+quote(hdr.KeyID))
	}
	n, err := normalize(claims)
	if err != nil {
		return nil, err
	}
	if err := v.validate(n, now); err != nil {
		return nil, err
	}
	js, err := json.Marshal(n.claims)
	if err != nil {
		return nil, refuse(ReasonMalformed, "claims: "+err.Error())
	}
	sum := sha256.Sum256(js)
	return &Verified{Claims: n.claims, JSON: js, Key: string(sum[:]), Expiry: time.Unix(n.exp, 0)}, nil
}

// validate checks the time window, the issuer and the audience.
func (v *Verifier) validate(n normalized, now time.Time) error {
	if !now.Before(time.Unix(n.exp, 0).Add(v.skew)) {
		return refuse(ReasonExpired, fmt.Sprintf("expired at %s", time.Unix(n.exp, 0).UTC().Format(time.RFC3339)))
	}
	late := now.Add(v.skew)
	if n.hasNBF && late.Before(time.Unix(n.nbf, 0)) {
		return refuse(ReasonNotYetValid, fmt.Sprintf("not before %s", time.Unix(n.nbf, 0).UTC().Format(time.RFC3339)))
	}
	if n.hasIAT && late.Before(time.Unix(n.iat, 0)) {
		return refuse(ReasonNotYetValid, fmt.Sprintf("issued in the future, at %s", time.Unix(n.iat, 0).UTC().Format(time.RFC3339)))
	}
	if len(v.issuers) > 0 && !slices.Contains(v.issuers, n.iss) {
		return refuse(ReasonIssuer, "iss "+quote(n.iss)+" not accepted")
	}
	for _, a := range n.aud {
		if slices.Contains(v.audiences, a) {
			return nil
		}
	}
	return refuse(ReasonAudience, fmt.Sprintf("aud names none of the %d accepted audiences", len(v.audiences)))
}

// checkJWTSVIDType applies jwtsvid's header rule: a typ other than "JWT"
// or "JOSE" (of any JSON type, and case-sensitively) refuses the token.
func checkJWTSVIDType(hdr jose.Header) error {
	typ, present := hdr.ExtraHeaders[jose.HeaderType]
	if !present || typ == "JWT" || typ == "JOSE" {
		return nil
	}
	return refuse(ReasonMalformed, "typ "+quote(fmt.Sprint(typ))+" in the header of a JWT-SVID: want none, JWT or JOSE")
}

// checkJWTSVIDSubject applies jwtsvid's subject rule: sub is present and a
// SPIFFE ID. Any Keys then sees a SPIFFE ID, not only SPIFFEKeys.
func checkJWTSVIDSubject(claims map[string]any) error {
	v, present := claims["sub"]
	sub, isStr := v.(string)
	switch {
	case !present:
		return refuse(ReasonMalformed, "no sub: a JWT-SVID names its SPIFFE ID")
	case !isStr:
		return refuse(ReasonMalformed, "sub is not a string")
	case sub == "":
		return refuse(ReasonMalformed, "empty sub: a JWT-SVID names its SPIFFE ID")
	}
	if _, err := spiffeid.FromString(sub); err != nil {
		return refuse(ReasonMalformed, "sub "+quote(sub)+" of a JWT-SVID is not a SPIFFE ID: "+err.Error())
	}
	return nil
}
