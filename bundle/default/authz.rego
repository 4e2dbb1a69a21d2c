# warden's default policy: what a pod gets when WARDEN_POLICY_BUNDLE is empty.
#
# The decision is data.warden.authz.allow (WARDEN_POLICY_DECISION). It may be a
# boolean, or an object {allow, status, reason, headers, cache_ttl_seconds}.
# The input is documented on bundle.Input: method, path, raw_path, query,
# headers, transaction, sender, peer {spiffe_id, trust_domain},
# destination {spiffe_id}, with a verified JWT token, with an OpenAPI spec
# operation {id, path_template, path_params}, and with WARDEN_POLICY_BODY=json
# parsed_body.
#
# This is the place for the protections every pod should have by default:
# add them as further conditions or rules below, each with its test in
# bundle/engine_test.go.
#
# Environment segregation (segregation.rego, its matrix in
# warden/segregation/data.json) applies to every peer: a call the matrix
# forbids is denied with the reason "segregation".
package warden.authz

import data.warden.segregation

# Fail closed: whatever no rule allows is denied.
default allow := false

# The PEP asks only after the mTLS handshake authenticated the peer and
# WARDEN_ALLOWED_PEERS accepted it, so an authenticated peer is enough here,
# unless the segregation matrix forbids it to call this workload.
allow if {
	input.peer.spiffe_id != ""
	not segregation.deny
}

allow := {"allow": false, "reason": "segregation"} if {
	input.peer.spiffe_id != ""
	segregation.deny
}
