package pep

// Reasons warden gives for a denial, in the decision log's warden.reason
// and in the security events' reason, beside the policy's own (a decision
// object's "reason"). One vocabulary for both, so that one query finds
// every refusal of a kind. Their values are fixed: they may label metrics.
const (
	// ReasonPeerNotAllowed: the client's SPIFFE ID is not in
	// WARDEN_ALLOWED_PEERS (event peer_denied).
	ReasonPeerNotAllowed = "peer_not_allowed"
	// ReasonDefaultDeny: the policy's decision was undefined, or false
	// without a reason.
	ReasonDefaultDeny = "default_deny"
	// ReasonPolicyNotReady: no bundle is active yet.
	ReasonPolicyNotReady = "policy_not_ready"
	// ReasonPolicyError: the evaluation failed or its result is malformed.
	ReasonPolicyError = "policy_error"
	// ReasonPolicyTimeout: the evaluation ran past
	// WARDEN_POLICY_EVAL_TIMEOUT (event policy_denied).
	ReasonPolicyTimeout = "policy_timeout"
	// ReasonRateLimited: the policy allowed, but the request is over its
	// decision's rate_limit or its peer's WARDEN_PEER_RATE_LIMIT (event
	// rate_limited); also the refusal's "error" code.
	ReasonRateLimited = "rate_limited"
	// ReasonRateLimitConnection: the userspace rate limiter refused a
	// connection at accept (event rate_limited, sampled).
	ReasonRateLimitConnection = "rate_limit:connection"
	// ReasonRateLimitRequest: the userspace rate limiter refused a request
	// with 429 (event rate_limited, sampled).
	ReasonRateLimitRequest = "rate_limit:request"
	// ReasonHoneypot: the request asked for a decoy (event honeypot_hit).
	ReasonHoneypot = "honeypot"
)

// Prefixes of the reasons of the stages before the policy: each is followed
// by that stage's own name for what was wrong, e.g. "token:expired" (an
// agent/token Reason), "body:max_depth", "openapi:required",
// "hardening:content_length_and_transfer_encoding", "path:encoded_separator".
// The policy's denials carry the policy's own reason, or one of the
// Reason* above (event policy_denied).
const (
	ReasonTokenPrefix     = "token:"     // event token_invalid
	ReasonSignaturePrefix = "signature:" // event signature_invalid
	ReasonBodyPrefix      = "body:"      // event input_refused
	ReasonOpenAPIPrefix   = "openapi:"   // event input_refused
	ReasonHardeningPrefix = "hardening:" // event input_refused: the proxy's request checks
	ReasonPathPrefix      = "path:"      // event input_refused: a path NormalizePath refuses
)
