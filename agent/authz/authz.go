package authz

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/inspect"
	"github.com/warden-sidecar/warden/agent/openapi"
	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/signature"
	"github.com/warden-sidecar/warden/agent/token"
	"github.com/warden-sidecar/warden/bundle"
	"github.com/warden-sidecar/warden/internal/redact"
	"github.com/warden-sidecar/warden/internal/secevent"
)

// Authorizer is the decision pipeline: it implements pep.Checker.
type Authorizer struct {
	engine *bundle.Engine
	ownID  func() string
	log    zerolog.Logger // the decision log
	events *secevent.Log  // security events; nil: none
	obs    Observer       // nil: nobody counts
	states sync.Pool
	dlog   decisionLog // the decision log's settings and counters (decisionlog.go)
	// accessFields: decision lines wait in the request's pep.Line for the
	// response's fields (WithAccessFields).
	accessFields bool

	tokens        *token.Verifier // nil: tokens are not read
	tokenHeader   []byte          // lower case
	bearerPrefix  bool            // the header is Authorization: only "Bearer <token>" counts
	tokenRequired bool

	signatures *signature.Verifier // nil: signatures are not read

	rates rateLimits // the decisions' rate_limit and the peers' budget (ratelimit.go)
	// The active defense (defense.go); off when nil.
	decoys        *decoys
	decoyBlockFor time.Duration
	blocker       Blocker
	maxBlockFor   time.Duration

	// The input checks (inspect.go); all off when zero.
	spec          func() *openapi.Spec
	jsonLimits    *inspect.JSONLimits
	xmlLimits     *inspect.XMLLimits
	policyBodyMax int
}

// Option configures an Authorizer.
type Option func(*Authorizer)

// WithTokens makes Check verify the token in header before the policy
// runs. In Authorization the value must be "Bearer <token>" (another scheme
// counts as no token); in another header the "Bearer " prefix is optional.
// A token that fails verification is refused with 401; so is a request
// without one when required. The header never reaches the policy input.
func WithTokens(v *token.Verifier, header string, required bool) Option {
	return func(a *Authorizer) {
		a.tokens = v
		a.tokenHeader = []byte(strings.ToLower(header))
		a.bearerPrefix = strings.EqualFold(header, "authorization")
		a.tokenRequired = required
	}
}

// WithDecisionLogSample logs only the share rate (0 to 1) of the allowed
// decisions served from the decision cache (WARDEN_DECISION_LOG_SAMPLE);
// denials, errors and decisions the policy computed are always logged.
// Without it every decision is logged.
func WithDecisionLogSample(rate float64) Option {
	return func(a *Authorizer) { a.dlog.setSample(rate) }
}

// WithAccessFields makes the decision log line the request's one line: a
// line is held in the request's pep.Line, when it has one, for the
// protocol path to finish with the response's status, duration and sizes
// (WARDEN_ACCESS_LOG=combined).
func WithAccessFields() Option {
	return func(a *Authorizer) { a.accessFields = true }
}

// WithSampleSource draws the sampling's random numbers from src, which
// must then be used by one goroutine at a time: for tests, with a fixed
// seed. Without it they come from math/rand/v2's global generator, a
// ChaCha8 state per thread, which takes no lock.
func WithSampleSource(src rand.Source) Option {
	return func(a *Authorizer) { a.dlog.src = src }
}

// WithEventLog sets the log of the pipeline's security events
// (token_invalid, signature_invalid, input_refused, policy_denied); without
// it (or with nil) none are written.
func WithEventLog(l *secevent.Log) Option {
	return func(a *Authorizer) { a.events = l }
}

// Observer is told the outcome of each stage of Check, for metrics
// (agent/metrics implements it). Its methods run on the request path: they
// must not block, and should not allocate. The arguments are the
// pipeline's own fixed values, so that an implementation can label metrics
// with them.
type Observer interface {
	// Token is a token check's outcome: reason is "" for a verified token,
	// and for a request without one where none is required (present is
	// then false); otherwise the refusal's reason.
	Token(reason token.Reason, present bool)
	// Signature is a signature check's outcome, as Token's: reason is one
	// of agent/signature's Reason values.
	Signature(reason string, present bool)
	// Decision is the policy's answer: err is not nil when no decision
	// could be made (an evaluation error or timeout, which deny); took is
	// the time Decide took, a cache lookup when cached.
	Decision(allow, cached bool, err error, took time.Duration)
	// InputRefused is a refusal by the OpenAPI (pep.StageOpenAPI) or body
	// (pep.StageBody) checks, for rule: an openapi.Violation's or
	// inspect.Violation's Rule, or one of the Rule* of this package.
	InputRefused(stage pep.Stage, rule string)
}

// WithObserver tells o the outcome of each stage (see Observer).
func WithObserver(o Observer) Option {
	return func(a *Authorizer) { a.obs = o }
}

// New builds the PEP. ownID returns warden's SPIFFE ID (input.destination);
// decisions are logged to log, one line each, with event "decision".
func New(engine *bundle.Engine, ownID func() string, log zerolog.Logger, opts ...Option) *Authorizer {
	a := &Authorizer{engine: engine, ownID: ownID, log: log}
	a.dlog.init(engine.DecisionPath())
	for _, o := range opts {
		o(a)
	}
	a.states.New = func() any { return &state{} }
	return a
}

// state is the per-request scratch space, pooled so that building the input
// allocates nothing.
type state struct {
	in      bundle.Input
	headers []bundle.Header
	names   []byte // lower-cased header names, which in.Headers alias
	spans   []span // where each name sits in names

	limited bool // the policy allowed, the rate limit did not

	tokenValue []byte // the token header's value, aliasing the request
	tokenCount int    // how many token headers the request has
	token      *token.Verified

	// Content-Type and Content-Encoding, aliasing the request, and how many
	// of each it has.
	contentType, contentEncoding   []byte
	contentTypes, contentEncodings int
	oreq                           openapi.Request

	// The signature check's scratch (signature.go).
	target []byte
	sreq   signature.Request
	sig    bundle.Signature

	grpc bundle.GRPC // input.grpc, aliasing the request

	logScratch // the decision log's buffers (decisionlog.go)
}

type span struct{ start, end int }

// excluded headers never reach the policy input (nor the decision log):
// credentials; the request id, which is input.transaction; and tracing
// headers, which differ on every request and would make every decision a
// cache miss while no sane policy decides on a trace id.
func excluded(lowerName []byte) bool {
	switch string(lowerName) {
	case "authorization", "proxy-authorization", "cookie", "x-request-id",
		"traceparent", "tracestate", "baggage", "b3", "x-b3-traceid", "x-b3-spanid",
		"x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "uber-trace-id",
		"x-amzn-trace-id", "x-cloud-trace-context", "sentry-trace":
		return true
	}
	return false
}

// Check decides one request: its token, then the policy. The decision's
// headers for the app come back in the verdict.
func (a *Authorizer) Check(req *pep.Request) pep.Verdict {
	// Decoys first: scanners carry no credentials, and a decoy hit must
	// not cost a signature or token check.
	if a.decoys != nil {
		if v, ok := a.checkDecoy(req); !ok {
			return v
		}
	}
	st := a.states.Get().(*state)
	defer a.release(st)
	in := &st.in
	in.Method = b2s(req.Method)
	in.Path = b2s(req.Path)
	in.RawPath = b2s(req.RawPath)
	in.RawQuery = b2s(req.RawQuery)
	in.Transaction = b2s(req.ID)
	in.Sender = req.ClientIP
	in.PeerID = req.PeerID
	in.PeerTrustDomain = req.PeerTrustDomain
	in.DestinationID = a.ownID()
	if g := req.GRPC; g != nil {
		st.grpc = bundle.GRPC{Service: b2s(g.Service), Method: b2s(g.Method)}
		in.GRPC = &st.grpc
	}
	a.collectHeaders(st, req.Headers)
	if a.signatures != nil {
		if v, ok := a.checkSignature(st, req); !ok {
			return v
		}
	}
	if a.tokens != nil {
		if v, ok := a.checkToken(st, req); !ok {
			return v
		}
	}
	if a.inspects() {
		if v, ok := a.checkInput(st, req); !ok {
			return v
		}
	}

	start := time.Now()
	// No request context: a context with a Done channel costs OPA a
	// goroutine per evaluation, and evaluation is bounded CPU work with a
	// deadline of its own (WARDEN_POLICY_EVAL_TIMEOUT).
	d, err := a.engine.Decide(context.Background(), in)
	took := time.Since(start)
	var wait time.Duration
	if err == nil && d.Allow {
		wait, st.limited = a.takeRate(req, &d)
	}
	a.logDecision(st, req.Line, &d, err, start, took)
	if a.obs != nil {
		a.obs.Decision(d.Allow && err == nil, d.Cached, err, took)
	}

	if d.BlockFor > 0 {
		a.applyBlock(req, d.BlockFor)
	}

	switch {
	case err != nil:
		a.policyDenied(st, req, &d, err, http.StatusForbidden)
		return pep.Verdict{Status: http.StatusForbidden, Code: "forbidden", Stage: pep.StagePolicy, Revision: d.Revision}
	case !d.Allow:
		status := deniedStatus(d.Status)
		a.policyDenied(st, req, &d, nil, status)
		return pep.Verdict{Status: status, Code: codeFor(status), Stage: pep.StagePolicy, Revision: d.Revision, Cached: d.Cached}
	case st.limited:
		return a.refuseRate(st, req, &d, wait)
	}
	return pep.Verdict{AppHeaders: d.Headers, Stage: pep.StagePolicy, Revision: d.Revision, Cached: d.Cached}
}

// policyDenied emits policy_denied for a request the policy refused, or
// could not decide (err): reason is the one the decision log gives
// (reasonOf: the policy's own, or default_deny, policy_error,
// policy_timeout, policy_not_ready).
func (a *Authorizer) policyDenied(st *state, req *pep.Request, d *bundle.Decision, err error, status int) {
	if a.events == nil {
		return
	}
	reason, _ := reasonOf(d, err)
	msg := "request denied by the policy"
	if errors.Is(err, bundle.ErrEvalTimeout) {
		msg = "policy evaluation exceeded WARDEN_POLICY_EVAL_TIMEOUT: denied"
	}
	e := a.requestEvent(secevent.PolicyDenied, secevent.Medium, st, req).Str(secevent.FieldReason, reason).
		Int("status", status).Str("revision", d.Revision).Bool("cached", d.Cached)
	e.Msg(msg)
}

// requestEvent starts a security event about req with the fields every
// such event carries: source_ip, peer_id, token_subject (when a verified
// token had a sub), request_id, method, and the normalized path (redacted:
// never a query, nor path parameters).
func (a *Authorizer) requestEvent(name secevent.Name, sev secevent.Severity, st *state, req *pep.Request) *zerolog.Event {
	e := a.events.Event(name, sev)
	if e == nil {
		return nil
	}
	e = e.Str(secevent.FieldSourceIP, req.ClientIP).Str(secevent.FieldPeerID, req.PeerID)
	if st != nil && st.token != nil {
		if sub, _ := st.token.Claims["sub"].(string); sub != "" {
			e = e.Str(secevent.FieldTokenSubject, sub)
		}
	}
	return e.Bytes(secevent.FieldRequestID, req.ID).Bytes(secevent.FieldMethod, req.Method).
		Bytes(secevent.FieldPath, redact.Path(req.Path))
}

// checkToken verifies the request's token and puts its claims into the
// input; ok is false when the request is refused with v.
func (a *Authorizer) checkToken(st *state, req *pep.Request) (v pep.Verdict, ok bool) {
	raw, present, malformed := a.tokenFrom(st)
	switch {
	case st.tokenCount > 1:
		// Which one would the app read? Refuse rather than guess.
		return a.refuseToken(req, token.ReasonMalformed, "several token headers"), false
	case malformed:
		return a.refuseToken(req, token.ReasonMalformed, "Bearer scheme not followed by spaces and one token"), false
	case !present && a.tokenRequired:
		return a.refuseToken(req, token.ReasonMissing, "no bearer token"), false
	case !present:
		if a.obs != nil {
			a.obs.Token("", false)
		}
		return pep.Verdict{}, true
	}
	vt, err := a.tokens.Verify(raw)
	if err != nil {
		detail := err.Error()
		var te *token.Error
		if errors.As(err, &te) {
			detail = te.Detail
		}
		return a.refuseToken(req, token.ReasonOf(err), detail), false
	}
	st.token = vt
	st.in.Token = vt.Claims
	st.in.TokenKey = vt.Key
	if a.obs != nil {
		a.obs.Token("", true)
	}
	return pep.Verdict{}, true
}

var bearer = []byte("bearer")

// tokenFrom reads the token out of the token header's value. In
// Authorization, a scheme other than Bearer means no token (Basic
// credentials are the app's business). malformed is set when the value is
// the Bearer scheme but not "Bearer" 1*SP token (RFC 6750 2.1): a tab, a
// no-break space or another separator after the scheme is refused rather
// than taken for another scheme, since apps that split on any whitespace
// would find a token there that warden never verified.
func (a *Authorizer) tokenFrom(st *state) (raw []byte, present, malformed bool) {
	if st.tokenCount == 0 {
		return nil, false, false
	}
	v := bytes.TrimLeft(st.tokenValue, " \t")
	n := len(bearer)
	if len(v) >= n && asciiEqualFold(v[:n], bearer) && (len(v) == n || !tokenChar(v[n])) {
		rest := bytes.TrimLeft(v[n:], " ")
		if len(rest) == 0 || len(rest) == len(v)-n || bytes.ContainsAny(rest, " \t") || hasNonASCII(rest) {
			// "Bearer" alone, no space after it, or whitespace or non-ASCII
			// bytes within what follows.
			return nil, true, true
		}
		return rest, true, false
	}
	if a.bearerPrefix {
		return nil, false, false
	}
	return bytes.TrimRight(v, " \t"), true, false
}

// tokenChar reports whether c may continue an auth-scheme name (RFC 9110
// token characters).
func tokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

func hasNonASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

func asciiEqualFold(b, lower []byte) bool {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// refuseToken answers 401 with the Bearer challenge (RFC 6750) and emits
// token_invalid; the reason and detail never reach the client, the token
// never the log.
func (a *Authorizer) refuseToken(req *pep.Request, reason token.Reason, detail string) pep.Verdict {
	a.requestEvent(secevent.TokenInvalid, tokenSeverity(reason), nil, req).
		Str(secevent.FieldReason, pep.ReasonTokenPrefix+string(reason)).Str("detail", detail).
		Msg("request token refused")
	if a.obs != nil {
		a.obs.Token(reason, reason != token.ReasonMissing)
	}
	return pep.Verdict{Status: http.StatusUnauthorized, Code: "unauthorized", ClientHeaders: bearerChallenge, Stage: pep.StageToken}
}

// tokenSeverity ranks a token refusal: a token whose signature or
// algorithm does not hold is a forgery attempt (high); no token at all, or
// no keys yet (warden's own state), is low; an expired, misaddressed or
// malformed one is medium.
func tokenSeverity(r token.Reason) secevent.Severity {
	switch r {
	case token.ReasonBadSignature, token.ReasonAlgorithm:
		return secevent.High
	case token.ReasonMissing, token.ReasonKeysUnavailable:
		return secevent.Low
	}
	return secevent.Medium
}

// bearerChallenge is the WWW-Authenticate header of a refused token.
var bearerChallenge = []pep.Header{{Name: "WWW-Authenticate", Value: `Bearer error="invalid_token"`}}

func (a *Authorizer) collectHeaders(st *state, fields []pep.Field) {
	st.names = st.names[:0]
	st.headers = st.headers[:0]
	st.spans = st.spans[:0]
	st.tokenValue, st.tokenCount = nil, 0
	st.contentType, st.contentEncoding, st.contentTypes, st.contentEncodings = nil, nil, 0, 0
	// Names are appended first and turned into strings after, because the
	// names buffer may move while it grows.
	for _, f := range fields {
		k, v := f.Name, f.Value
		start := len(st.names)
		for _, c := range k {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			st.names = append(st.names, c)
		}
		if a.tokenHeader != nil && string(st.names[start:]) == string(a.tokenHeader) {
			st.tokenValue = v
			st.tokenCount++
			st.names = st.names[:start]
			continue
		}
		switch string(st.names[start:]) {
		case "content-type":
			st.contentType = v
			st.contentTypes++
		case "content-encoding":
			st.contentEncoding = v
			st.contentEncodings++
		}
		if excluded(st.names[start:]) {
			st.names = st.names[:start]
			continue
		}
		st.spans = append(st.spans, span{start, len(st.names)})
		st.headers = append(st.headers, bundle.Header{Value: b2s(v)})
	}
	for i, sp := range st.spans {
		st.headers[i].Name = b2s(st.names[sp.start:sp.end])
	}
	st.in.Headers = st.headers
}

func (a *Authorizer) release(st *state) {
	st.in = bundle.Input{}
	st.token, st.tokenValue = nil, nil
	st.contentType, st.contentEncoding, st.oreq = nil, nil, openapi.Request{}
	st.sig = bundle.Signature{}
	st.limited = false
	st.grpc = bundle.GRPC{}
	clear(st.headers)
	a.states.Put(st)
}

// deniedStatus is what a client denied by the policy gets: the policy's
// status when it is an error status, else 403.
func deniedStatus(status int) int {
	if status < 400 || status > 599 {
		return http.StatusForbidden
	}
	return status
}

func codeFor(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusTooManyRequests:
		return "too_many_requests"
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusNotFound:
		return "not_found"
	}
	return "denied"
}

// b2s views b as a string without copying. The strings built here live only
// for one Check call, while the protocol path keeps the request buffers.
func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// redacted replaces what the decision log must not keep.
const redacted = "REDACTED"
