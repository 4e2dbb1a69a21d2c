# Environment segregation: which environment and trust zone may call which,
# as data (data.warden.segregation, warden/segregation/data.json), so that an
# operator changes the matrix by shipping data, not code. docs/segregation.md
# explains the convention and the default matrix.
#
# A workload's environment and zone come from its SPIFFE ID, whose path is
# read as key/value pairs: spiffe://<td>/env/<env>/zone/<zone>/... by default
# (the key names are data: convention.env, convention.zone). An ID without
# them, such as a Kubernetes-style spiffe://<td>/ns/<ns>/sa/<sa>, gets the
# labels of its namespace (convention.namespace) from namespaces[<ns>]; an
# explicit segment wins over the namespace's label.
#
# Which matrix governs a call:
#   internal: the caller is in warden's own trust domain;
#   inbound:  the caller is in another trust domain (a federated partner);
#   outbound: what warden's own workload may call (outbound_violations);
#             warden's outbound listener does not consult the policy today,
#             so only policies that decide outbound calls use it.
# A matrix maps a caller's label to the labels it may call, per dimension
# ("env", "zone"); a dimension the matrix lacks is not checked.
#
# A label that is not a row of the matrix (absent from the ID, or a value
# the matrix does not list) is unknown: with unknown "allow" (the default)
# that dimension does not constrain the call, with "deny" it denies. An ID
# naming a key twice (env/dev/env/prod) is ambiguous and always denied.
package warden.segregation

# deny is true when the matrix forbids this request's peer to call warden.
deny if count(violations) > 0

# violations says why, one message per broken rule (for warden policy eval;
# the decision's reason is "segregation").
violations := check(input.peer.spiffe_id, input.destination.spiffe_id, inbound_matrix)

inbound_matrix := data.warden.segregation.internal if {
	trust_domain(input.peer.spiffe_id) == trust_domain(input.destination.spiffe_id)
} else := data.warden.segregation.inbound

# outbound_violations is what the outbound matrix says of warden's workload
# (own, its SPIFFE ID) calling dest; empty when allowed.
outbound_violations(own, dest) := check(own, dest, data.warden.segregation.outbound)

# check is the set of reasons why caller may not call callee under matrix m.
check(caller, callee, m) := {msg |
	some kind in ["env", "zone"]
	m[kind]
	some msg in dimension(label(caller, kind), label(callee, kind), m[kind], kind)
}

dimension(a, b, rows, kind) := {sprintf("%s of %s is ambiguous", [kind, who]) |
	some who, v in {"caller": a, "callee": b}
	v == "?"
} if {
	"?" in {a, b}
} else := {sprintf("%s %s may not call %s", [kind, a, b])} if {
	rows[a]
	rows[b]
	not b in rows[a]
} else := {sprintf("%s of the %s is unknown", [kind, who]) |
	some who, v in {"caller": a, "callee": b}
	not rows[v]
} if {
	data.warden.segregation.unknown == "deny"
} else := set()

# label is the ID's value for kind ("env", "zone"): its own segment, else its
# namespace's label; "" when unknown, "?" when the ID is ambiguous (no SPIFFE
# ID path segment can be "?").
label(id, kind) := "?" if {
	count(values(id, data.warden.segregation.convention[kind])) > 1
} else := v if {
	some v in values(id, data.warden.segregation.convention[kind])
} else := "?" if {
	count(values(id, data.warden.segregation.convention.namespace)) > 1
} else := v if {
	some ns in values(id, data.warden.segregation.convention.namespace)
	v := data.warden.segregation.namespaces[ns][kind]
} else := ""

# values are the values of key in id's path read as key/value pairs.
values(id, key) := {segs[i + 1] |
	some i, k in segs
	i % 2 == 0
	k == key
	i + 1 < count(segs)
} if {
	segs := path_segments(id)
}

path_segments(id) := array.slice(parts, 1, count(parts)) if {
	startswith(id, "spiffe://")
	parts := split(substring(id, count("spiffe://"), -1), "/")
}

trust_domain(id) := split(substring(id, count("spiffe://"), -1), "/")[0] if startswith(id, "spiffe://")
