// Package spiffetest holds test doubles for warden's identity boundary: an
// in-process SPIFFE Workload API server (the gRPC service a SPIRE agent
// serves, from go-spiffe's public proto package: X.509-SVIDs and bundles,
// and JWT bundles) and a small CA that mints X.509-SVIDs with any validity
// window, so tests can drive rotation, bundle and federation updates, agent
// loss and expiry deterministically.
//
// It is for tests only: nothing outside _test.go files may import it.
package spiffetest
