// Command upstream is the app of warden's benchmarks: a fasthttp server on
// loopback answering every request with a fixed body. With -mtls it
// terminates mTLS itself with an SVID from warden's development CA: the
// "no proxy hop" case every mTLS sidecar is measured against. With -grpc it
// serves gRPC in plaintext HTTP/2 (h2c) instead: internal/grpctest's Echo
// service, whose Unary answers with the request message (and, as in the
// end-to-end tests, three small header metadata entries).
//
// It must stay that small: it is the constant every case shares, so the
// cases differ only in what sits in front of it.
package main
