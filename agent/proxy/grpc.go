package proxy

// gRPC over the HTTP/2 path: what makes a request a gRPC call, its service
// and method for the policy (input.grpc), its deadline (grpc-timeout), and
// warden's refusals as gRPC statuses rather than HTTP ones, since a gRPC
// client reads only grpc-status.

import (
	"net/http"
	"strconv"
	"time"
)

// isGRPC reports whether a Content-Type is gRPC's: application/grpc, or
// application/grpc followed by "+" (a codec, +proto, +json) or ";".
func isGRPC(contentType string) bool {
	const prefix = "application/grpc"
	if len(contentType) < len(prefix) || !asciiEqualFold(contentType[:len(prefix)], prefix) {
		return false
	}
	rest := contentType[len(prefix):]
	return rest == "" || rest[0] == '+' || rest[0] == ';'
}

func asciiEqualFold(a, b string) bool {
	return len(a) == len(b) && equalFold([]byte(a), []byte(b))
}

// grpcPath splits a gRPC request's normalized path "/pkg.Service/Method"
// into its service and method. Anything else (fewer or more segments, an
// empty one) is no gRPC call: ok is false and the request gets
// INVALID_ARGUMENT.
func grpcPath(path []byte) (service, method []byte, ok bool) {
	if len(path) < 4 || path[0] != '/' {
		return nil, nil, false
	}
	rest := path[1:]
	slash := indexByte(rest, '/')
	if slash <= 0 || slash == len(rest)-1 || indexByte(rest[slash+1:], '/') >= 0 {
		return nil, nil, false
	}
	return rest[:slash], rest[slash+1:], true
}

// grpcTimeout parses a grpc-timeout value: at most 8 digits and a unit
// (H, M, S, m, u, n), per gRPC's PROTOCOL-HTTP2. ok is false for anything
// else, which leaves the deadline at WARDEN_UPSTREAM_TIMEOUT.
func grpcTimeout(v string) (d time.Duration, ok bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseUint(v[:len(v)-1], 10, 64)
	if err != nil {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	if n > uint64(1<<62)/uint64(unit) {
		return 1 << 62, true // beyond any cap: WARDEN_UPSTREAM_TIMEOUT applies
	}
	return time.Duration(n) * unit, true
}

// gRPC status codes warden answers with (google.golang.org/grpc/codes).
const (
	grpcUnknown           = 2
	grpcInvalidArgument   = 3
	grpcDeadlineExceeded  = 4
	grpcPermissionDenied  = 7
	grpcResourceExhausted = 8
	grpcUnimplemented     = 12
	grpcInternal          = 13
	grpcUnavailable       = 14
	grpcUnauthenticated   = 16
)

// GRPCStatus is the gRPC status of a refusal warden would answer with an
// HTTP status. The contract names 403, 401, 429, 400, 502, 503 and
// 504; the other request errors (404 from OpenAPI, 405, 413, 415, 431,
// 505) are the request's own fault like 400, so INVALID_ARGUMENT; 500 is
// INTERNAL and 501 UNIMPLEMENTED as in gRPC's HTTP-to-gRPC mapping, and any
// other status UNKNOWN.
func GRPCStatus(httpStatus int) int {
	switch httpStatus {
	case http.StatusForbidden:
		return grpcPermissionDenied
	case http.StatusUnauthorized:
		return grpcUnauthenticated
	case http.StatusTooManyRequests:
		return grpcResourceExhausted
	case http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge,
		http.StatusUnsupportedMediaType, http.StatusRequestHeaderFieldsTooLarge, http.StatusHTTPVersionNotSupported:
		return grpcInvalidArgument
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return grpcUnavailable
	case http.StatusGatewayTimeout:
		return grpcDeadlineExceeded
	case http.StatusInternalServerError:
		return grpcInternal
	case http.StatusNotImplemented:
		return grpcUnimplemented
	}
	return grpcUnknown
}

// writeGRPCRefusal answers a gRPC call in warden's stead: HTTP 200 with
// grpc-status and grpc-message and no message, which Go's HTTP/2 server
// sends as one HEADERS frame ending the stream (gRPC's "trailers-only"
// response). The message is warden's error code, as in the JSON body of
// other refusals: ASCII without '%', so it needs no percent-encoding.
func writeGRPCRefusal(w http.ResponseWriter, status int, code string, requestID []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/grpc"}
	h["Grpc-Status"] = []string{strconv.Itoa(GRPCStatus(status))}
	h["Grpc-Message"] = []string{code}
	h[HeaderRequestID] = []string{string(requestID)}
	w.WriteHeader(http.StatusOK)
}
