// Package secevent writes warden's security events: one JSON line per
// event, with "event_type":"security", a stable event name and severity,
// and the fields docs/security-events.md documents (and maps to the Elastic
// Common Schema), so that a SIEM can ingest them without a parser.
//
// Every check that refuses, blocks or warns about an attack emits through
// one Log, so that all of them share one schema and one destination
// (WARDEN_SECURITY_LOG). It must never be handed a secret: callers pass
// names, reasons and redacted paths, never tokens, cookies or keys.
package secevent

import (
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Name is an event's stable name: its values are a contract (dashboards and
// SIEM rules match on them).
type Name string

// The events. Each is emitted exactly once for its trigger.
const (
	PeerDenied         Name = "peer_denied"          // the client's SPIFFE ID is not allowed
	PolicyDenied       Name = "policy_denied"        // the policy refused the request
	TokenInvalid       Name = "token_invalid"        // the end-user token is missing or invalid
	SignatureInvalid   Name = "signature_invalid"    // the HTTP message signature is missing or invalid
	InputRefused       Name = "input_refused"        // hardening, JSON/XML limits, OpenAPI
	HoneypotHit        Name = "honeypot_hit"         // a decoy route was requested
	SourceBlocked      Name = "source_blocked"       // a source IP was blocked
	SourceUnblocked    Name = "source_unblocked"     // a block ended or was lifted
	RateLimited        Name = "rate_limited"         // sampled: at most one per source per second
	BundleRejected     Name = "bundle_rejected"      // a policy bundle failed verification or compilation
	IdentityExpiring   Name = "identity_expiring"    // warden's SVID nears expiry unrenewed
	TLSHandshakeFailed Name = "tls_handshake_failed" // sampled, as rate_limited
	BlocklistFull      Name = "blocklist_full"       // a block refused: the blocklist is full
)

// Severity ranks an event.
type Severity uint8

const (
	Low Severity = iota
	Medium
	High
	Critical
)

var severities = [...]string{"low", "medium", "high", "critical"}

func (s Severity) String() string {
	if int(s) < len(severities) {
		return severities[s]
	}
	return "unknown"
}

// Field names of the schema (docs/security-events.md). Callers add the
// ones they know with zerolog's typed methods on the event Event returns.
const (
	FieldSourceIP     = "source_ip"
	FieldPeerID       = "peer_id"
	FieldTokenSubject = "token_subject"
	FieldRequestID    = "request_id"
	FieldMethod       = "method"
	FieldPath         = "path"
	FieldReason       = "reason"
)

// timeLayout is RFC 3339 with milliseconds, in UTC.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// Log writes security events. A nil *Log writes nothing.
type Log struct {
	l     zerolog.Logger
	ownID func() string

	mu     sync.Mutex
	sample map[sampleKey]int64 // the second each sampled (name, key) was last written
}

type sampleKey struct {
	name Name
	key  string
}

// maxSampleKeys bounds the sampling table: past it the table starts over,
// so a flood of distinct sources costs at most one event each per second
// and bounded memory.
const maxSampleKeys = 10000

// New writes events to w; ownID is warden's current SPIFFE ID (the
// spiffe_id of every event), nil or "" while it has none.
func New(w io.Writer, ownID func() string) *Log {
	return &Log{l: zerolog.New(w), ownID: ownID}
}

// Event starts an event; the caller adds its fields and calls Send (or
// Msg). It returns nil, on which zerolog's methods do nothing, when l is
// nil.
func (l *Log) Event(name Name, sev Severity) *zerolog.Event {
	if l == nil {
		return nil
	}
	var ts [len(timeLayout) + 8]byte
	e := l.l.Log().Bytes("time", time.Now().UTC().AppendFormat(ts[:0], timeLayout)).
		Str("event_type", "security").Str("event", string(name)).Str("severity", sev.String())
	if l.ownID != nil {
		if id := l.ownID(); id != "" {
			e = e.Str("spiffe_id", id)
		}
	}
	return e
}

// Sampled is Event for the events written at most once per key (a source
// IP) per second: rate_limited and tls_handshake_failed. It returns nil
// when one was written for (name, key) in the current second.
func (l *Log) Sampled(name Name, sev Severity, key string) *zerolog.Event {
	if l == nil {
		return nil
	}
	now := time.Now().Unix()
	k := sampleKey{name, key}
	l.mu.Lock()
	if last, ok := l.sample[k]; ok && last == now {
		l.mu.Unlock()
		return nil
	}
	if l.sample == nil || len(l.sample) >= maxSampleKeys {
		l.sample = make(map[sampleKey]int64)
	}
	l.sample[k] = now
	l.mu.Unlock()
	return l.Event(name, sev)
}
