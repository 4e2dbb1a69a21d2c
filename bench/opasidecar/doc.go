// Command opasidecar is the "OPA sidecar" peer of warden's benchmarks: the
// common pattern where a proxy asks a separate `opa run --server` process
// over loopback HTTP for every request, instead of embedding the engine.
//
// It is the least such a proxy can be, built from the same parts as warden
// so that the comparison isolates the remote decision: inbound mTLS with
// warden's own TLS configuration and a dev-CA SVID (spiffe.ServerTLSConfig),
// a fasthttp.Server, one POST of the policy input to OPA's Data API
// (`/v1/data/warden/authz/allow`, keep-alive) per request, then
// fasthttp.HostClient.Do to the app. A decision other than true is a 403;
// OPA unreachable or an unexpected answer is a 503 (fail closed). No
// decision cache, no JWT verification, no access log: what Envoy's ext_authz with opa-envoy-plugin
// or nginx auth_request to OPA would do per request, minus their own costs.
package main
