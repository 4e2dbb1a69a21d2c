// Package outbound is warden's egress data path: a plaintext fasthttp
// listener on loopback where the app sends its requests, and one pooled
// mTLS fasthttp client per configured route. A request goes to the route
// its Host names, over TLS with the pod's current SVID, and only to a server
// presenting the SPIFFE ID of that route; a Host without a route is refused,
// so the listener is never an open proxy.
//
// The listener also speaks HTTP/2 with prior knowledge (h2c, what gRPC
// clients speak in plaintext): h2.go sorts connections by their first
// bytes, serves h2c with net/http, and reaches routes marked h2 over mTLS
// with ALPN h2 through a net/http transport per route.
//
// It owns the egress proxy semantics (hop-by-hop headers, X-Request-Id,
// timeouts, the sanitized JSON errors); identity comes in as go-spiffe
// sources and the TLS configuration from package spiffe. Like package proxy,
// it must not keep references to a fasthttp.RequestCtx after the handler
// returns.
package outbound
