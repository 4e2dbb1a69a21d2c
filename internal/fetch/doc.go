// Package fetch gets documents over HTTP(S) for warden: policy bundles, JWKS,
// signature keys. It owns the one hardened client they share: timeouts for
// each stage of a fetch and for the whole of it, a size limit, conditional
// requests with ETag, redirect rules (a few hops at most, never from https
// to http), the proxy, the trust roots and an optional client certificate.
//
// A URL may carry credentials in its userinfo (sent as basic auth) and, when
// signed, in its query: fetch uses them and never shows them. Its errors
// carry the URL as internal/redact shows it (scheme://host/path) and nothing
// of a redirect's target.
//
// It must not read warden's configuration or the environment (but for the
// proxy convention net/http implements, see WithProxy), log, retry or poll:
// its callers decide when to fetch and what a failure means. Like every
// package under internal/, it imports nothing of warden's but other
// internal packages.
package fetch
