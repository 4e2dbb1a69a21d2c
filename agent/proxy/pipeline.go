package proxy

// The steps of the request path that do not depend on the protocol: the
// HTTP/1.1 path (fasthttp, proxy.go) and the HTTP/2 path (h2.go) call the
// same functions with their own bytes, so that no check, decision or
// record exists twice. The hardening checks are in harden.go and
// harden_request.go, on bytes as well.

import (
	"net/netip"
	"time"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/internal/redact"
	"github.com/warden-sidecar/warden/internal/secevent"
)

// pickRequestID sets st's request id: the client's when it sent exactly one
// X-Request-Id (client) and a valid one, a fresh one otherwise. The header
// scan counted the client's copies.
func (s *Server) pickRequestID(st *reqState, client []byte) {
	st.requestID = st.requestID[:0]
	if st.requestIDs == 1 && ValidRequestID(client) {
		st.requestID = append(st.requestID, client...)
	} else {
		st.requestID = s.ids.Append(st.requestID)
	}
}

// decide asks the decision pipeline about the request whose header fields
// (as the app will receive them) st.fields holds, and keeps what it decided
// for the request's span and metrics. grpc is the gRPC service and method
// of a gRPC request, nil for others.
func (s *Server) decide(st *reqState, p *peer, method, rawPath, rawQuery, body []byte, grpc *pep.GRPC) pep.Verdict {
	// Kept in reqState: a fresh Request passed through the interface would
	// escape to the heap on every request.
	st.req = pep.Request{
		Method: method, Path: st.path, RawPath: rawPath, RawQuery: rawQuery,
		Headers: st.fields, ID: st.requestID, Body: body, GRPC: grpc,
		PeerID: p.peerStr, PeerTrustDomain: p.peerTD, ClientIP: p.clientIP,
	}
	if s.opts.AccessLog == AccessLogCombined {
		st.req.Line = &st.line
	}
	v := s.opts.Guard.Check(&st.req)
	st.req, st.fields = pep.Request{}, st.fields[:0]
	st.verdict = verdict{decided: true, allowed: v.Status == 0, stage: v.Stage, revision: v.Revision, cached: v.Cached}
	if v.Status != 0 {
		st.stage = v.Stage
	}
	return v
}

// refusalCode is the "error" of a refused verdict's answer.
func refusalCode(v pep.Verdict) string {
	if v.Code == "" {
		return "forbidden"
	}
	return v.Code
}

// observe tells the Observer what the request came to.
func (s *Server) observe(st *reqState, o Outcome, status int, took time.Duration) {
	if s.opts.Observer == nil {
		return
	}
	rs := RequestStats{
		Outcome: o, Stage: st.stage, Status: status,
		Total: took, Forwarded: st.forwarded, Upstream: st.upstream,
	}
	if st.untimed {
		rs.Total = 0
	}
	s.opts.Observer.Request(rs)
}

// accessLine accounts for the request in the log: it finishes the
// decision log line the pipeline held (WARDEN_ACCESS_LOG=combined), or
// writes the access line of a request that has none (refused before the
// policy, or a cached decision that sampling left out), or every
// request's (separate). path is the normalized path, or the raw one for a
// request refused before normalization.
func (s *Server) accessLine(p *peer, st *reqState, method, path []byte, status int, took time.Duration, bytesIn, bytesOut int) {
	if st.line.Held() {
		st.line.Finish(status, took, bytesIn, bytesOut, p.clientIP)
		return
	}
	if s.opts.AccessLog == AccessLogOff {
		return
	}
	e := s.log.Info()
	if !e.Enabled() {
		return
	}
	e.Str("event", "access").
		Bytes("method", method).
		Bytes("path", redact.Path(path)).
		Int("status", status).
		Str("peer_id", p.peerStr).
		Str("client_ip", p.clientIP).
		Float64("duration_s", took.Seconds()).
		Int("bytes_in", bytesIn).
		Int("bytes_out", bytesOut).
		Bytes("request_id", st.requestID).
		Send()
}

// endSpanOf ends the request's span with its outcome.
func (s *Server) endSpanOf(p *peer, st *reqState, method []byte, status int) {
	v := st.verdict
	st.span.End(SpanOutcome{
		Method: string(method), Status: status,
		Decided: v.decided, Allowed: v.allowed, Stage: v.stage, Revision: v.revision, Cached: v.cached,
		PeerID: p.peerStr, RequestID: string(st.requestID), End: time.Now(),
	})
	st.span = nil
}

// logPeerRefused writes the peer_denied event of a request of a peer
// WARDEN_ALLOWED_PEERS does not admit, and marks the request as refused at
// that stage.
func (s *Server) logPeerRefused(p *peer, st *reqState, method, rawPath []byte) {
	s.opts.Events.Event(secevent.PeerDenied, secevent.High).Str(secevent.FieldReason, pep.ReasonPeerNotAllowed).
		Str(secevent.FieldSourceIP, p.clientIP).Str(secevent.FieldPeerID, p.peerStr).Bytes(secevent.FieldRequestID, st.requestID).
		Bytes(secevent.FieldMethod, method).Bytes(secevent.FieldPath, redact.Path(rawPath)).
		Msg("peer not allowed")
	st.stage = pep.StagePeer
}

// logPathRefused writes the input_refused event of a request whose path
// NormalizePath refused.
func (s *Server) logPathRefused(p *peer, st *reqState, method, rawPath []byte, err error) {
	s.opts.Events.Event(secevent.InputRefused, secevent.Medium).Str(secevent.FieldReason, pathReason(err)).Str("detail", err.Error()).
		Str(secevent.FieldSourceIP, p.clientIP).Str(secevent.FieldPeerID, p.peerStr).Bytes(secevent.FieldRequestID, st.requestID).
		Bytes(secevent.FieldMethod, method).Bytes(secevent.FieldPath, redact.Path(rawPath)).
		Msg("ambiguous request path")
}

// logRefused writes the input_refused event of a request a hardening check
// refused: why, the method and the path, never a header value.
func (s *Server) logRefused(p *peer, st *reqState, r *refusal, method, rawPath []byte) {
	s.opts.Events.Event(secevent.InputRefused, secevent.Medium).Str(secevent.FieldReason, hardeningReason(r)).Str("detail", r.reason).
		Int("status", r.status).Str(secevent.FieldSourceIP, p.clientIP).Str(secevent.FieldPeerID, p.peerStr).
		Bytes(secevent.FieldRequestID, st.requestID).Bytes(secevent.FieldMethod, method).
		Bytes(secevent.FieldPath, redact.Path(rawPath)).Msg("request refused before policy")
}

// logRateLimited writes the rate_limited event of a request the userspace
// limiter refused: sampled, so the rest of a flood costs one map lookup
// each.
func (s *Server) logRateLimited(p *peer, st *reqState, method, rawPath []byte) {
	if e := s.opts.Events.Sampled(secevent.RateLimited, secevent.Low, p.clientIP); e != nil {
		e.Str(secevent.FieldReason, pep.ReasonRateLimitRequest).
			Str(secevent.FieldSourceIP, p.clientIP).Str(secevent.FieldPeerID, p.peerStr).Bytes(secevent.FieldRequestID, st.requestID).
			Bytes(secevent.FieldMethod, method).Bytes(secevent.FieldPath, redact.Path(rawPath)).
			Msg("request refused by the rate limiter")
	}
}

// logHandshakeFailed writes the tls_handshake_failed event of a connection
// whose TLS handshake failed: sampled per source, as floods come.
func (s *Server) logHandshakeFailed(addr netip.Addr, err error) {
	if s.opts.Events == nil {
		return
	}
	ip := addr.String()
	if e := s.opts.Events.Sampled(secevent.TLSHandshakeFailed, secevent.Low, ip); e != nil {
		e.Str(secevent.FieldReason, "tls:"+handshakeResult(err).String()).Str("detail", err.Error()).
			Str(secevent.FieldSourceIP, ip).Msg("inbound TLS handshake failed")
	}
}
