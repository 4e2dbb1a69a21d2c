package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Key is one verification key: a public key, or (only from a JWKS loaded
// with JWKSOptions.Secrets) a shared secret.
type Key struct {
	Public crypto.PublicKey // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	// Alg is the algorithm the key is restricted to (a JWK's "alg"), or ""
	// when any algorithm fitting its type may be used.
	Alg string
	// Secret is an "oct" JWK's key, for HMAC outside JWTs (HTTP message
	// signatures); Public is nil then. Tokens never verify with it: fits
	// refuses every algorithm for a key without Public, and HMAC is not an
	// allowed token algorithm. Read-only: the key set shares it.
	Secret []byte
}

// Keys is where verification keys come from: a JWKS (file or URL) or the
// SPIFFE Workload API's JWT bundles.
type Keys interface {
	// Lookup returns the key a token's header names by kid. sub is the
	// token's subject claim, not yet verified: SPIFFE picks the trust
	// domain's bundle by it, a JWKS ignores it. Lookup may block briefly to
	// refresh the keys when kid is unknown. Its errors are *Error with the
	// reason unknown_kid, keys_unavailable or malformed.
	Lookup(kid, sub string) (Key, error)
	// Generation changes whenever the key set changes, so that tokens
	// verified with keys since removed are verified again.
	Generation() uint64
}

// DefaultAlgorithms are the JWS algorithms accepted when none are configured.
var DefaultAlgorithms = []string{"RS256", "ES256", "EdDSA", "PS256"}

// SupportedAlgorithms are the asymmetric JWS algorithms that may be allowed.
// "none" and the HMAC algorithms never are: the keys are public, so anyone
// could "sign" with them.
var SupportedAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// CheckAlgorithms returns an error naming the first algorithm of names that
// may not be allowed.
func CheckAlgorithms(names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("token: no algorithms allowed")
	}
	for _, n := range names {
		switch {
		case strings.EqualFold(n, "none"):
			return fmt.Errorf("token: algorithm %q is refused: unsigned tokens prove nothing", n)
		case strings.HasPrefix(strings.ToUpper(n), "HS"):
			return fmt.Errorf("token: algorithm %q is refused: an HMAC key would be the public key, which anyone has", n)
		}
		found := false
		for _, s := range SupportedAlgorithms {
			found = found || n == s
		}
		if !found {
			return fmt.Errorf("token: algorithm %q is not supported (supported: %s)", n, strings.Join(SupportedAlgorithms, ", "))
		}
	}
	return nil
}

// fits reports whether a token signed with alg may be verified with k:
// the key's own alg restriction, and the key type and curve the algorithm
// needs. go-jose checks the type too; checking first gives the operator
// algorithm_not_allowed rather than bad_signature for a confusion attempt.
func (k Key) fits(alg string) bool {
	if k.Alg != "" && k.Alg != alg {
		return false
	}
	switch pub := k.Public.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return pub.Curve == elliptic.P256()
		case "ES384":
			return pub.Curve == elliptic.P384()
		case "ES512":
			return pub.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == string(jose.EdDSA)
	}
	return false
}

// usablePublicKey accepts the key types the supported algorithms verify
// with, and RSA keys of at least 2048 bits.
func usablePublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits, want at least 2048", k.N.BitLen())
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() && k.Curve != elliptic.P521() {
			return fmt.Errorf("ECDSA key on an unsupported curve")
		}
		return nil
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("unsupported key type %T", pub)
}

// JWTBundles is what SPIFFEKeys needs from the Workload API: go-spiffe's
// JWT bundles by trust domain, and a counter of their updates.
type JWTBundles interface {
	jwtbundle.Source
	Generation() uint64
}

// SPIFFEKeys verifies JWT-SVIDs: the key is looked up by kid in the JWT
// bundle of the trust domain of the token's subject, which must be a SPIFFE
// ID. A key of one trust domain never verifies a token claiming another.
func SPIFFEKeys(b JWTBundles) Keys { return spiffeKeys{b} }

type spiffeKeys struct{ b JWTBundles }

func (s spiffeKeys) Lookup(kid, sub string) (Key, error) {
	id, err := spiffeid.FromString(sub)
	if err != nil {
		return Key{}, refuse(ReasonMalformed, "sub is not a SPIFFE ID")
	}
	b, err := s.b.GetJWTBundleForTrustDomain(id.TrustDomain())
	if err != nil {
		return Key{}, refuse(ReasonUnknownKID, "no JWT bundle for trust domain "+quote(id.TrustDomain().Name()))
	}
	pub, ok := b.FindJWTAuthority(kid)
	if !ok {
		return Key{}, refuse(ReasonUnknownKID, "kid "+quote(kid)+" not in the JWT bundle of "+quote(id.TrustDomain().Name()))
	}
	return Key{Public: pub}, nil
}

func (s spiffeKeys) Generation() uint64 { return s.b.Generation() }

// StaticKeys is a fixed key set by kid, for tests and embedding.
type StaticKeys map[string]Key

// Lookup implements Keys.
func (s StaticKeys) Lookup(kid, _ string) (Key, error) {
	if k, ok := s[kid]; ok {
		return k, nil
	}
	return Key{}, refuse(ReasonUnknownKID, "kid "+quote(kid)+" not in the key set")
}

// Generation implements Keys; a static set never changes.
func (StaticKeys) Generation() uint64 { return 0 }

// generation is a Keys generation counter.
type generation struct{ n atomic.Uint64 }

func (g *generation) Generation() uint64 { return g.n.Load() }
func (g *generation) bump()              { g.n.Add(1) }

// quote bounds and quotes a value from a token (kid, trust domain) for an
// error message: it is attacker-chosen.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("%q", s)
}
