package signature

import (
	"bytes"
	"encoding/base64"
	"unicode/utf8"
)

// appendBase appends the signature base (RFC 9421 section 2.5) of r for
// the covered components and the serialized signature parameters.
func appendBase(b []byte, r *Request, comps []component, params string) ([]byte, *Error) {
	for _, c := range comps {
		b = c.appendIdentifier(b)
		b = append(b, ':', ' ')
		var err *Error
		if c.name[0] == '@' {
			b, err = appendDerived(b, r, c)
		} else {
			b, err = appendField(b, r, c)
		}
		if err != nil {
			return b, err
		}
		b = append(b, '\n')
	}
	b = append(b, `"@signature-params": `...)
	return append(b, params...), nil
}

func cannotDerive(c component, why string) *Error {
	return refuse(ReasonBadSignature, "covered component "+quote(c.String())+" "+why)
}

// appendDerived appends a derived component's value (RFC 9421 2.2).
func appendDerived(b []byte, r *Request, c component) ([]byte, *Error) {
	t := parseTarget(r.RawTarget)
	start := len(b)
	assembled := c.name == "@target-uri" && t.form != formAbsolute
	if (assembled || c.name == "@scheme") && r.Scheme == "" || (assembled || c.name == "@authority") && len(r.Authority) == 0 {
		return b, cannotDerive(c, "needs the scheme and the authority")
	}
	switch c.name {
	case "@method":
		b = append(b, r.Method...)
	case "@target-uri":
		switch t.form {
		case formAbsolute:
			b = append(b, r.RawTarget...)
		case formOrigin, formAsterisk:
			b = appendLower(b, r.Scheme)
			b = append(b, "://"...)
			b = appendAuthority(b, r.Scheme, r.Authority)
			if t.form == formOrigin {
				b = append(b, r.RawTarget...)
			}
		default:
			return b, cannotDerive(c, "cannot be derived from the request-target")
		}
	case "@authority":
		b = appendAuthority(b, r.Scheme, r.Authority)
	case "@scheme":
		b = appendLower(b, r.Scheme)
	case "@request-target":
		b = append(b, r.RawTarget...)
	case "@path":
		if t.form != formOrigin && t.form != formAbsolute {
			return b, cannotDerive(c, "cannot be derived from the request-target")
		}
		if len(t.path) == 0 {
			b = append(b, '/')
		}
		b = append(b, t.path...)
	case "@query":
		if t.form != formOrigin && t.form != formAbsolute {
			return b, cannotDerive(c, "cannot be derived from the request-target")
		}
		b = append(b, '?')
		b = append(b, t.query...)
	case "@query-param":
		var err *Error
		if b, err = appendQueryParam(b, t.query, c); err != nil {
			return b, err
		}
	default:
		return b, cannotDerive(c, "is unknown")
	}
	v := b[start:]
	if len(v) == 0 && c.name != "@query-param" {
		return b, cannotDerive(c, "is empty")
	}
	for _, ch := range v {
		if ch < 0x20 || ch > 0x7e {
			return b, refuse(ReasonMalformed, "covered component "+quote(c.String())+" holds a byte that is not printable ASCII")
		}
	}
	return b, nil
}

// appendLower appends s in lower case (ASCII).
func appendLower[S string | []byte](b []byte, s S) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// appendAuthority appends the authority normalized as RFC 9110 4.2.3 asks:
// host in lower case, the scheme's default port (or an empty one) omitted.
func appendAuthority(b []byte, scheme string, authority []byte) []byte {
	a := authority
	switch {
	case bytes.HasSuffix(a, []byte(":")):
		a = a[:len(a)-1]
	case equalFoldString(scheme, "https") && bytes.HasSuffix(a, []byte(":443")):
		a = a[:len(a)-4]
	case equalFoldString(scheme, "http") && bytes.HasSuffix(a, []byte(":80")):
		a = a[:len(a)-3]
	}
	return appendLower(b, a)
}

func equalFoldString(s, lower string) bool { return equalFold([]byte(s), lower) }

type targetForm int

const (
	formOther    targetForm = iota // authority form (CONNECT) or empty
	formOrigin                     // /path?query
	formAbsolute                   // scheme://authority/path?query
	formAsterisk                   // *
)

type target struct {
	form  targetForm
	path  []byte // without the query
	query []byte // without '?'
}

// parseTarget splits a request-target (RFC 9112 3.2).
func parseTarget(raw []byte) target {
	t := target{}
	switch {
	case len(raw) == 1 && raw[0] == '*':
		t.form = formAsterisk
		return t
	case len(raw) > 0 && raw[0] == '/':
		t.form = formOrigin
	default:
		i := bytes.Index(raw, []byte("://"))
		if i <= 0 {
			return t
		}
		t.form = formAbsolute
		rest := raw[i+3:]
		j := bytes.IndexAny(rest, "/?")
		if j < 0 {
			return t
		}
		raw = rest[j:]
	}
	if q := bytes.IndexByte(raw, '?'); q >= 0 {
		t.path, t.query = raw[:q], raw[q+1:]
	} else {
		t.path = raw
	}
	return t
}

// appendQueryParam appends the value of the one query parameter named
// c.qpName (RFC 9421 2.2.8): the query is parsed as
// application/x-www-form-urlencoded, and names and values are
// percent-encoded again, so "+" and "%20" are one. A name that occurs
// twice, or not at all, is an error; so is one whose decoded bytes are not
// UTF-8 (the URL standard would replace them, which nothing here needs).
func appendQueryParam(b []byte, query []byte, c component) ([]byte, *Error) {
	start := len(b)
	found := false
	for len(query) > 0 {
		var pair []byte
		if i := bytes.IndexByte(query, '&'); i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			pair, query = query, nil
		}
		if len(pair) == 0 {
			continue
		}
		name, value := pair, []byte(nil)
		if i := bytes.IndexByte(pair, '='); i >= 0 {
			name, value = pair[:i], pair[i+1:]
		}
		// The name is re-encoded after the value's place, compared, and cut.
		mark := len(b)
		var ok bool
		if b, ok = appendFormReencoded(b, name); !ok {
			return b, cannotDerive(c, "names a query with bytes that are not UTF-8")
		}
		same := string(b[mark:]) == c.qpName
		b = b[:mark]
		if !same {
			continue
		}
		if found {
			return b[:start], cannotDerive(c, "occurs more than once in the query")
		}
		found = true
		if b, ok = appendFormReencoded(b, value); !ok {
			return b, cannotDerive(c, "has a value whose bytes are not UTF-8")
		}
	}
	if !found {
		return b, cannotDerive(c, "is not in the query")
	}
	return b, nil
}

// appendFormReencoded decodes s as a form-urlencoded name or value ("+"
// is a space, %XX a byte) and appends it percent-encoded with the
// application/x-www-form-urlencoded percent-encode set, a space as %20
// (RFC 9421 2.2.8). It reports false when the decoded bytes are not UTF-8.
func appendFormReencoded(b []byte, s []byte) ([]byte, bool) {
	const hex = "0123456789ABCDEF"
	start := len(b)
	// Decode in place after start, then encode behind it.
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			c = ' '
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			c = unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
		}
		b = append(b, c)
	}
	if !utf8.Valid(b[start:]) {
		return b[:start], false
	}
	decodedEnd := len(b)
	for i := start; i < decodedEnd; i++ {
		c := b[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '*' || c == '-' || c == '.' || c == '_' {
			b = append(b, c)
		} else {
			b = append(b, '%', hex[c>>4], hex[c&0xf])
		}
	}
	n := copy(b[start:], b[decodedEnd:])
	return b[:start+n], true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// appendField appends an HTTP field's value (RFC 9421 2.1): every line of
// that name, trimmed, joined by ", "; with bs each line as a byte sequence
// (2.1.3). A field not in the request is an error, as is a value with
// bytes the base cannot hold (controls, non-ASCII) unless bs wraps it.
func appendField(b []byte, r *Request, c component) ([]byte, *Error) {
	n := 0
	for _, h := range r.Headers {
		if !equalFold(h.Name, c.name) {
			continue
		}
		if n > 0 {
			b = append(b, ',', ' ')
		}
		n++
		v := trimOWS(h.Value)
		if c.bs {
			b = append(b, ':')
			b = base64.StdEncoding.AppendEncode(b, v)
			b = append(b, ':')
			continue
		}
		for _, ch := range v {
			if (ch < 0x20 && ch != '\t') || ch > 0x7e {
				return b, refuse(ReasonMalformed, "covered field "+quote(c.name)+" holds a byte that is not printable ASCII (sign it with bs)")
			}
		}
		b = append(b, v...)
	}
	if n == 0 {
		return b, cannotDerive(c, "is not in the request")
	}
	return b, nil
}

// trimOWS removes leading and trailing spaces and tabs.
func trimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}
