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
	classContentType // a body's type and encoding: at most one line each
	classContentEncoding
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
	add("Content-Type", classContentType)
	add("Content-Encoding", classContentEncoding)
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
	refuseObsFold         = &refusal{fasthttp.StatusBadRequest, "bad_request", "obsolete line folding"}
	refuseHeaderName      = &refusal{fasthttp.StatusBadRequest, "bad_request", "header name is not a token"}
	refuseUnderscore      = &refusal{fasthttp.StatusBadRequest, "bad_request", "header name with an underscore"}
	refuseOverride        = &refusal{fasthttp.StatusBadRequest, "bad_request", "method override header"}
	refuseCLTE            = &refusal{fasthttp.StatusBadRequest, "bad_request", "both Content-Length and Transfer-Encoding"}
	refuseTooMany         = &refusal{fasthttp.StatusRequestHeaderFieldsTooLarge, "headers_too_large", "too many header lines"}
	refuseVersion         = &refusal{fasthttp.StatusHTTPVersionNotSupported, "http_version_not_supported", "HTTP version other than 1.0 and 1.1"}
	refuseMethod          = &refusal{fasthttp.StatusMethodNotAllowed, "method_not_allowed", "method not allowed"}
	refuseHost            = &refusal{fasthttp.StatusBadRequest, "bad_request", "Host is not host[:port]"}
	refuseMissingHost     = &refusal{fasthttp.StatusBadRequest, "bad_request", "HTTP/1.1 request without Host"}
	refuseAuthority       = &refusal{fasthttp.StatusBadRequest, "bad_request", "absolute-form target names another authority than Host"}
	refuseGetBody         = &refusal{fasthttp.StatusBadRequest, "bad_request", "body on a method without body semantics"}
	refuseRepeatedContent = &refusal{fasthttp.StatusBadRequest, "bad_request", "repeated Content-Type or Content-Encoding"}
)

// scan reads the raw header block once, as the app's parser would see it,
// and records in st what the request path acts on: the names to delete, the
// X-Forwarded-For values and the number of X-Request-Id headers. It refuses
// what two parsers could read differently. raw is fasthttp's copy of the
// header block, lines as sent (CRLF or bare LF), ending with the empty line.
func (hd *hardening) scan(raw []byte, st *reqState) *refusal {
	st.del = st.del[:0]
	st.xff = st.xff[:0]
	st.requestIDs = 0
	var fs fieldScan
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
		colon := indexByte(line, ':')
		if colon <= 0 {
			return refuseHeaderName
		}
		if r := hd.field(line[:colon], line[colon+1:], st, &fs); r != nil {
			return r
		}
	}
	if fs.seen&classContentLength != 0 && fs.seen&classTransferEncoding != 0 {
		// RFC 9112 6.3 lets a server go by Transfer-Encoding; in practice the
		// pair is a smuggling attempt against a parser that goes by the other.
		return refuseCLTE
	}
	return nil
}

// fieldScan is what a header scan carries from one field to the next.
type fieldScan struct {
	seen  headerClass
	lines int
	lower [maxClassName]byte // scratch for a name's lower-case form, zeroed once per scan
}

// field checks one header field as either protocol path read it (HTTP/1.1:
// a raw line split at its colon; HTTP/2: a decoded field), and records in
// st what the request path acts on. Both paths call it for every field, so
// that the rules on names, underscores, strip-listed and method-override
// headers, repeated content headers and the header count are one code.
// value may carry the optional whitespace around it.
func (hd *hardening) field(name, value []byte, st *reqState, fs *fieldScan) *refusal {
	if fs.lines++; hd.MaxHeaders > 0 && fs.lines > hd.MaxHeaders {
		return refuseTooMany
	}
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
			st.del = append(st.del, name)
			return nil
		}
	}
	if len(name) > maxClassName {
		return nil
	}
	lower := &fs.lower
	for i, b := range name {
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		lower[i] = b
	}
	cl := hd.classes[string(lower[:len(name)])]
	if cl == 0 {
		return nil
	}
	if cl&(classContentType|classContentEncoding) != 0 && fs.seen&cl != 0 {
		// fasthttp keeps one of them, another parser the other: the
		// body checks would read another type than the app.
		return refuseRepeatedContent
	}
	fs.seen |= cl
	switch {
	case cl&classOverride != 0:
		return refuseOverride
	case cl&classStrip != 0:
		st.del = append(st.del, name)
	case cl&classRequestID != 0:
		st.requestIDs++
	case cl&classXFF != 0:
		if v := trimOWS(value); len(v) > 0 {
			st.xff = append(st.xff, v)
		}
	}
	return nil
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
