// Package token verifies the end-to-end trust token (a JWT the gateway or
// STS issued, or a JWT-SVID) that a request carries, and turns its claims
// into what the policy sees as input.token.
//
// It owns: where verification keys come from (a JWKS file or URL, refreshed
// on a timer and when a token names an unknown kid; or the SPIFFE Workload
// API's JWT bundles, through the Keys interface), the checks a token must
// pass (size, algorithm, key, signature, exp/nbf/iat with a clock skew,
// issuer, audience; for JWT-SVIDs also go-spiffe's typ, subject and
// algorithm rules), the normalized claims and their digest (the decision
// cache key), and a cache of verified tokens (an internal/cache.Cache
// bounded in entries and bytes) so that a repeated token costs one map
// lookup.
//
// The same JWKS loading serves agent/signature's keys, which may include
// shared secrets ("oct" keys) for hmac-sha256: a JWKS keeps them only when
// asked (JWKSOptions.Secrets), and no token verifies with one.
//
// Signatures are checked by go-jose, never by hand. The package must not
// read the environment, log, or import agent: the agent passes values in and
// gets typed errors (*Error, with a stable Reason) and callbacks back. It
// never keeps or returns a raw token except as the verification cache's key.
package token
