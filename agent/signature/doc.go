// Package signature verifies and creates HTTP Message Signatures (RFC 9421)
// over requests, with the Content-Digest field (RFC 9530) binding the body.
//
// It owns: parsing Signature-Input and Signature (structured fields, RFC
// 8941, read with github.com/dunglas/httpsfv), choosing the signature to
// check among several labels, the signature base (RFC 9421 section 2.5) built
// from the raw request as the protocol path received it, the algorithms
// (ed25519, ecdsa-p256-sha256, ecdsa-p384-sha384, rsa-pss-sha512,
// rsa-v1_5-sha256 for keys pinned to it, hmac-sha256 for shared secrets),
// the application's requirements (components that must be covered,
// created within a maximum age, expires), the Content-Digest check, and a
// bounded replay cache. Signer produces the Signature-Input, Signature and
// Content-Digest fields of an outbound request.
//
// Keys come from agent/token's Keys (a JWKS file or URL, refreshed like the
// JWT keys; JWKSOptions.Secrets to keep shared secrets): the package loads
// no keys itself. A JWK's type and "alg" decide the one RFC 9421 algorithm
// its key verifies; a signature's alg parameter must name that algorithm.
//
// Which signature counts: labels whose keyid names no known key are
// ignored, as are labels by known keys that do not cover the required
// components (another signer's narrower signature). The others, at most two
// (a third is refused as malformed: each costs a public-key operation), are
// all verified; the request is accepted when at least one is valid, and
// every valid one goes through the replay cache, so that a replay cannot
// reorder labels to present a base not yet remembered. When none is valid
// the first one's refusal is the answer. Signature-Input and Signature
// must each come in one field line: repeated lines are refused
// (duplicate_header), as are repeated Content-Digest lines.
//
// Required components: derived ones (@method, @target-uri, ...) always;
// content-digest when the request has a body (and the digest must match
// it); any other field when the request carries it, since an absent field
// cannot be signed and a field added after signing must not go unsigned.
//
// The replay cache (replay.go) remembers every accepted signature base
// until its signature would be stale anyway; a base seen again is refused
// (replayed). It is keyed on the base, not on the signature's bytes: ECDSA
// signatures are malleable, (r, s) and (r, n-s) both verify.
//
// The package must not read the environment, log, or answer the client:
// refusals are *Error values whose Reason (a fixed set, a metrics label)
// and Detail (for the log, never a signature, secret or header value) the
// pipeline reports, while the client only sees 401 invalid_signature. It
// never keeps the request's bytes after Verify or Sign returns.
package signature
