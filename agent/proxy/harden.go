package proxy

import (
	"strings"

	"github.com/valyala/fasthttp"
)

// Request hardening: every check here closes a place where warden's reading
// of a request and the app's could differ, so that the policy would decide
// on one request and the app serve another. Each runs before the policy and
// before any byte reaches the app.

// Underscores says what happens to header names containing '_'. CGI, WSGI,
// Rack and PHP turn '-' into '_' when they map headers to variables, so
// X_Forwarded_Client_Cert reaches such an app as X-Forwarded-Client-Cert.
type Underscores uint8

const (
	UnderscoresDrop   Underscores = iota // removed before policy and app (nginx's default)
	UnderscoresReject                    // 400
	UnderscoresAllow                     // forwarded
)

// Hardening configures the request checks. The zero value is the strictest
// setting but for StripHeaders, AllowedMethods and MaxHeaders, which are
// unbounded when empty or zero.
type Hardening struct {
	// AllowGetBody forwards a body on GET, HEAD, OPTIONS and TRACE. Off, such
	// a request gets 400: an app that ignores the body (most do) would read
	// it as the next request on its connection (CL.0 desync).
	AllowGetBody bool
	// KeepSemicolons forwards a raw ';' in the path. Off, any ';' gets 400:
	// servlet containers strip ";params" from segments, so "/;/admin" and
	// "/secret;x=1" reach resources the policy never saw named.
	KeepSemicolons bool
	Underscores    Underscores
	// StripHeaders are removed before policy and app (routing overrides such
	// as X-Original-URL that frameworks honour).
	StripHeaders []string
	// AllowMethodOverride forwards X-HTTP-Method-Override and its twins;
	// off, they get 400, since the app would run another method than the
	// one the policy decided on.
	AllowMethodOverride bool
	// AllowedMethods are the methods served; others get 405 with Allow.
	AllowedMethods []string
	// MaxHeaders bounds the header lines of a request; more gets 431.
	MaxHeaders int
}

// headerClass marks the header names the scan acts on.
type headerClass uint8

const (
	classStrip headerClass = 1 << iota
	classOverride
	classContentLength
	classTransferEncoding
	classRequestID
	classXFF
)

// hardening is Hardening compiled for the request path.
type hardening struct {
	Hardening
	classes map[string]headerClass // lower-case name → class
	methods map[string]struct{}
	allow   string // the Allow header of a 405
}

// maxClassName is the longest name a class can hold; longer names are not
// looked up.
const maxClassName = 64

func newHardening(h Hardening) *hardening {
	c := &hardening{Hardening: h, classes: make(map[string]headerClass)}
	add := func(name string, cl headerClass) {
		name = strings.ToLower(name)
		if len(name) <= maxClassName {
			c.classes[name] |= cl
		}
	}
	for _, n := range h.StripHeaders {
		add(n, classStrip)
	}
	if !h.AllowMethodOverride {
		for _, n := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
			add(n, classOverride)
		}
	}
	add("Content-Length", classContentLength)
	add("Transfer-Encoding", classTransferEncoding)
	add(HeaderRequestID, classRequestID)
	add(headerXFF, classXFF)
	if len(h.AllowedMethods) > 0 {
		c.methods = make(map[string]struct{}, len(h.AllowedMethods))
		for _, m := range h.AllowedMethods {
			c.methods[m] = struct{}{}
		}
		c.allow = strings.Join(h.AllowedMethods, ", ")
	}
	return c
}

// refusal is a request check's answer: the status and the error code of
// the JSON body, and why (for the log; never sent).
type refusal struct {
	status int
	code   string
	reason string
}

var (
	refuseObsFold     = &refusal{fasthttp.StatusBadRequest, "bad_request", "obsolete line folding"}
	refuseHeaderName  = &refusal{fasthttp.StatusBadRequest, "bad_request", "header name is not a token"}
	refuseUnderscore  = &refusal{fasthttp.StatusBadRequest, "bad_request", "header name with an underscore"}
	refuseOverride    = &refusal{fasthttp.StatusBadRequest, "bad_request", "method override header"}
	refuseCLTE        = &refusal{fasthttp.StatusBadRequest, "bad_request", "both Content-Length and Transfer-Encoding"}
	refuseTooMany     = &refusal{fasthttp.StatusRequestHeaderFieldsTooLarge, "headers_too_large", "too many header lines"}
	refuseVersion     = &refusal{fasthttp.StatusHTTPVersionNotSupported, "http_version_not_supported", "HTTP version other than 1.0 and 1.1"}
	refuseMethod      = &refusal{fasthttp.StatusMethodNotAllowed, "method_not_allowed", "method not allowed"}
	refuseHost        = &refusal{fasthttp.StatusBadRequest, "bad_request", "Host is not host[:port]"}
	refuseMissingHost = &refusal{fasthttp.StatusBadRequest, "bad_request", "HTTP/1.1 request without Host"}
	refuseAuthority   = &refusal{fasthttp.StatusBadRequest, "bad_request", "absolute-form target names another authority than Host"}
	refuseGetBody     = &refusal{fasthttp.StatusBadRequest, "bad_request", "body on a method without body semantics"}
)

// scan reads the raw header block once, as the app's parser would see it,
// and records in c what the request path acts on: the names to delete, the
// X-Forwarded-For values and the number of X-Request-Id headers. It refuses
// what two parsers could read differently. raw is fasthttp's copy of the
// header block, lines as sent (CRLF or bare LF), ending with the empty line.
func (hd *hardening) scan(raw []byte, c *conn) *refusal {
	c.del = c.del[:0]
	c.xff = c.xff[:0]
	c.requestIDs = 0
	var lower [maxClassName]byte
	var seen headerClass
	lines := 0
	for len(raw) > 0 {
		end := indexByte(raw, '\n')
		var line []byte
		if end < 0 {
			line, raw = raw, nil
		} else {
			line, raw = raw[:end], raw[end+1:]
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			break // the end of the header block
		}
		if line[0] == ' ' || line[0] == '\t' {
			// A continuation line: fasthttp joins it to the previous value,
			// other parsers start a new header or refuse (RFC 9112 5.2).
			return refuseObsFold
		}
		if lines++; hd.MaxHeaders > 0 && lines > hd.MaxHeaders {
			return refuseTooMany
		}
		colon := indexByte(line, ':')
		if colon <= 0 {
			return refuseHeaderName
		}
		name, value := line[:colon], line[colon+1:]
		underscore := false
		for _, b := range name {
			if !tokenChar[b] {
				return refuseHeaderName
			}
			if b == '_' {
				underscore = true
			}
		}
		if underscore {
			switch hd.Underscores {
			case UnderscoresReject:
				return refuseUnderscore
			case UnderscoresDrop:
				c.del = append(c.del, name)
				continue
			}
		}
		if len(name) > maxClassName {
			continue
		}
		for i, b := range name {
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			lower[i] = b
		}
		cl := hd.classes[string(lower[:len(name)])]
		if cl == 0 {
			continue
		}
		seen |= cl
		switch {
		case cl&classOverride != 0:
			return refuseOverride
		case cl&classStrip != 0:
			c.del = append(c.del, name)
		case cl&classRequestID != 0:
			c.requestIDs++
		case cl&classXFF != 0:
			if v := trimOWS(value); len(v) > 0 {
				c.xff = append(c.xff, v)
			}
		}
	}
	if seen&classContentLength != 0 && seen&classTransferEncoding != 0 {
		// RFC 9112 6.3 lets a server go by Transfer-Encoding; in practice the
		// pair is a smuggling attempt against a parser that goes by the other.
		return refuseCLTE
	}
	return nil
}

// checkRequestLine refuses versions and methods warden does not serve.
func (hd *hardening) checkRequestLine(h *fasthttp.RequestHeader) *refusal {
	if p := h.Protocol(); string(p) != "HTTP/1.1" && string(p) != "HTTP/1.0" {
		return refuseVersion
	}
	if hd.methods != nil {
		if _, ok := hd.methods[string(h.Method())]; !ok {
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
	host := h.Host()
	if len(host) == 0 {
		if !h.IsHTTP11() {
			return nil // HTTP/1.0 may omit it
		}
		return refuseMissingHost
	}
	if !validHost(host) {
		return refuseHost
	}
	target := h.RequestURI()
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
	if hd.AllowGetBody {
		return nil
	}
	if !h.IsGet() && !h.IsHead() && !h.IsOptions() && !h.IsTrace() {
		return nil
	}
	// -1: chunked; -2: neither length nor chunked, which for a request means
	// no body at all.
	if n := h.ContentLength(); n > 0 || n == -1 {
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

// tokenChar marks the bytes of an RFC 9110 token.
var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func hasPrefixFold(b, lowerPrefix []byte) bool {
	return len(b) >= len(lowerPrefix) && equalFold(b[:len(lowerPrefix)], lowerPrefix)
}

func equalFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
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
	host := h.Host()
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
		return buf
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
	h.SetHostBytes(buf)
	return buf
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
