package tokentest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Key is a signing key with its kid and algorithm.
type Key struct {
	KID     string
	Alg     string
	Private crypto.Signer
}

// NewKey generates a key for alg (RS*, PS*: RSA 2048; ES256/384/512: the
// matching curve; EdDSA: Ed25519).
func NewKey(tb testing.TB, alg, kid string) *Key {
	tb.Helper()
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		tb.Fatalf("tokentest: no key type for %s", alg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return &Key{KID: kid, Alg: alg, Private: priv}
}

// Public is the key's public JWK, with kid, alg and use "sig".
func (k *Key) Public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Private.Public(), KeyID: k.KID, Algorithm: k.Alg, Use: "sig"}
}

// Mint signs claims with the key (header: alg, kid, typ JWT).
func (k *Key) Mint(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return k.MintAs(tb, k.Alg, k.KID, claims)
}

// MintAs signs claims with the key but names alg and kid in the header as
// given: a header that lies about its kid, or a key used with an algorithm
// it is not for (go-jose refuses the impossible combinations).
func (k *Key) MintAs(tb testing.TB, alg, kid string, claims map[string]any) string {
	tb.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: k.Private}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return sign(tb, s, claims)
}

// MintTyp signs claims with the key with typ as the header's "typ": nil
// leaves typ out, any other value (a string of any case, a number) is
// written as it is.
func (k *Key) MintTyp(tb testing.TB, typ any, claims map[string]any) string {
	tb.Helper()
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), k.KID)
	if typ != nil {
		opts = opts.WithHeader(jose.HeaderType, typ)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Alg), Key: k.Private}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return sign(tb, s, claims)
}

// MintHMAC signs claims with HS256 and secret (an attacker using a public
// key as the shared secret) under kid.
func MintHMAC(tb testing.TB, secret []byte, kid string, claims map[string]any) string {
	tb.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return sign(tb, s, claims)
}

// Unsigned is a token with alg "none" and an empty signature.
func Unsigned(tb testing.TB, kid string, claims map[string]any) string {
	tb.Helper()
	hdr, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": kid})
	body, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	return b64(hdr) + "." + b64(body) + "."
}

func sign(tb testing.TB, s jose.Signer, claims map[string]any) string {
	body, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	obj, err := s.Sign(body)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// JWKS is the JSON Web Key Set of the keys' public halves.
func JWKS(tb testing.TB, keys ...*Key) []byte {
	tb.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.Public())
	}
	b, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Claims are the usual claims of a token for sub from iss to aud, issued
// now and valid for ttl. Callers add or override what they test.
func Claims(iss, sub, aud string, ttl time.Duration) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": iss, "sub": sub, "aud": aud,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(),
	}
}
