package proxy

// The request checks beyond the header block: the request line, Host, a
// body where none is meant, trailer fields and the query.

import "github.com/valyala/fasthttp"

// checkRequestLine refuses versions and methods warden does not serve.
func (hd *hardening) checkRequestLine(h *fasthttp.RequestHeader) *refusal {
	if p := h.Protocol(); string(p) != "HTTP/1.1" && string(p) != "HTTP/1.0" {
		return refuseVersion
	}
	return hd.checkMethod(h.Method())
}

// checkMethod refuses methods outside WARDEN_ALLOWED_METHODS, whatever the
// protocol.
func (hd *hardening) checkMethod(m []byte) *refusal {
	if hd.methods != nil {
		if _, ok := hd.methods[string(m)]; !ok {
			return refuseMethod
		}
	}
	return nil
}

var (
	prefixHTTP  = []byte("http://")
	prefixHTTPS = []byte("https://")
)

// checkHost refuses a Host that is not host[:port] (userinfo, a path,
// spaces: fasthttp would read "x@admin.internal" as user x at host
// admin.internal, and send the app that host and invented credentials), a
// missing Host on HTTP/1.1 (fasthttp refuses that already; kept so the
// contract does not depend on it), and an absolute-form target whose
// authority is not Host (the app may route by either).
func (hd *hardening) checkHost(h *fasthttp.RequestHeader) *refusal {
	return hd.checkHostTarget(h.Host(), h.RequestURI(), h.IsHTTP11())
}

// checkHostTarget is checkHost on the protocol's own fields: host is Host
// (HTTP/2: :authority), target the request target as sent, required says
// whether a missing host is refused.
func (hd *hardening) checkHostTarget(host, target []byte, required bool) *refusal {
	if len(host) == 0 {
		if !required {
			return nil // HTTP/1.0 may omit it
		}
		return refuseMissingHost
	}
	if !validHost(host) {
		return refuseHost
	}
	if len(target) > 0 && target[0] != '/' && target[0] != '*' {
		var rest []byte
		switch {
		case hasPrefixFold(target, prefixHTTP):
			rest = target[len(prefixHTTP):]
		case hasPrefixFold(target, prefixHTTPS):
			rest = target[len(prefixHTTPS):]
		default:
			return refuseAuthority
		}
		end := 0
		for end < len(rest) && rest[end] != '/' && rest[end] != '?' && rest[end] != '#' {
			end++
		}
		if !equalFold(rest[:end], host) {
			return refuseAuthority
		}
	}
	return nil
}

// checkBody refuses a body on the methods whose bodies have no defined
// meaning: an app that ignores it would parse it as another request.
func (hd *hardening) checkBody(h *fasthttp.RequestHeader) *refusal {
	// -1: chunked; -2: neither length nor chunked, which for a request means
	// no body at all.
	n := h.ContentLength()
	return hd.checkBodyless(h.Method(), n > 0 || n == -1)
}

// checkBodyless is checkBody for any protocol: hasBody says whether the
// request carries content.
func (hd *hardening) checkBodyless(method []byte, hasBody bool) *refusal {
	if hd.AllowGetBody || !hasBody {
		return nil
	}
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return refuseGetBody
	}
	return nil
}

// validHost accepts host[:port]: a DNS name or IPv4 address of letters,
// digits, '-', '.' and '_', or a bracketed IPv6 address, and an optional
// port of up to five digits.
func validHost(h []byte) bool {
	i := 0
	if len(h) > 0 && h[0] == '[' {
		end := indexByte(h, ']')
		if end < 2 {
			return false
		}
		for _, b := range h[1:end] {
			if !(b == ':' || b == '.' || '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F') {
				return false
			}
		}
		i = end + 1
	} else {
		for i < len(h) && h[i] != ':' {
			b := h[i]
			if !(b == '-' || b == '.' || b == '_' || '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z') {
				return false
			}
			i++
		}
		if i == 0 || h[0] == '.' || i >= 2 && h[i-1] == '.' && h[i-2] == '.' {
			return false // "", ".x" or "x.." names nothing
		}
	}
	if i == len(h) {
		return true
	}
	if h[i] != ':' {
		return false
	}
	port := h[i+1:]
	if len(port) == 0 || len(port) > 5 {
		return false
	}
	for _, b := range port {
		if b < '0' || b > '9' {
			return false
		}
	}
	return true
}

var refuseTrailer = &refusal{fasthttp.StatusBadRequest, "bad_request", "trailer field also sent as a header"}

// dropTrailers discards the trailer fields of a chunked request body, as
// RFC 9110 6.5.1 lets a recipient that removes the chunked coding do.
// fasthttp would otherwise turn them into ordinary headers once the Trailer
// header goes (it is hop-by-hop), after the header block was checked: a
// trailer "X_User" or "X-Original-URL" would reach policy and app. A field
// sent both as a header and as a trailer is refused: which one counts is the
// kind of question warden does not let two parsers answer.
func (hd *hardening) dropTrailers(h *fasthttp.RequestHeader, raw []byte) *refusal {
	t := h.TrailerHeader()
	if len(t) <= 2 {
		return nil // just the final CRLF: no trailer fields
	}
	// t is fasthttp's scratch buffer: copy the names before deleting.
	var names [][]byte
	for len(t) > 0 {
		line, rest := cutLine(t)
		t = rest
		if colon := indexByte(line, ':'); colon > 0 {
			names = append(names, append([]byte(nil), line[:colon]...))
		}
	}
	for _, name := range names {
		if headerIn(raw, name) {
			return refuseTrailer
		}
	}
	for _, name := range names {
		h.DelBytes(name)
	}
	return nil
}

// headerIn reports whether the raw header block has a field named name.
func headerIn(raw, name []byte) bool {
	for len(raw) > 0 {
		line, rest := cutLine(raw)
		raw = rest
		if colon := indexByte(line, ':'); colon > 0 && equalFold(line[:colon], name) {
			return true
		}
	}
	return false
}

// canonicalHost lower-cases Host and drops the trailing dot of its name
// ("ADMIN.internal." is admin.internal), so that the policy and the app see
// the name the app's router will match: nginx, Envoy and most frameworks
// match hosts without regard to case or the root dot. A Host already
// canonical, the common case, is left as it is without copying. buf is
// scratch space, returned for reuse.
func canonicalHost(h *fasthttp.RequestHeader, buf []byte) []byte {
	out, changed := canonicalHostBytes(h.Host(), buf)
	if !changed {
		return buf
	}
	h.SetHostBytes(out)
	return out
}

// canonicalHostBytes is canonicalHost on bytes: it returns the canonical
// form of host in buf and true, or buf unchanged and false when host is
// canonical already.
func canonicalHostBytes(host, buf []byte) ([]byte, bool) {
	nameEnd := len(host)
	if len(host) > 0 && host[0] != '[' {
		if i := indexByte(host, ':'); i >= 0 {
			nameEnd = i
		}
	}
	dirty := nameEnd > 0 && host[nameEnd-1] == '.'
	for _, b := range host {
		if 'A' <= b && b <= 'Z' {
			dirty = true
			break
		}
	}
	if !dirty {
		return buf, false
	}
	buf = buf[:0]
	for i, b := range host {
		if i == nameEnd-1 && b == '.' {
			continue
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		buf = append(buf, b)
	}
	return buf, true
}

var refuseQuerySemicolon = &refusal{fasthttp.StatusBadRequest, "bad_request", "';' in the query"}

// checkQuery refuses a raw ';' in the query unless semicolons are kept:
// some parsers (Rack 2, Python's parse_qs before 3.9.2, Jetty) split pairs
// on it as on '&', others do not, so "?x=1;debug=1" would hide a parameter
// from the policy (input.query) that such an app reads. An encoded ';'
// (%3B) is data to every parser.
func (hd *hardening) checkQuery(q []byte) *refusal {
	if !hd.KeepSemicolons && indexByte(q, ';') >= 0 {
		return refuseQuerySemicolon
	}
	return nil
}
