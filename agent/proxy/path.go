package proxy

import (
	"errors"
	"unicode/utf8"
)

// Errors of NormalizePath: each names an ambiguity an attacker could use to
// make warden's policy and the app disagree on which resource is meant.
var (
	ErrPathNotOrigin     = errors.New("path: not an absolute path")
	ErrPathBadEscape     = errors.New("path: malformed percent-encoding")
	ErrPathEncodedSep    = errors.New("path: encoded '/', '\\', '%', '?', '#' or control character")
	ErrPathBackslash     = errors.New("path: backslash")
	ErrPathControl       = errors.New("path: raw control character, space, '?' or '#'")
	ErrPathAboveRoot     = errors.New("path: '..' above the root")
	ErrPathDotParameters = errors.New("path: dot segment with parameters (';')")
	ErrPathSemicolon     = errors.New("path: ';' (path parameters)")
	ErrPathEncodedSemi   = errors.New("path: encoded ';'")
	ErrPathNotUTF8       = errors.New("path: decoded bytes are not valid UTF-8")
)

// NormalizePath turns a request's raw path (without query) into the one path
// both the policy and the app see. It percent-decodes once, resolves "." and
// ".." segments, and collapses duplicate slashes. It appends the decoded path
// to dec (for the policy input) and the same path, re-encoded where needed,
// to enc (what warden forwards).
//
// Whatever could be read two ways is refused instead of guessed: an encoded
// separator (%2F, %5C, %25, %3F, %23) or control byte, a raw backslash,
// ".." that climbs above the root, decoded bytes that are not valid UTF-8
// (overlong forms such as %c0%ae are how "." used to slip past filters),
// an encoded ';' and, unless keepSemicolons, any ';' at all: servlet
// containers strip ";params" from each segment, so "/;/admin" and
// "/secret;x=1" reach resources the policy never saw named. With
// keepSemicolons a raw ';' is kept (matrix parameters), but dot segments
// with parameters ("/..;/admin", which some containers read as "..") are
// still refused.
func NormalizePath(dec, enc, raw []byte, keepSemicolons bool) ([]byte, []byte, error) {
	if len(raw) == 0 || raw[0] != '/' {
		return dec, enc, ErrPathNotOrigin
	}
	start := len(dec)
	// Decode into dec, segment by segment, resolving dot segments as we go.
	i := 0
	for i < len(raw) {
		// raw[i] == '/': skip runs of slashes.
		for i < len(raw) && raw[i] == '/' {
			i++
		}
		segStart := len(dec)
		dec = append(dec, '/')
		for i < len(raw) && raw[i] != '/' {
			c := raw[i]
			switch {
			case c == '%':
				if i+2 >= len(raw) || unhex(raw[i+1]) < 0 || unhex(raw[i+2]) < 0 {
					return dec[:start], enc, ErrPathBadEscape
				}
				b := byte(unhex(raw[i+1])<<4 | unhex(raw[i+2]))
				if b == '/' || b == '\\' || b == '%' || b == '?' || b == '#' || b < 0x20 || b == 0x7f {
					return dec[:start], enc, ErrPathEncodedSep
				}
				if b == ';' {
					// Decoded, it would be a parameter delimiter to the app,
					// or data that we could only forward re-encoded.
					return dec[:start], enc, ErrPathEncodedSemi
				}
				dec = append(dec, b)
				i += 3
				continue
			case c == '\\':
				return dec[:start], enc, ErrPathBackslash
			case c <= 0x20 || c == 0x7f || c == '?' || c == '#':
				return dec[:start], enc, ErrPathControl
			case c == ';' && !keepSemicolons:
				return dec[:start], enc, ErrPathSemicolon
			}
			dec = append(dec, c)
			i++
		}
		seg := dec[segStart+1:]
		switch {
		case isDot(seg):
			dec = dec[:segStart]
			if i >= len(raw) { // "/a/." means "/a/"
				dec = append(dec, '/')
			}
		case isDotDot(seg):
			dec = dec[:segStart]
			j := len(dec) - 1
			for j >= start && dec[j] != '/' {
				j--
			}
			if j < start {
				return dec[:start], enc, ErrPathAboveRoot
			}
			dec = dec[:j]
			if i >= len(raw) {
				dec = append(dec, '/')
			}
		case hasDotParams(seg):
			return dec[:start], enc, ErrPathDotParameters
		case len(seg) == 0 && i < len(raw):
			dec = dec[:segStart] // an empty segment between slashes
		}
	}
	if len(dec) == start {
		dec = append(dec, '/')
	}
	if !utf8.Valid(dec[start:]) {
		return dec[:start], enc, ErrPathNotUTF8
	}
	for _, b := range dec[start:] {
		if needsEscape(b) {
			enc = append(enc, '%', hexDigits[b>>4], hexDigits[b&15])
		} else {
			enc = append(enc, b)
		}
	}
	return dec, enc, nil
}

func isDot(seg []byte) bool    { return len(seg) == 1 && seg[0] == '.' }
func isDotDot(seg []byte) bool { return len(seg) == 2 && seg[0] == '.' && seg[1] == '.' }

func hasDotParams(seg []byte) bool {
	for i, b := range seg {
		if b == ';' {
			return isDot(seg[:i]) || isDotDot(seg[:i])
		}
	}
	return false
}

// needsEscape reports whether b must be percent-encoded in a path segment
// (RFC 3986: everything but unreserved, sub-delims, ':' and '@', and '/').
func needsEscape(b byte) bool {
	switch {
	case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		return false
	}
	switch b {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@', '/':
		return false
	}
	return true
}

const hexDigits = "0123456789ABCDEF"

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
