// Package authz is the Policy Enforcement Point: for each request that passed
// the peer check it builds the policy input, asks the decision engine
// (bundle.Engine), writes the decision log line and turns the decision into a
// proxy.Verdict. It fails closed: an engine error or an undefined decision
// denies. It holds no policy of its own.
package authz

import (
	"context"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/agent/proxy"
	"github.com/warden-sidecar/warden/bundle"
)

// Engine is the decision point; *bundle.Engine implements it.
type Engine interface {
	Decide(ctx context.Context, in *bundle.Input) (bundle.Decision, error)
}

// Authorizer implements proxy.Guard.
type Authorizer struct {
	engine Engine
	ownID  func() string
	log    zerolog.Logger // the decision log
	states sync.Pool
}

// New builds the PEP. ownID returns warden's SPIFFE ID (input.destination);
// decisions are logged to log, one line each, with event "decision".
func New(engine Engine, ownID func() string, log zerolog.Logger) *Authorizer {
	a := &Authorizer{engine: engine, ownID: ownID, log: log}
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

// reservedHeaders stay warden's: a policy's headers never override them.
var reservedHeaders = []string{
	"x-forwarded-client-cert", "x-forwarded-for", "x-forwarded-proto", "x-request-id",
	"host", "content-length", "transfer-encoding", "connection",
}

func reserved(name string) bool {
	for _, r := range reservedHeaders {
		if strings.EqualFold(name, r) {
			return true
		}
	}
	return false
}

// Check decides one request.
func (a *Authorizer) Check(ctx *fasthttp.RequestCtx, req *proxy.Request) proxy.Verdict {
	st := a.states.Get().(*state)
	defer a.release(st)
	in := &st.in
	uri := ctx.URI()
	in.Method = b2s(ctx.Method())
	in.Path = b2s(req.Path)
	in.RawPath = b2s(uri.PathOriginal())
	in.RawQuery = b2s(uri.QueryString())
	in.Transaction = b2s(req.ID)
	in.Sender = req.ClientIP
	in.PeerID = req.PeerID
	in.PeerTrustDomain = req.PeerTrustDomain
	in.DestinationID = a.ownID()
	a.collectHeaders(st, &ctx.Request.Header)

	start := time.Now()
	// Not ctx: a fasthttp.RequestCtx is a context only while its server
	// runs, and a context with a Done channel costs OPA a goroutine per
	// evaluation. Evaluation is bounded CPU work.
	d, err := a.engine.Decide(context.Background(), in)
	a.logDecision(in, &d, err, time.Since(start))

	switch {
	case err != nil:
		return proxy.Verdict{Status: fasthttp.StatusForbidden, Code: "forbidden"}
	case !d.Allow:
		status := d.Status
		if status < 400 || status > 599 {
			status = fasthttp.StatusForbidden
		}
		return proxy.Verdict{Status: status, Code: codeFor(status)}
	}
	for _, h := range d.Headers {
		if !reserved(h.Name) {
			ctx.Request.Header.Set(h.Name, h.Value)
		}
	}
	return proxy.Verdict{}
}

func (a *Authorizer) collectHeaders(st *state, h *fasthttp.RequestHeader) {
	st.names = st.names[:0]
	st.headers = st.headers[:0]
	st.spans = st.spans[:0]
	// Names are appended first and turned into strings after, because the
	// names buffer may move while it grows.
	for k, v := range h.All() {
		start := len(st.names)
		for _, c := range k {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			st.names = append(st.names, c)
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
	clear(st.headers)
	a.states.Put(st)
}

func (a *Authorizer) logDecision(in *bundle.Input, d *bundle.Decision, err error, took time.Duration) {
	e := a.log.Info()
	if !e.Enabled() {
		return
	}
	hdrs := zerolog.Dict()
	for _, h := range in.Headers {
		hdrs.Str(h.Name, h.Value)
	}
	input := zerolog.Dict().
		Str("method", in.Method).
		Str("path", in.Path).
		Str("raw_path", in.RawPath).
		Str("query", in.RawQuery).
		Dict("headers", hdrs).
		Str("transaction", in.Transaction).
		Str("sender", in.Sender).
		Dict("peer", zerolog.Dict().Str("spiffe_id", in.PeerID).Str("trust_domain", in.PeerTrustDomain)).
		Dict("destination", zerolog.Dict().Str("spiffe_id", in.DestinationID))
	if in.Token != nil {
		input.Interface("token", in.Token)
	}
	e.Str("event", "decision").
		Str("request_id", in.Transaction).
		Dict("input", input).
		Bool("allow", d.Allow && err == nil).
		Str("revision", d.Revision).
		Bool("cached", d.Cached).
		Float64("eval_s", took.Seconds())
	if d.Status != 0 {
		e.Int("status", d.Status)
	}
	if d.Reason != "" {
		e.Str("reason", d.Reason)
	}
	if err != nil {
		e.AnErr("error", err)
	}
	e.Send()
}

func codeFor(status int) string {
	switch status {
	case fasthttp.StatusUnauthorized:
		return "unauthorized"
	case fasthttp.StatusForbidden:
		return "forbidden"
	case fasthttp.StatusTooManyRequests:
		return "too_many_requests"
	case fasthttp.StatusBadRequest:
		return "bad_request"
	case fasthttp.StatusNotFound:
		return "not_found"
	}
	return "denied"
}

// b2s views b as a string without copying. The strings built here live only
// for one Check call, while fasthttp keeps the underlying request buffers.
func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
