# Unit tests of the segregation library in bundle/default (opa test style):
# run by TestSegregationRego, or with the OPA CLI:
#   opa test bundle/default bundle/testdata/segregation
package warden.segregation_test

import data.warden.authz
import data.warden.segregation

req(peer, own) := {"peer": {"spiffe_id": peer}, "destination": {"spiffe_id": own}}

prod_internal := "spiffe://corp.example/env/prod/zone/internal/sa/api"

test_labels_from_the_default_convention if {
	segregation.label("spiffe://corp.example/env/dev/zone/public/sa/x", "env") == "dev"
	segregation.label("spiffe://corp.example/env/dev/zone/public/sa/x", "zone") == "public"
}

test_keys_are_read_as_pairs_not_anywhere_in_the_path if {
	# "env" here is a namespace's name, not the env key.
	segregation.label("spiffe://corp.example/ns/env/sa/prod", "env") == ""
}

test_a_key_given_twice_is_ambiguous if {
	segregation.label("spiffe://corp.example/env/dev/env/prod", "env") == "?"
}

test_a_non_spiffe_id_has_no_label if {
	segregation.label("https://corp.example/env/prod", "env") == ""
}

test_namespace_labels_come_from_data if {
	ns := {"payments-prod": {"env": "prod", "zone": "internal"}}
	segregation.label("spiffe://corp.example/ns/payments-prod/sa/api", "env") == "prod" with data.warden.segregation.namespaces as ns
	segregation.label("spiffe://corp.example/ns/payments-prod/sa/api", "zone") == "internal" with data.warden.segregation.namespaces as ns
}

test_an_explicit_segment_wins_over_the_namespace if {
	ns := {"payments": {"env": "prod"}}
	segregation.label("spiffe://corp.example/ns/payments/env/dev", "env") == "dev" with data.warden.segregation.namespaces as ns
}

test_the_convention_is_data if {
	segregation.label("spiffe://corp.example/stage/prod/sa/api", "env") == "prod" with data.warden.segregation.convention.env as "stage"
}

test_dev_and_test_may_not_call_prod if {
	segregation.deny with input as req("spiffe://corp.example/env/dev/zone/internal/sa/x", prod_internal)
	segregation.deny with input as req("spiffe://corp.example/env/test/zone/internal/sa/x", prod_internal)
	segregation.violations == {"env dev may not call prod"} with input as req("spiffe://corp.example/env/dev/zone/internal/sa/x", prod_internal)
}

test_public_may_not_call_internal if {
	segregation.violations == {"zone public may not call internal"} with input as req("spiffe://corp.example/env/prod/zone/public/sa/x", prod_internal)
}

test_prod_internal_may_call_prod_internal if {
	not segregation.deny with input as req("spiffe://corp.example/env/prod/zone/internal/sa/x", prod_internal)
}

test_another_trust_domain_uses_the_inbound_matrix if {
	# internal -> internal is allowed within the trust domain, not from a partner's.
	segregation.violations == {"zone internal may not call internal"} with input as req("spiffe://partner.example/env/prod/zone/internal/sa/x", prod_internal)
	not segregation.deny with input as req("spiffe://partner.example/env/prod/zone/partner/sa/x", "spiffe://corp.example/env/prod/zone/partner/sa/api")
}

test_unknown_labels_pass_by_default if {
	not segregation.deny with input as req("spiffe://corp.example/ns/default/sa/x", prod_internal)
	not segregation.deny with input as req("spiffe://corp.example/env/qa/zone/internal/sa/x", prod_internal)
	not segregation.deny with input as req("spiffe://corp.example/ns/default/sa/x", "spiffe://corp.example/ns/default/sa/app")
}

test_unknown_labels_deny_when_asked if {
	segregation.violations == {"env of the caller is unknown", "zone of the caller is unknown"} with input as req("spiffe://corp.example/ns/default/sa/x", prod_internal)
		with data.warden.segregation.unknown as "deny"
}

test_an_ambiguous_id_is_denied_even_when_unknown_passes if {
	segregation.violations == {"env of caller is ambiguous"} with input as req("spiffe://corp.example/env/prod/env/dev/zone/internal", prod_internal)
}

test_a_dimension_the_matrix_lacks_is_not_checked if {
	not segregation.deny with input as req("spiffe://corp.example/env/prod/zone/public/sa/x", prod_internal)
		with data.warden.segregation.internal.zone as null
}

test_outbound_matrix if {
	segregation.outbound_violations(prod_internal, "spiffe://corp.example/env/dev/zone/internal/sa/y") == {"env prod may not call dev"}
	segregation.outbound_violations(prod_internal, "spiffe://partner.example/env/prod/zone/partner/sa/y") == set()
}

test_the_default_policy_denies_with_reason_segregation if {
	authz.allow == {"allow": false, "reason": "segregation"} with input as req("spiffe://corp.example/env/dev/zone/internal/sa/x", prod_internal)
	authz.allow == true with input as req("spiffe://corp.example/env/prod/zone/internal/sa/x", prod_internal)
}
