// Command loadgen is warden's load generator: HTTP/1.1 over mTLS with a
// client certificate, closed loop (-c workers as fast as they can) or open
// loop (-rate, latency from intended send times), on loopback only. With
// -grpc it makes unary gRPC calls instead (h2c or mTLS with ALPN h2), in
// the same loops and with the same report.
//
//	go run ./bench/loadgen -url https://127.0.0.1:8443/ \
//	    -cert client.pem -key client-key.pem -cacert ca.pem -c 32 -d 4s -json
//
// The core is the importable package bench/loadgen/load.
//
// main only parses flags and prints; the measuring is package load's, so that
// it can be tested and reused. It must not point at anything but loopback.
package main
