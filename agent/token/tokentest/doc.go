// Package tokentest mints signing keys, JWKS documents and JWTs for tests of
// token verification: what a gateway or STS would issue, signed with
// go-jose. It is for tests only: nothing outside _test.go files may import it
// (TestLayout checks).
package tokentest
