// Command tokengen mints what warden's benchmarks need to exercise JWT
// verification: an ES256 signing key, its public half as a JWKS file
// (WARDEN_JWT_JWKS), and one token, the end-to-end JWT a gateway would
// have issued, which the load generator sends with every request.
//
//	tokengen -out DIR -iss https://issuer.bench.warden.local -aud app -ttl 2h
//
// writes DIR/jwks.json and DIR/token (one line, without "Bearer "). The
// private key is not kept. agent/token/tokentest does the same for tests
// but is for _test.go files only.
package main
