// Package proxy is warden's inbound data path: a fasthttp server on the mTLS
// listener and, to the app on loopback, an app connection pinned to each
// inbound HTTP/1.1 connection (affinity.go) with a pooled fasthttp client
// as the overflow and for HTTP/2. The deadlines fasthttp sets per request
// are armed lazily, coalesced within a slack (deadline.go). It owns proxy
// semantics (hop-by-hop headers, X-Forwarded-*, X-Request-Id, the client
// identity header), limits, timeouts and the sanitized error responses.
// An allowed upgrade (WebSocket) leaves the pool: upgrade.go sends it on a
// connection of its own and tunnels a 101, owning the tunnels until they
// end or the drain closes them.
//
// It holds no identity or policy logic of its own: who may connect is a
// function it is given (evaluated once per connection), and what a request
// may do is a Guard (evaluated per request). It must not keep references to
// a fasthttp.RequestCtx after the handler returns. It imports nothing of
// warden's but internal/ (TestLayout checks): the rate limiter is its
// Limiter interface, whose per-connection state is a word the proxy keeps
// and never reads, and a peer's ID comes from go-spiffe's x509svid, so the
// data path does not pull in the eBPF loader, JOSE or gRPC. Metrics are its
// Observer, told what each request came to and how each handshake ended,
// so it names no metrics library either. Its refusals are security events
// (internal/secevent: peer_denied, input_refused, and, sampled,
// rate_limited and tls_handshake_failed) on Options.Events. It tracks open connections by
// source only so that CloseSource can end a blocked source's (sources.go):
// whom to block is decided elsewhere.
package proxy
