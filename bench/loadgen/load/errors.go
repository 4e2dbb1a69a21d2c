package load

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/valyala/fasthttp"
)

// kind is the class of a failed request, other than an unexpected status.
type kind uint8

const (
	kindTimeout kind = iota
	kindConnRefused
	kindConnReset
	kindTLSHandshake
	kindOther
	numKinds
)

// kindNames are the keys of Result.ErrorsByKind; an unexpected status N is
// counted as "status_N".
var kindNames = [numKinds]string{
	kindTimeout:      "timeout",
	kindConnRefused:  "conn_refused",
	kindConnReset:    "conn_reset",
	kindTLSHandshake: "tls_handshake",
	kindOther:        "other",
}

// dialError marks a failure to open the TCP connection.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// handshakeError marks a failure of the client side of the TLS handshake.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "tls handshake: " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// classify maps a request error to its kind. The order matters: a timeout
// is a timeout wherever it happened; a reset inside the handshake is a
// handshake failure.
func classify(err error) kind {
	var ne net.Error
	var he *handshakeError
	switch {
	case errors.Is(err, fasthttp.ErrTimeout),
		errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, fasthttp.ErrTLSHandshakeTimeout),
		errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return kindTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return kindConnRefused
	case errors.As(err, &he), isTLSAlert(err):
		return kindTLSHandshake
	case errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE),
		errors.Is(err, fasthttp.ErrConnectionClosed),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF):
		return kindConnReset
	}
	return kindOther
}

// isTLSAlert reports an alert received from the server. With TLS 1.3 the
// client's handshake completes before the server has checked the client
// certificate, so a refused certificate arrives as an alert on the first
// read, after the request was written.
func isTLSAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}
