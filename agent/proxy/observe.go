package proxy

import (
	"errors"
	"net"
	"os"
	"time"

	"github.com/warden-sidecar/warden/agent/pep"
)

// Observer is told what happened to each request and each TLS handshake,
// for metrics (agent/metrics implements it). Its methods run on the request
// path, one call per request or handshake: they must not block, and should
// not allocate. An interface rather than the metrics registry itself, so
// that the data path names no metrics library and tests can count in a
// plain struct.
type Observer interface {
	// Request is called once per request warden answered, when its response
	// head is ready (a response body from the app streams after).
	Request(RequestStats)
	// Handshake is called once per accepted connection, when its TLS
	// handshake ends.
	Handshake(HandshakeResult)
}

// RequestStats is what one request came to.
type RequestStats struct {
	Outcome Outcome
	// Stage is the stage that refused a request with OutcomeDeny:
	// pep.StagePeer for the allow-list, else the pipeline verdict's stage.
	Stage  pep.Stage
	Status int // the status the client got
	// Total is the time from the request read whole to its response head,
	// as the access log's duration_s; 0 for a request fasthttp could not
	// read (OutcomeInvalid from the parser), whose start is unknown.
	Total time.Duration
	// Forwarded is set when the request was sent to the app (it answered,
	// or failed: OutcomeError); Upstream is then the time spent waiting for
	// it, from writing the request to reading the response head, and
	// Total-Upstream is warden's own time (Envoy's "added latency").
	Forwarded bool
	Upstream  time.Duration
}

// Outcome is what became of a request, from warden's side. Its values are
// fixed: they may label metrics.
type Outcome uint8

const (
	// OutcomeAllow: forwarded to the app, which answered (whatever its
	// status).
	OutcomeAllow Outcome = iota
	// OutcomeDeny: refused by a decision: the peer allow-list, the token,
	// the OpenAPI or body checks, or the policy (RequestStats.Stage says
	// which).
	OutcomeDeny
	// OutcomeInvalid: refused because warden could not read it as exactly
	// one request (the request hardening, the path, the parser's limits).
	OutcomeInvalid
	// OutcomeRateLimit: refused by the userspace rate limiter (429).
	OutcomeRateLimit
	// OutcomeError: the app could not be reached or did not answer in
	// time (502, 503, 504), or warden failed itself (500).
	OutcomeError

	// NumOutcomes is the number of Outcome values, for tables indexed by them.
	NumOutcomes = int(OutcomeError) + 1
)

var outcomeNames = [NumOutcomes]string{"allow", "deny", "invalid", "ratelimit", "error"}

// String is the outcome's metric label value.
func (o Outcome) String() string { return outcomeNames[o] }

// HandshakeResult is how an inbound TLS handshake ended. Its values are
// fixed: they may label metrics.
type HandshakeResult uint8

const (
	HandshakeOK HandshakeResult = iota
	// HandshakeError: refused (no client certificate, one the trust bundle
	// does not verify, no common version or cipher) or abandoned by the
	// client (closed, not TLS).
	HandshakeError
	// HandshakeTimeout: not complete within WARDEN_HANDSHAKE_TIMEOUT (or
	// the read timeout).
	HandshakeTimeout

	// NumHandshakeResults is the number of HandshakeResult values.
	NumHandshakeResults = int(HandshakeTimeout) + 1
)

var handshakeNames = [NumHandshakeResults]string{"ok", "error", "timeout"}

// String is the result's metric label value.
func (r HandshakeResult) String() string { return handshakeNames[r] }

func handshakeResult(err error) HandshakeResult {
	var netErr net.Error
	switch {
	case err == nil:
		return HandshakeOK
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return HandshakeTimeout
	}
	return HandshakeError
}

// InboundConns is the number of open inbound connections.
func (s *Server) InboundConns() int {
	n := int(s.srv.GetOpenConnectionsCount())
	if s.h2 != nil {
		n += int(s.h2.open.Load())
	}
	return n
}

// UpstreamConns is the number of open connections to the app: carrying a
// request (active) and waiting for one (idle: pooled, or pinned to an
// inbound connection between its requests; a pinned connection is active
// while a request is written and its response head read).
func (s *Server) UpstreamConns() (active, idle int) {
	idle = s.client.IdleConnsCount()
	active = max(s.client.ConnsCount()-idle, 0)
	if s.pins != nil {
		busy := int(s.pins.busy.Load())
		active += busy
		idle += max(int(s.pins.open.Load())-busy, 0)
	}
	return active, idle
}
