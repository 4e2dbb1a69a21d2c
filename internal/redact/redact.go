package redact

import (
	"net/url"
	"strings"
)

// URL returns what of a URL can be shown: scheme://host/path, without
// userinfo, query or fragment. A value that is not an absolute URL (a file
// path, say) is returned as it is; one that looks like a URL but does not
// parse is replaced whole, since it may hold anything.
func URL(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Scheme == "":
		return "[unparsable URL]"
	case u.Host == "" && u.User == nil && u.Path != "":
		// unix:///run/spire/agent.sock: a socket's path is all there is.
		return u.Scheme + "://" + u.EscapedPath()
	case u.Host == "":
		return "[unparsable URL]"
	}
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}

// credentialWords are the parts of a header or parameter name that say its
// value is a credential, by their first letter: IsCredentialName looks at
// each position of a name once, and compares only the words that could
// start there.
var credentialWords = [256][]string{
	'a': {"auth"},
	'c': {"cookie", "credential"},
	'k': {"key"},
	'p': {"password", "passwd"},
	's': {"secret", "session", "signature"},
	't': {"token"},
	// Sec-WebSocket-Protocol: browsers cannot set Authorization on a
	// WebSocket, so bearer tokens travel as subprotocols (Kubernetes'
	// base64url.bearer.authorization.k8s.io.<token>).
	'w': {"websocket-protocol"},
}

// IsCredentialName reports whether a header or parameter name suggests its
// value is a credential (X-Api-Key, X-Auth-Token, Session-Id, ...). It
// folds ASCII case and allocates nothing; it runs for every header of every
// logged decision, so it reads the name once.
func IsCredentialName(name string) bool {
	for i := 0; i < len(name); i++ {
		for _, w := range credentialWords[lower(name[i])] {
			if hasFoldAt(name, i, w) {
				return true
			}
		}
	}
	return false
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasFoldAt reports whether s holds the lower-case ASCII word w at i,
// ignoring ASCII case in s.
func hasFoldAt(s string, i int, w string) bool {
	if len(s)-i < len(w) {
		return false
	}
	for j := 1; j < len(w); j++ {
		if lower(s[i+j]) != w[j] {
			return false
		}
	}
	return true
}

// secretParams are query parameters whose values are credentials although
// their names do not say so the way IsCredentialName reads them
// (access_token, client_secret, X-Amz-Signature, X-Goog-Credential and
// api_key do).
var secretParams = []string{"jwt", "code", "sig"}

// IsSecretParam reports whether the query parameter name (decoded) holds a
// credential.
func IsSecretParam(name string) bool {
	if IsCredentialName(name) {
		return true
	}
	for _, s := range secretParams {
		if strings.EqualFold(name, s) {
			return true
		}
	}
	return false
}

// Query returns the raw query q with the values of secret parameters
// replaced by REDACTED. Names are percent-decoded before they are judged
// (%61ccess_token is access_token to the app). A query without secrets is
// returned as it is, without allocating.
func Query(q string) string {
	if q == "" || !hasSecret(q) {
		return q
	}
	var b strings.Builder
	b.Grow(len(q))
	first := true
	for pair := range strings.SplitSeq(q, "&") {
		if !first {
			b.WriteByte('&')
		}
		first = false
		name, _, hasValue := strings.Cut(pair, "=")
		if hasValue && IsSecretParam(decodeName(name)) {
			b.WriteString(name)
			b.WriteString("=REDACTED")
			continue
		}
		b.WriteString(pair)
	}
	return b.String()
}

func hasSecret(q string) bool {
	for pair := range strings.SplitSeq(q, "&") {
		if name, _, ok := strings.Cut(pair, "="); ok && IsSecretParam(decodeName(name)) {
			return true
		}
	}
	return false
}

// decodeName percent-decodes a parameter name the way apps do ('+' is a
// space); a malformed escape is kept as it is. Names without '%' or '+' are
// returned without allocating.
func decodeName(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	if d, err := url.QueryUnescape(s); err == nil {
		return d
	}
	return s
}

// Path returns what of a request path or target may be logged: the path
// without query, fragment or path parameters, whose values can be
// credentials (";jsessionid=", an OAuth "#access_token=", a token in a
// "%3F"-encoded query), and without the scheme and authority of an
// absolute-form target, which can hold a password. Parameters are replaced
// by ";REDACTED"; a clean path is returned as it is, without allocating.
func Path[T ~string | ~[]byte](p T) T {
	if i := strings.Index(string(p), "://"); i >= 0 && i < 16 {
		rest := p[i+3:]
		j := 0
		for j < len(rest) && rest[j] != '/' {
			j++
		}
		p = rest[j:]
	}
	end, params := len(p), false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '?' || c == '#':
			end = i
		case c == ';':
			params = true
		case c == '%' && i+2 < len(p):
			switch string(p[i+1 : i+3]) {
			case "3F", "3f", "23":
				end = i
			case "3B", "3b":
				params = true
			}
		}
		if end < len(p) {
			break
		}
	}
	if !params {
		return p[:end]
	}
	out := make([]byte, 0, end+len(";REDACTED"))
	for i := 0; i < end; i++ {
		semi := p[i] == ';'
		if !semi && p[i] == '%' && i+2 < end {
			s := string(p[i+1 : i+3])
			semi = s == "3B" || s == "3b"
		}
		if !semi {
			out = append(out, p[i])
			continue
		}
		out = append(out, ";REDACTED"...)
		for i+1 < end && p[i+1] != '/' {
			i++
		}
	}
	return T(out)
}
