package proxy

// The answers warden gives in the app's stead (sanitized JSON errors, 429
// with Retry-After, the refusals of the hardening checks), the log lines
// that go with them, and the one access line per request.

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/internal/redact"
)

// upstreamError maps a client error to the status and code clients see.
func upstreamError(err error) (int, string) {
	var netErr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return fasthttp.StatusGatewayTimeout, "upstream_timeout"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return fasthttp.StatusServiceUnavailable, "upstream_overloaded"
	default:
		return fasthttp.StatusBadGateway, "upstream_unavailable"
	}
}

// handleParseError answers requests fasthttp could not read.
func (s *Server) handleParseError(ctx *fasthttp.RequestCtx, err error) {
	status, code := fasthttp.StatusBadRequest, "bad_request"
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		status, code = fasthttp.StatusRequestHeaderFieldsTooLarge, "headers_too_large"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, code = fasthttp.StatusRequestEntityTooLarge, "body_too_large"
		if c, ok := ctx.Conn().(*conn); ok {
			c.lingerOnClose = true
		}
	}
	c, _ := ctx.Conn().(*conn)
	if c == nil {
		s.reject(ctx, nil, status, code)
		ctx.SetConnectionClose()
		if s.opts.Observer != nil {
			s.opts.Observer.Request(RequestStats{Outcome: OutcomeInvalid, Status: status})
		}
		return
	}
	if !c.ConnectionState().HandshakeComplete {
		// No HTTP was spoken: there is nobody to answer, only a log line.
		s.logHandshakeFailed(c.addr, err)
		ctx.SetConnectionClose()
		return
	}
	if !c.resolved {
		c.resolve(s.opts.OwnID().String(), s.opts.AllowPeer)
	}
	// fasthttp read no request: none of the handler's state is this one's,
	// and its start is unknown.
	c.stage, c.forwarded, c.upstream, c.untimed = "", false, 0, true
	c.line.Flush()
	c.requestID = s.ids.Append(c.requestID[:0])
	// Only the class of the error, the method and the path: fasthttp's
	// message may quote the raw request, credentials included.
	method, path := c.requestLine()
	s.log.Warn().Str("event", "bad_request").Str("error_class", ParseErrorClass(err)).Int("status", status).
		Bytes("method", method).Bytes("raw_path", redact.Path(path)).
		Str("peer_id", c.peerStr).Bytes("request_id", c.requestID).Msg("request refused before proxying")
	s.refuse(ctx, c, OutcomeInvalid, status, code)
	ctx.SetConnectionClose()
}

// ParseErrorClass names what kind of request fasthttp could not read,
// without a byte of it. fasthttp exports types for few of its errors, so the
// rest are told apart by the fixed part of their messages; an unknown one is
// "malformed_request".
func ParseErrorClass(err error) string {
	var small *fasthttp.ErrSmallBuffer
	var chunk fasthttp.ErrBrokenChunk
	switch {
	case errors.As(err, &small):
		return "headers_too_large"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return "body_too_large"
	case errors.As(err, &chunk):
		return "malformed_chunked_body"
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	}
	msg := err.Error()
	for _, c := range parseErrorClasses {
		if strings.Contains(msg, c.text) {
			return c.class
		}
	}
	return "malformed_request"
}

var parseErrorClasses = []struct{ text, class string }{
	{"too many host headers", "duplicate_host"},
	{"missing required host", "missing_host"},
	{"mime header", "malformed_header"},
	{"first line", "malformed_request_line"},
	{"method", "malformed_request_line"},
	{"Content-Length", "malformed_content_length"},
	{"Transfer-Encoding", "malformed_transfer_encoding"},
	{"chunk", "malformed_chunked_body"},
}

// tooManyRequests answers 429 with the seconds until the connection may
// send again (rounded up: Retry-After is whole seconds).
func (s *Server) tooManyRequests(ctx *fasthttp.RequestCtx, c *conn, wait time.Duration) {
	secs := int((wait + time.Second - 1) / time.Second)
	s.logRateLimited(&c.peer, &c.reqState, ctx.Method(), ctx.URI().PathOriginal())
	s.reject(ctx, c, fasthttp.StatusTooManyRequests, "rate_limited")
	ctx.Response.Header.SetCanonical(headerRetryAfter, strconv.AppendInt(c.scratch[:0], int64(max(secs, 1)), 10))
	s.finish(ctx, c, OutcomeRateLimit)
}

// refuse answers with an error instead of the app, and logs the access.
func (s *Server) refuse(ctx *fasthttp.RequestCtx, c *conn, o Outcome, status int, code string) {
	s.reject(ctx, c, status, code)
	s.finish(ctx, c, o)
}

// reject writes the small JSON error body clients get; details stay in the log.
func (s *Server) reject(ctx *fasthttp.RequestCtx, c *conn, status int, code string) {
	var id []byte
	if c != nil {
		id = c.requestID
	} else {
		id = s.ids.Append(nil)
	}
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.Header.SetBytesV(HeaderRequestID, id)
	ctx.Response.ResetBody()
	ctx.Response.AppendBodyString(`{"error":"`)
	ctx.Response.AppendBodyString(code)
	ctx.Response.AppendBodyString(`","request_id":"`)
	ctx.Response.AppendBody(id)
	ctx.Response.AppendBodyString("\"}\n")
}

// finish ends a request that got its answer (o): the Observer is told,
// and the access line written.
func (s *Server) finish(ctx *fasthttp.RequestCtx, c *conn, o Outcome) {
	var took time.Duration
	if t := ctx.Time(); !t.IsZero() {
		took = time.Since(t)
	}
	status := ctx.Response.StatusCode()
	s.observe(&c.reqState, o, status, took)
	if c.span != nil {
		s.endSpan(ctx, c)
	}
	s.access(ctx, c, took)
}

// access writes the one access-log line per request.
func (s *Server) access(ctx *fasthttp.RequestCtx, c *conn, took time.Duration) {
	// Refused before normalization, a request is logged with its raw path.
	path := c.path
	if len(path) == 0 {
		path = ctx.URI().PathOriginal()
	}
	// warden's own answers (refusals) have their body in memory and no
	// Content-Length yet: fasthttp sets it as it writes the response.
	out := ctx.Response.Header.ContentLength()
	if out <= 0 && !ctx.Response.IsBodyStream() {
		out = len(ctx.Response.Body())
	}
	s.accessLine(&c.peer, &c.reqState, ctx.Method(), path, ctx.Response.StatusCode(), took,
		len(ctx.Request.Body()), out)
}

// FasthttpLogger sends fasthttp's own messages to log at debug level: the
// errors they describe (failed handshakes, bad requests) are logged with an
// event name and the request id by the server's handlers. Only the format
// is logged: its arguments may hold bytes of a request, credentials
// included. agent/outbound uses it too.
func FasthttpLogger(log zerolog.Logger) fasthttp.Logger { return fasthttpLogger{log} }

type fasthttpLogger struct{ log zerolog.Logger }

func (l fasthttpLogger) Printf(format string, _ ...any) {
	l.log.Debug().Str("event", "fasthttp").Str("format", format).Send()
}

// refuseRequest answers a request that failed a hardening check, and logs
// why (the reason, the method and the path; never a header value).
func (s *Server) refuseRequest(ctx *fasthttp.RequestCtx, c *conn, r *refusal) {
	s.logRefused(&c.peer, &c.reqState, r, ctx.Method(), ctx.URI().PathOriginal())
	s.reject(ctx, c, r.status, r.code)
	if r == refuseMethod && s.harden.allow != "" {
		ctx.Response.Header.SetCanonical(headerAllow, []byte(s.harden.allow))
	}
	// A client that sent a request two parsers could read differently does
	// not get to send more on this connection, whose framing is in doubt.
	ctx.SetConnectionClose()
	s.finish(ctx, c, OutcomeInvalid)
}

// endSpan ends the request's span with its outcome.
func (s *Server) endSpan(ctx *fasthttp.RequestCtx, c *conn) {
	s.endSpanOf(&c.peer, &c.reqState, ctx.Method(), ctx.Response.StatusCode())
}

// hardeningReason is the input_refused reason of a hardening refusal:
// pep.ReasonHardeningPrefix and a stable code (r.reason is prose, for the
// operator, and goes in detail). Constants: a refusal allocates nothing
// for its reason.
func hardeningReason(r *refusal) string {
	switch r {
	case refuseObsFold:
		return pep.ReasonHardeningPrefix + "obs_fold"
	case refuseHeaderName:
		return pep.ReasonHardeningPrefix + "header_name"
	case refuseUnderscore:
		return pep.ReasonHardeningPrefix + "header_underscore"
	case refuseOverride:
		return pep.ReasonHardeningPrefix + "method_override"
	case refuseCLTE:
		return pep.ReasonHardeningPrefix + "content_length_and_transfer_encoding"
	case refuseTooMany:
		return pep.ReasonHardeningPrefix + "too_many_headers"
	case refuseVersion:
		return pep.ReasonHardeningPrefix + "http_version"
	case refuseMethod:
		return pep.ReasonHardeningPrefix + "method_not_allowed"
	case refuseHost:
		return pep.ReasonHardeningPrefix + "bad_host"
	case refuseMissingHost:
		return pep.ReasonHardeningPrefix + "missing_host"
	case refuseAuthority:
		return pep.ReasonHardeningPrefix + "authority_mismatch"
	case refuseGetBody:
		return pep.ReasonHardeningPrefix + "body_without_semantics"
	case refuseRepeatedContent:
		return pep.ReasonHardeningPrefix + "repeated_content_header"
	case refuseTrailer:
		return pep.ReasonHardeningPrefix + "trailer_as_header"
	case refuseQuerySemicolon:
		return pep.ReasonHardeningPrefix + "query_semicolon"
	case refuseUpgradeNotAllowed:
		return pep.ReasonHardeningPrefix + "upgrade_not_allowed"
	case refuseUpgradeAmbiguous:
		return pep.ReasonHardeningPrefix + "upgrade_ambiguous"
	case refuseUpgradeMethod:
		return pep.ReasonHardeningPrefix + "upgrade_method"
	case refuseUpgradeBody:
		return pep.ReasonHardeningPrefix + "upgrade_body"
	case refuseWebSocketKey:
		return pep.ReasonHardeningPrefix + "websocket_key"
	case refuseWebSocketVersion:
		return pep.ReasonHardeningPrefix + "websocket_version"
	case refuseGRPCPath:
		return pep.ReasonHardeningPrefix + "grpc_path"
	case refuseHostHeader:
		return pep.ReasonHardeningPrefix + "host_header"
	case refuseBodyTooLarge:
		return pep.ReasonHardeningPrefix + "body_too_large"
	case refuseBodyRead:
		return pep.ReasonHardeningPrefix + "body_read"
	}
	return pep.ReasonHardeningPrefix + "request"
}

// pathReason is the input_refused reason of a path NormalizePath refused.
func pathReason(err error) string {
	switch {
	case errors.Is(err, ErrPathNotOrigin):
		return pep.ReasonPathPrefix + "not_origin"
	case errors.Is(err, ErrPathBadEscape):
		return pep.ReasonPathPrefix + "bad_escape"
	case errors.Is(err, ErrPathEncodedSep):
		return pep.ReasonPathPrefix + "encoded_separator"
	case errors.Is(err, ErrPathBackslash):
		return pep.ReasonPathPrefix + "backslash"
	case errors.Is(err, ErrPathControl):
		return pep.ReasonPathPrefix + "control_character"
	case errors.Is(err, ErrPathAboveRoot):
		return pep.ReasonPathPrefix + "above_root"
	case errors.Is(err, ErrPathDotParameters):
		return pep.ReasonPathPrefix + "dot_parameters"
	case errors.Is(err, ErrPathSemicolon):
		return pep.ReasonPathPrefix + "semicolon"
	case errors.Is(err, ErrPathEncodedSemi):
		return pep.ReasonPathPrefix + "encoded_semicolon"
	case errors.Is(err, ErrPathNotUTF8):
		return pep.ReasonPathPrefix + "not_utf8"
	}
	return pep.ReasonPathPrefix + "invalid"
}
