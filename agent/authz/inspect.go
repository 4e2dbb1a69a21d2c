package authz

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/warden-sidecar/warden/agent/inspect"
	"github.com/warden-sidecar/warden/agent/openapi"
	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/bundle"
	"github.com/warden-sidecar/warden/internal/secevent"
)

// The body stage's own rules, beside agent/inspect's.
const (
	// RuleRepeatedContentHeader: Content-Type or Content-Encoding sent
	// twice (the app might read either copy).
	RuleRepeatedContentHeader = "repeated_content_header"
	// RuleContentEncoding: a JSON or XML body with a Content-Encoding
	// warden would have to inflate to check (415).
	RuleContentEncoding = "content_encoding"
	// RulePolicyBodyMaxBytes: a JSON body over
	// WARDEN_POLICY_BODY_MAX_BYTES, which the policy could not see (413).
	RulePolicyBodyMaxBytes = "policy_body_max_bytes"
)

// WithOpenAPI validates every request against the spec that spec returns
// (nil: no validation), after the token and before the body limits: a
// request no operation describes gets 404, one whose parameters or JSON
// body break their schemas 400 invalid_request, and the policy gets
// input.operation.
func WithOpenAPI(spec func() *openapi.Spec) Option {
	return func(a *Authorizer) { a.spec = spec }
}

// WithJSONLimits refuses JSON bodies that are not one valid JSON value
// within l (400 invalid_body).
func WithJSONLimits(l inspect.JSONLimits) Option {
	return func(a *Authorizer) { a.jsonLimits = &l }
}

// WithXMLLimits refuses XML bodies with a DTD, not well-formed or over l
// (400 invalid_body).
func WithXMLLimits(l inspect.XMLLimits) Option {
	return func(a *Authorizer) { a.xmlLimits = &l }
}

// WithPolicyBody gives JSON bodies of up to maxBytes to the policy as
// input.parsed_body; a larger JSON body gets 413, so that a policy that
// caps an amount cannot be passed by padding the body.
func WithPolicyBody(maxBytes int) Option {
	return func(a *Authorizer) { a.policyBodyMax = maxBytes }
}

// inspects reports whether Check looks at anything but the headers: the
// stages below cost nothing for a request without a body and without a
// spec.
func (a *Authorizer) inspects() bool {
	return a.spec != nil || a.jsonLimits != nil || a.xmlLimits != nil || a.policyBodyMax > 0
}

// checkInput runs the stages between the token and the policy: the OpenAPI
// operation and its parameters, the body limits, the body's schema, and the
// parsed body for the policy. ok is false when the request is refused with v.
func (a *Authorizer) checkInput(st *state, req *pep.Request) (v pep.Verdict, ok bool) {
	body := req.Body
	kind := inspect.None
	if len(body) > 0 {
		if st.contentTypes > 1 || st.contentEncodings > 1 {
			// The app may read either copy: refuse rather than guess.
			return a.refuseBody(st, req, inspect.None, &inspect.Violation{Rule: RuleRepeatedContentHeader}), false
		}
		kind = inspect.Classify(st.contentType, body)
	}

	var op *openapi.Operation
	var spec *openapi.Spec
	if a.spec != nil && req.GRPC == nil {
		// An OpenAPI document describes HTTP operations, not gRPC methods:
		// a gRPC request is decided on input.grpc instead.
		spec = a.spec()
	}
	if spec != nil {
		var viol *openapi.Violation
		if op, viol = spec.Match(a.openapiRequest(st, req)); viol != nil {
			return a.refuseOpenAPI(st, req, viol), false
		}
	}

	if kind != inspect.None && a.limits(kind) {
		if len(st.contentEncoding) > 0 && !asciiEqualFoldString(st.contentEncoding, "identity") {
			// An encoded body cannot be checked without decoding it, and
			// warden does not inflate what a client sends.
			return a.refuseBody(st, req, kind, &inspect.Violation{Rule: RuleContentEncoding}), false
		}
		var viol *inspect.Violation
		switch kind {
		case inspect.JSON:
			viol = a.jsonLimits.CheckJSON(body)
		case inspect.XML:
			viol = a.xmlLimits.CheckXML(body)
		}
		if viol != nil {
			return a.refuseBody(st, req, kind, viol), false
		}
	}

	var parsed any
	if op != nil {
		var viol *openapi.Violation
		if parsed, viol = op.CheckBody(a.openapiRequest(st, req)); viol != nil {
			return a.refuseOpenAPI(st, req, viol), false
		}
		st.in.Operation = &bundle.Operation{ID: op.ID, PathTemplate: op.PathTemplate, PathParams: op.PathParams, Key: op.Key}
	}

	if a.policyBodyMax > 0 && kind == inspect.JSON {
		if len(body) > a.policyBodyMax {
			a.requestEvent(secevent.InputRefused, secevent.Medium, st, req).
				Str(secevent.FieldReason, pep.ReasonBodyPrefix+RulePolicyBodyMaxBytes).Str("rule", RulePolicyBodyMaxBytes).
				Int("limit", a.policyBodyMax).Int("bytes", len(body)).
				Msg("JSON body larger than WARDEN_POLICY_BODY_MAX_BYTES: the policy could not see it")
			if a.obs != nil {
				a.obs.InputRefused(pep.StageBody, RulePolicyBodyMaxBytes)
			}
			return pep.Verdict{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Stage: pep.StageBody}, false
		}
		if parsed == nil {
			var ok bool
			if parsed, ok = decodeJSON(body); !ok {
				// Only when the JSON limits are off: they refused it already.
				return a.refuseBody(st, req, kind, &inspect.Violation{Rule: inspect.RuleSyntax}), false
			}
		}
		st.in.ParsedBody = parsed
		st.in.ParsedBodyRaw = b2s(body)
	}
	return pep.Verdict{}, true
}

// decodeJSON decodes a body for the policy, numbers as json.Number. A
// function of its own so that only requests with a body pay for the
// decoder's escaping value.
func decodeJSON(body []byte) (any, bool) {
	var v any
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&v); err != nil || d.More() {
		return nil, false
	}
	return v, true
}

// limits reports whether bodies of kind are checked.
func (a *Authorizer) limits(kind inspect.Kind) bool {
	switch kind {
	case inspect.JSON:
		return a.jsonLimits != nil
	case inspect.XML:
		return a.xmlLimits != nil
	}
	return false
}

func (a *Authorizer) openapiRequest(st *state, req *pep.Request) *openapi.Request {
	r := &st.oreq
	*r = openapi.Request{
		Method: req.Method, Path: req.Path, RawPath: req.RawPath, RawQuery: req.RawQuery,
		Headers: req.Headers, ContentType: st.contentType, Body: req.Body,
	}
	return r
}

// refuseBody answers 400 invalid_body, or 415 for a body warden cannot
// read, and emits input_refused with the rule and where it was broken;
// never a byte of the body.
func (a *Authorizer) refuseBody(st *state, req *pep.Request, kind inspect.Kind, v *inspect.Violation) pep.Verdict {
	e := a.requestEvent(secevent.InputRefused, secevent.Medium, st, req).
		Str(secevent.FieldReason, pep.ReasonBodyPrefix+v.Rule).Str("kind", kind.String()).Str("rule", v.Rule)
	if v.Where != "" {
		e = e.Str("where", v.Where)
	}
	if v.Limit > 0 {
		e = e.Int("limit", v.Limit)
	}
	e.Int64("offset", v.Offset).Msg("request body refused")
	if a.obs != nil {
		a.obs.InputRefused(pep.StageBody, v.Rule)
	}
	if v.Rule == RuleContentEncoding {
		return pep.Verdict{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Stage: pep.StageBody}
	}
	return pep.Verdict{Status: http.StatusBadRequest, Code: "invalid_body", Stage: pep.StageBody}
}

// refuseOpenAPI answers the violation's status and code, and emits
// input_refused naming which parameter broke which rule; never its value.
func (a *Authorizer) refuseOpenAPI(st *state, req *pep.Request, v *openapi.Violation) pep.Verdict {
	e := a.requestEvent(secevent.InputRefused, secevent.Medium, st, req).
		Str(secevent.FieldReason, pep.ReasonOpenAPIPrefix+v.Rule).Str("rule", v.Rule)
	if v.In != "" {
		e = e.Str("in", v.In)
	}
	if v.Name != "" {
		e = e.Str("name", v.Name)
	}
	if v.Detail != "" {
		e = e.Str("detail", v.Detail)
	}
	e.Msg("request does not follow the OpenAPI spec")
	if a.obs != nil {
		a.obs.InputRefused(pep.StageOpenAPI, v.Rule)
	}
	return pep.Verdict{Status: v.Status, Code: v.Code, Stage: pep.StageOpenAPI}
}

func asciiEqualFoldString(b []byte, lower string) bool {
	return len(b) == len(lower) && asciiEqualFold(b, []byte(lower))
}
