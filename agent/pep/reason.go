package pep

// Reasons warden gives for a denial, in the decision log's warden.reason
// and in the security events' reason, beside the policy's own (a decision
// object's "reason"). One vocabulary for both, so that one query finds
// every refusal of a kind. Their values are fixed: they may label metrics.
const (
	// ReasonPeerNotAllowed: the client's SPIFFE ID is not in
	// WARDEN_ALLOWED_PEERS (event peer_refused).
	ReasonPeerNotAllowed = "peer_not_allowed"
	// ReasonDefaultDeny: the policy's decision was undefined, or false
	// without a reason.
	ReasonDefaultDeny = "default_deny"
	// ReasonPolicyNotReady: no bundle is active yet.
	ReasonPolicyNotReady = "policy_not_ready"
	// ReasonPolicyError: the evaluation failed or its result is malformed.
	ReasonPolicyError = "policy_error"
	// ReasonPolicyTimeout: the evaluation ran past
	// WARDEN_POLICY_EVAL_TIMEOUT (event policy_eval_timeout).
	ReasonPolicyTimeout = "policy_timeout"
	// ReasonHoneypot: the request asked for a decoy (event honeypot_hit).
	ReasonHoneypot = "honeypot"
)

// Prefixes of the reasons of the stages before the policy: each is followed
// by that stage's own name for what was wrong, e.g. "token:expired" (an
// agent/token Reason), "body:max_depth", "openapi:required".
const (
	ReasonTokenPrefix   = "token:"   // event token_refused
	ReasonBodyPrefix    = "body:"    // event body_refused
	ReasonOpenAPIPrefix = "openapi:" // event openapi_refused
)
