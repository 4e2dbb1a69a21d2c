// Package redact removes credentials from what warden logs or serves: URL
// userinfo and queries (signed URLs carry their signature there), query
// parameters that hold tokens, and header values whose names say they hold
// a credential. It is a leaf package: it imports nothing of warden's.
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
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "[unparsable URL]"
	}
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}

// credentialWords are the parts of a header or parameter name that say its
// value is a credential.
var credentialWords = []string{"auth", "token", "key", "secret", "cookie", "session", "password", "passwd", "signature", "credential"}

// IsCredentialName reports whether a header or parameter name suggests its
// value is a credential (X-Api-Key, X-Auth-Token, Session-Id, ...). It
// folds ASCII case and allocates nothing.
func IsCredentialName(name string) bool {
	for _, w := range credentialWords {
		if containsFold(name, w) {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains the lower-case ASCII word w,
// ignoring ASCII case in s.
func containsFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		j := 0
		for ; j < len(w); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != w[j] {
				break
			}
		}
		if j == len(w) {
			return true
		}
	}
	return false
}

// secretParams are query parameters whose values are credentials although
// their names do not all say so.
var secretParams = []string{
	"access_token", "id_token", "refresh_token", "token", "jwt", "code",
	"api_key", "apikey", "password", "client_secret",
	"x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-goog-signature", "x-goog-credential", "sig",
}

// IsSecretParam reports whether the query parameter name (decoded) holds a
// credential.
func IsSecretParam(name string) bool {
	for _, s := range secretParams {
		if strings.EqualFold(name, s) {
			return true
		}
	}
	return IsCredentialName(name)
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
