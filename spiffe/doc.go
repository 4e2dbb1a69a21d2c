// Package spiffe owns warden's workload identity: where X.509-SVIDs and trust
// bundles come from (the SPIFFE Workload API through go-spiffe's
// X509Source, or the embedded development CA), the Workload API's JWT
// bundles that JWT-SVIDs are verified with, when an SVID counts as near
// expiry, the TLS configurations built on them (which never present an
// expired SVID), and the peer authorizer that WARDEN_ALLOWED_PEERS describes.
//
// It builds on go-spiffe v2 and never parses SANs or verifies chains itself.
// It must not import agent, read the environment or log: callers pass values
// in (and callbacks for events such as a lost Workload API) and get errors
// back, prefixed "spiffe: ". Its test doubles live in spiffe/spiffetest.
package spiffe
