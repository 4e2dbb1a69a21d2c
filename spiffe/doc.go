// Package spiffe owns warden's workload identity: where X.509-SVIDs and trust
// bundles come from (the embedded development CA today, the SPIFFE Workload
// API later), the TLS configurations built on them, and the peer authorizer
// that WARDEN_ALLOWED_PEERS describes.
//
// It builds on go-spiffe v2 and never parses SANs or verifies chains itself.
// It must not import agent, read the environment or log: callers pass values
// in and get errors back, prefixed "spiffe: ".
package spiffe
