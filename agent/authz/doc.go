// Package authz is the Policy Enforcement Point: for each request that passed
// the peer check it answers decoys first (WARDEN_HONEYPOT_PATHS: the 404 of
// an unknown route, honeypot_hit, the source handed to a Blocker:
// defense.go), verifies the request's token when tokens are configured
// (agent/token; a missing or invalid one is refused with 401 before policy
// runs), builds the policy input, asks the decision engine (bundle.Engine),
// writes the decision log line (OPA's decision log schema, with warden's
// reasons and sampling: decisionlog.go) and turns the decision into a
// pep.Verdict, handing the source to the Blocker when the decision asks
// (block_for_seconds, cached decisions included); each refusal is one
// security event (internal/secevent: token_invalid, signature_invalid,
// input_refused, policy_denied, honeypot_hit) on the Log it is given. It
// also reads a decision log line back into the input the
// policy saw, to replay the decision offline (replay.go, warden policy eval).
// It fails closed: an engine error or an undefined decision denies. It holds
// no policy of its own, and never puts a credential in the input or a log.
package authz
