// Package pep is the contract of the decision pipeline, the Policy
// Enforcement Point: what a protocol path (HTTP/1.1 through fasthttp today,
// HTTP/2 and gRPC next) hands it for each request that passed the peer
// check and the request hardening, and what it answers. It holds types
// only (and Line, a zerolog line held open for the protocol path to
// finish): no fasthttp, no policy engine, so that every protocol path can
// depend on it and no package writes into another's request or response.
// agent/authz implements Checker.
package pep

import "github.com/warden-sidecar/warden/internal/header"

// Header is a header field of a verdict.
type Header = header.Header

// Field is a request header field as the protocol path read it. Its bytes
// alias the path's buffers: valid during Check only.
type Field struct{ Name, Value []byte }

// Request is what the pipeline decides on. Its byte slices alias the
// protocol path's buffers and are valid during Check only; a Checker copies
// what it keeps.
type Request struct {
	Method   []byte
	Path     []byte  // normalized and percent-decoded: the path the app receives
	RawPath  []byte  // as the client sent it
	RawQuery []byte  // without '?'
	Headers  []Field // as the app will receive them, before the verdict's
	ID       []byte  // X-Request-Id
	// Body is the request's content as the app will receive it (chunked
	// framing removed, any Content-Encoding still applied); nil without
	// one. The protocol path read it whole, within its size limit, before
	// Check.
	Body []byte
	// GRPC is the service and method of a gRPC request (content-type
	// application/grpc*, HTTP/2), nil for any other. A gRPC request's
	// Body is nil: its messages stream, and the body checks do not apply.
	GRPC *GRPC

	PeerID          string // verified SPIFFE ID of the client
	PeerTrustDomain string
	ClientIP        string

	// Line, when not nil, is where a Checker holds the request's decision
	// log line for the protocol path to finish with the response's fields
	// (see Line); nil: the Checker writes its line at once.
	Line *Line
}

// GRPC is a gRPC call's service ("pkg.Service") and method ("Method"),
// from the request path "/pkg.Service/Method". They alias the protocol
// path's buffers, like Request's bytes.
type GRPC struct{ Service, Method []byte }

// Verdict is a Checker's answer. The zero Verdict allows the request as it
// is.
type Verdict struct {
	Status int    // 0 allows; otherwise the status the client gets
	Code   string // the "error" of the JSON body; "forbidden" when empty
	// AppHeaders are set on the request to the app when it is allowed, each
	// replacing every copy the client sent; the protocol path never lets
	// them replace its own (the identity and forwarding headers, framing).
	// Shared by cached decisions: read-only.
	AppHeaders []Header
	// ClientHeaders are added to the refusal (a WWW-Authenticate
	// challenge). Read-only.
	ClientHeaders []Header

	// What decided, for metrics, traces and logs: one of the Stage values.
	Stage Stage
	// Revision and Cached describe the policy's decision when it ran
	// (Stage is StagePolicy).
	Revision string
	Cached   bool
}

// Stage is the part of the pipeline that decided a request. Its values are
// fixed: they may label metrics.
type Stage string

const (
	// StagePeer is the protocol path's own check of the peer's SPIFFE ID
	// (WARDEN_ALLOWED_PEERS), before the pipeline: no Checker answers it,
	// but metrics name it beside the others.
	StagePeer Stage = "peer"
	// StageHoneypot: the request asked for a decoy (WARDEN_HONEYPOT_PATHS),
	// first in the pipeline: scanners carry no credentials.
	StageHoneypot  Stage = "honeypot"
	StageSignature Stage = "signature" // the request's HTTP message signature was missing or invalid
	StageToken     Stage = "token"     // the token was missing or invalid
	StageOpenAPI   Stage = "openapi"   // the request does not follow the API's spec
	StageBody      Stage = "body"      // the body broke a limit
	StagePolicy    Stage = "policy"    // the policy decided (allowed or denied)
	// StageRateLimit: the policy allowed, but the request is over the rate
	// of its decision's rate_limit key or its peer's default budget.
	StageRateLimit Stage = "rate_limit"
)

// Checker decides a request. Check must not keep req or its bytes after it
// returns.
type Checker interface {
	Check(req *Request) Verdict
}
