package metrics

import (
	"github.com/warden-sidecar/warden/agent/authz"
	"github.com/warden-sidecar/warden/agent/inspect"
	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/signature"
	"github.com/warden-sidecar/warden/agent/token"
)

// The label values of every metric with labels, each a fixed set.

// codeClasses are the status classes of warden_requests_total. The status
// a client gets is at least 200 (fasthttp's client handles 1xx itself): an
// app's status below 300 counts as 2xx, one above 599 as 5xx.
var codeClasses = [...]string{"2xx", "3xx", "4xx", "5xx"}

func codeClass(status int) int {
	switch {
	case status < 300:
		return 0
	case status < 400:
		return 1
	case status < 500:
		return 2
	}
	return 3
}

// denialStages are the stages of warden_denials_total, in the order a
// request meets them.
var denialStages = [...]pep.Stage{pep.StagePeer, pep.StageHoneypot, pep.StageSignature, pep.StageToken, pep.StageOpenAPI, pep.StageBody, pep.StagePolicy, pep.StageRateLimit}

func denialStage(s pep.Stage) int {
	switch s {
	case pep.StagePeer:
		return 0
	case pep.StageHoneypot:
		return 1
	case pep.StageSignature:
		return 2
	case pep.StageToken:
		return 3
	case pep.StageOpenAPI:
		return 4
	case pep.StageBody:
		return 5
	case pep.StageRateLimit:
		return 7
	}
	// A denial the pipeline did not attribute is the policy's: it is the
	// stage that decides what the others let through.
	return 6
}

// signatureReasons are agent/signature's reasons, refusals' label values.
var signatureReasons = []string{
	signature.ReasonMissing, signature.ReasonUnknownKey, signature.ReasonBadSignature, signature.ReasonNotCovered,
	signature.ReasonStale, signature.ReasonExpired, signature.ReasonReplayed, signature.ReasonDigestMismatch,
	signature.ReasonMalformed, signature.ReasonDuplicateHeader,
}

// Decision results of warden_decisions_total; an error is a decision that
// could not be made (fail closed: denied), never cached.
const (
	resultAllow = iota
	resultDeny
	resultError
)

var decisionResults = [...]string{"allow", "deny", "error"}

// tokenReasons are agent/token's reasons, refusals' label values.
var tokenReasons = []token.Reason{
	token.ReasonMissing, token.ReasonOversized, token.ReasonMalformed, token.ReasonAlgorithm,
	token.ReasonUnknownKID, token.ReasonKeysUnavailable, token.ReasonBadSignature, token.ReasonExpired,
	token.ReasonNotYetValid, token.ReasonIssuer, token.ReasonAudience,
}

// bodyRules are the rules of the body stage: agent/inspect's and the
// pipeline's own. Another (a rule added without its label here, which
// TestRuleLabelsCoverEveryRule catches) counts as otherBodyRule.
var bodyRules = []string{
	inspect.RuleSyntax, inspect.RuleInvalidUTF8, inspect.RuleMaxDepth, inspect.RuleMaxKeys,
	inspect.RuleMaxArray, inspect.RuleMaxString, inspect.RuleMaxNumber, inspect.RuleDuplicateKey,
	inspect.RuleDTD, inspect.RuleMaxAttributes, inspect.RuleMaxElements, inspect.RuleMaxText,
	inspect.RuleDuplicateAttribute,
	authz.RuleRepeatedContentHeader, authz.RuleContentEncoding, authz.RulePolicyBodyMaxBytes,
}

const otherBodyRule = "other"

// openapiRules are the rules of the OpenAPI stage. agent/openapi names its
// own checks' rules, and a schema's with the keyword that failed, in snake
// case, as kin-openapi reports it: the keywords kin-openapi reports today
// are here; any other (a later kin-openapi's, or a JSON Schema keyword of
// OpenAPI 3.1) counts as schemaRule.
var openapiRules = []string{
	// agent/openapi's own checks (openapi.Violation's Rule).
	"no_route", "method", "encoding", "type", "format", "minimum", "maximum",
	"exclusive_minimum", "exclusive_maximum", "min_length", "max_length", "pattern", "enum",
	"required", "duplicate", "media_type", "json", "depth", "additional_properties", schemaRule,
	// kin-openapi's SchemaError.SchemaField values not already above.
	"all_of", "any_of", "one_of", "not", "boolean", "discriminator", "max_items", "min_items",
	"max_properties", "min_properties", "multiple_of", "nullable", "properties", "unique_items",
}

const schemaRule = "schema"
