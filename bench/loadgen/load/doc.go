// Package load is the core of warden's load generator: it drives an HTTP or
// mTLS target on loopback with fasthttp's HostClient, or a gRPC target with
// unary calls over c gRPC client connections (google.golang.org/grpc, h2c
// or mTLS with ALPN h2), in a closed loop (c workers as fast as they can) or
// an open loop (a fixed total rate, latency measured from each request's
// intended send time), and summarizes the run in an HDR histogram and
// counted, classified errors.
//
// It owns the request loop, the TLS client configuration built from PEM
// files, and the accounting (requests, errors by kind, dropped requests,
// percentiles). It must not send anything to a non-loopback address: the
// URL is checked before anything starts and every dial is checked again
// before connect(2). It must not retry, hide or drop errors: every failed
// request is counted under one kind, and every open-loop request that was
// not sent by the end of the run is counted as dropped.
//
// In gRPC mode an unexpected status is counted by its gRPC code
// (grpc_status_N, as status_N for HTTP), with its first message; gRPC
// itself reports a refused connection or a failed handshake as 14
// UNAVAILABLE. Only the generator's own per-call timeout is a "timeout".
//
// Per request, a worker reuses its own fasthttp.Request and Response and
// records into its own histogram; histograms are merged once at the end, so
// the steady state neither allocates nor shares a lock or a cache line the
// proxy under test would not also pay for. (gRPC calls allocate inside
// google.golang.org/grpc whatever the generator does; the messages and the
// metadata are prepared once per worker.)
package load
