// Package authz is the Policy Enforcement Point: for each request that passed
// the peer check it verifies the request's token when tokens are configured
// (agent/token; a missing or invalid one is refused with 401 before policy
// runs), builds the policy input, asks the decision engine (bundle.Engine),
// writes the decision log line and turns the decision into a proxy.Verdict.
// It fails closed: an engine error or an undefined decision denies. It holds
// no policy of its own, and never puts a credential in the input or a log.
package authz
