package authz

import (
	"errors"
	"net/http"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/signature"
	"github.com/warden-sidecar/warden/bundle"
	"github.com/warden-sidecar/warden/internal/secevent"
)

// WithSignatures verifies each request's HTTP message signature (RFC 9421)
// first of all, against the request as it arrived: a missing (when
// required), invalid, stale or replayed one gets 401 invalid_signature; a
// valid one reaches the policy as input.signature.
func WithSignatures(v *signature.Verifier) Option {
	return func(a *Authorizer) { a.signatures = v }
}

// checkSignature verifies the signature; ok is false when the request is
// refused with v.
func (a *Authorizer) checkSignature(st *state, req *pep.Request) (v pep.Verdict, ok bool) {
	// The target as the client sent it: path and query before warden's
	// normalization, which the signer never saw.
	st.target = append(st.target[:0], req.RawPath...)
	if len(req.RawQuery) > 0 {
		st.target = append(append(st.target, '?'), req.RawQuery...)
	}
	var authority []byte
	for _, f := range req.Headers {
		if len(f.Name) == 4 && asciiEqualFoldString(f.Name, "host") {
			authority = f.Value
			break
		}
	}
	st.sreq = signature.Request{
		Method: req.Method, Scheme: "https", Authority: authority, RawTarget: st.target,
		Headers: req.Headers, Body: req.Body,
	}
	verified, err := a.signatures.Verify(&st.sreq)
	st.sreq = signature.Request{}
	if err != nil {
		reason, detail := signature.ReasonOf(err), err.Error()
		var se *signature.Error
		if errors.As(err, &se) {
			detail = se.Detail
		}
		if a.obs != nil {
			a.obs.Signature(reason, true)
		}
		a.requestEvent(secevent.SignatureInvalid, signatureSeverity(reason), nil, req).
			Str(secevent.FieldReason, pep.ReasonSignaturePrefix+reason).Str("detail", detail).
			Msg("request signature refused")
		return pep.Verdict{Status: http.StatusUnauthorized, Code: "invalid_signature", Stage: pep.StageSignature}, false
	}
	if a.obs != nil {
		a.obs.Signature("", verified != nil)
	}
	if verified != nil {
		st.sig = bundle.Signature{KeyID: verified.KeyID, Alg: verified.Alg, Created: verified.Created, Components: verified.Components}
		st.in.Signature = &st.sig
	}
	return pep.Verdict{}, true
}

// signatureSeverity ranks a signature refusal as tokenSeverity does: a
// signature that does not verify, or a replay, is high; a missing one
// low; the rest (stale, expired, malformed, not covering what must be)
// medium.
func signatureSeverity(reason string) secevent.Severity {
	switch reason {
	case signature.ReasonBadSignature, signature.ReasonReplayed, signature.ReasonDigestMismatch:
		return secevent.High
	case signature.ReasonMissing:
		return secevent.Low
	}
	return secevent.Medium
}
