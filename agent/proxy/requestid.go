package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// MaxRequestIDLen bounds a client-supplied X-Request-Id. Longer ones, or ones
// with characters outside [A-Za-z0-9._:-], are replaced, so the header can
// be logged and put in a JSON body without escaping.
const MaxRequestIDLen = 128

// RequestIDs generates ids as a random per-process prefix and a counter:
// unique without a syscall or an allocation per request.
type RequestIDs struct {
	prefix []byte
	next   atomic.Uint64
}

func NewRequestIDs() *RequestIDs {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	r := &RequestIDs{prefix: make([]byte, 0, 17)}
	r.prefix = hex.AppendEncode(r.prefix, b[:])
	r.prefix = append(r.prefix, '-')
	return r
}

// Append appends a fresh id to dst.
func (r *RequestIDs) Append(dst []byte) []byte {
	dst = append(dst, r.prefix...)
	return strconv.AppendUint(dst, r.next.Add(1), 16)
}

// ValidRequestID reports whether a client-supplied id may be kept.
func ValidRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > MaxRequestIDLen {
		return false
	}
	for _, b := range id {
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		case b == '-', b == '_', b == '.', b == ':':
		default:
			return false
		}
	}
	return true
}
