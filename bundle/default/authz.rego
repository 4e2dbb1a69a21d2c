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
package warden.authz

# Fail closed: whatever no rule allows is denied.
default allow := false

# The PEP asks only after the mTLS handshake authenticated the peer and
# WARDEN_ALLOWED_PEERS accepted it, so an authenticated peer is enough here.
allow if input.peer.spiffe_id != ""
