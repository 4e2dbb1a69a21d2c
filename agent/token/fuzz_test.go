package token

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/warden-sidecar/warden/agent/token/tokentest"
)

// FuzzVerify feeds arbitrary bytes to the entry point every request token
// goes through (size check, JWS parsing, header, claims decoding and
// normalization, validation): it must never panic, and whatever it accepts
// must carry the claims the policy relies on.
func FuzzVerify(f *testing.F) {
	k := tokentest.NewKey(f, "ES256", "fuzz")
	v := newVerifier(f, keysOf(k), func(o *Options) { o.CacheSize = 64 })
	svid := newVerifier(f, keysOf(k), func(o *Options) { o.CacheSize, o.Issuers, o.JWTSVID = 64, nil, true })
	valid := k.Mint(f, claims("alice", set("roles", []string{"a"}), set("scope", "x y")))
	parts := strings.Split(valid, ".")
	for _, seed := range []string{
		valid,
		tokentest.Unsigned(f, "fuzz", claims("alice")),
		parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"exp":1e999,"aud":[null],"sub":"alice"}`)) + "." + parts[2],
		parts[0] + ".." + parts[2],
		k.MintTyp(f, "JOSE", claims("spiffe://warden.test/a")),
		k.MintTyp(f, 1, claims("spiffe://warden.test/a")),
		"eyJhbGciOiJFUzI1NiJ9.e30.",
		"...",
		"",
		`{"protected":"x","payload":"y","signature":"z"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if vt, err := svid.Verify(raw); err == nil {
			if _, err := spiffeid.FromString(vt.Claims["sub"].(string)); err != nil {
				t.Fatalf("accepted a JWT-SVID whose sub is no SPIFFE ID: %v", vt.Claims)
			}
		} else if vt != nil || ReasonOf(err) == "" {
			t.Fatalf("JWT-SVID refusal %v with claims %v", err, vt)
		}
		vt, err := v.Verify(raw)
		if err != nil {
			if vt != nil {
				t.Fatal("a refusal returned claims")
			}
			if ReasonOf(err) == "" {
				t.Fatalf("refusal without a reason: %v", err)
			}
			return
		}
		if _, ok := vt.Claims["exp"].(int64); !ok || vt.Expiry.Before(time.Now().Add(-time.Minute)) {
			t.Fatalf("accepted a token without a valid exp: %v", vt.Claims)
		}
		if _, ok := vt.Claims["aud"].([]any); !ok || len(vt.Key) != 32 {
			t.Fatalf("accepted claims not normalized: %v", vt.Claims)
		}
	})
}

// FuzzParseJWKS: a JWKS comes from a server warden does not control.
func FuzzParseJWKS(f *testing.F) {
	f.Add(tokentest.JWKS(f, tokentest.NewKey(f, "ES256", "a"), tokentest.NewKey(f, "EdDSA", "b")))
	f.Add([]byte(`{"keys":[{"kty":"oct","kid":"x","k":"AAAA"},{"kty":"EC","crv":"P-256","x":"","y":""}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		keys, _, err := ParseJWKS(doc)
		if err == nil && len(keys) == 0 {
			t.Fatal("no error and no keys")
		}
		for kid, k := range keys {
			if kid == "" || usablePublicKey(k.Public) != nil {
				t.Fatalf("unusable key %q accepted", kid)
			}
		}
	})
}
