package token

import (
	"testing"
	"time"
)

// BenchmarkVerifyCached is the cost of a token seen before: a hash of the
// token, one map lookup and a compare.
func BenchmarkVerifyCached(b *testing.B) {
	k := key(b, "ES256")
	v := newVerifier(b, keysOf(k))
	raw := []byte(k.Mint(b, keycloakClaims()))
	if _, err := v.Verify(raw); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyFresh is the cost of a token not seen before: parse,
// signature check, claims, normalization and digest (the cache is off, so
// every iteration verifies in full).
func BenchmarkVerifyFresh(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			k := key(b, alg)
			v := newVerifier(b, keysOf(k), func(o *Options) { o.CacheSize = -1 })
			raw := []byte(k.Mint(b, keycloakClaims()))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// keycloakClaims are a typical access token's, about 700 bytes signed.
func keycloakClaims() map[string]any {
	c := claims("f1c2a3e4-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
		set("preferred_username", "alice"), set("name", "Alice Example"), set("email", "alice@example.test"),
		set("azp", "gateway"), set("jti", "3f2c1b0a-9e8d-4c7b-a6f5-e4d3c2b1a098"), set("typ", "Bearer"),
		set("realm_access", map[string]any{"roles": []string{"teller", "offline_access", "uma_authorization"}}),
		set("scope", "openid profile email accounts:write"), set("sid", "0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e"))
	c["exp"] = time.Now().Add(24 * time.Hour).Unix()
	return c
}
