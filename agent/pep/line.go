package pep

import (
	"time"

	"github.com/rs/zerolog"
)

// Line is a request's decision log line held open until the response is
// known, so that one line per request carries both the decision and what
// the client got (WARDEN_ACCESS_LOG=combined). The protocol path owns it
// (in its per-request state) and hands it to Check in Request.Line; the
// Checker that writes a decision line Holds it there instead of sending
// it; the protocol path Finishes it once the response is out, or, when
// the Checker held nothing (no decision line: a refusal before the
// policy, a sampled-out cached decision), writes its own access line.
//
// The zero Line holds nothing. Holding and finishing allocate nothing:
// the line's buffer is the zerolog event's own, pooled by zerolog.
type Line struct {
	e, w      *zerolog.Event // the line, and its unterminated "warden" object
	hasStatus bool           // w has its "status" already (a refusal's)
}

// Hold keeps the line e, whose "warden" object w is still open, until
// Finish. hasStatus says that w holds a "status" already: the refusal's,
// which is what the client gets.
func (l *Line) Hold(e, w *zerolog.Event, hasStatus bool) {
	l.Flush() // never lose a line a path did not finish
	l.e, l.w, l.hasStatus = e, w, hasStatus
}

// Held reports whether a line waits for Finish.
func (l *Line) Held() bool { return l.e != nil }

// Finish adds the response's fields to the held line's "warden" object
// and writes it: status (unless the refusal's is there), duration_s from
// the request's start to the end of its answer, bytes_in, bytes_out and
// client_ip. It does nothing when no line is held.
func (l *Line) Finish(status int, took time.Duration, bytesIn, bytesOut int, clientIP string) {
	if l.e == nil {
		return
	}
	w := l.w
	if !l.hasStatus {
		w.Int("status", status)
	}
	w.Float64("duration_s", took.Seconds()).Int("bytes_in", bytesIn).Int("bytes_out", bytesOut).
		Str("client_ip", clientIP)
	l.e.Dict("warden", w).Send()
	*l = Line{}
}

// Flush writes a held line without the response's fields: for a request
// whose protocol path ended it without an answer to report (the
// connection went away). It does nothing when no line is held.
func (l *Line) Flush() {
	if l.e == nil {
		return
	}
	l.e.Dict("warden", l.w).Send()
	*l = Line{}
}
