package config

import (
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/warden-sidecar/warden/agent/signature"
	"github.com/warden-sidecar/warden/agent/token"
	"github.com/warden-sidecar/warden/internal/redact"
)

// The parsers of values that carry security decisions: request headers and
// methods, token verification, policy sources and SPIFFE names.

// jwks accepts "", spiffe, an http(s) URL, or a readable regular file.
func (p *parser) jwks(name string) string {
	if v := p.raw(name); v == JWKSSPIFFE {
		return v
	}
	return p.keySource(name, " or "+JWKSSPIFFE)
}

// keySource accepts "", an http(s) URL, or a readable regular file: a
// JWKS. or names what else the variable takes, for the error.
func (p *parser) keySource(name, or string) string {
	v := p.raw(name)
	expected := "a readable JWKS file, an http:// or https:// JWKS URL" + or
	switch {
	case v == "":
		return v
	case strings.Contains(v, "://"):
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.fail(name, redact.URL(v), expected)
			return ""
		}
		return v
	}
	if p.noFS {
		return v
	}
	if info, err := os.Stat(v); err != nil || !info.Mode().IsRegular() {
		p.fail(name, v, expected)
	}
	return v
}

// signatureComponents accepts a list of RFC 9421 components.
func (p *parser) signatureComponents(name string) []string {
	comps := p.list(name)
	if err := signature.CheckComponents(comps); err != nil {
		p.fail(name, p.raw(name), "comma-separated derived components (@method, @target-uri, @authority, ...) and header names; "+
			strings.TrimPrefix(err.Error(), "signature: "))
		return nil
	}
	return comps
}

// signingKey accepts "", svid, or a readable regular file.
func (p *parser) signingKey(name string) string {
	if v := p.raw(name); v == SigningKeySVID {
		return v
	}
	return p.file(name)
}

// algorithms accepts a comma-separated list of asymmetric JWS algorithms.
func (p *parser) algorithms(name string) []string {
	algs := p.list(name)
	if err := token.CheckAlgorithms(algs); err != nil {
		p.fail(name, p.raw(name), "comma-separated asymmetric JWS algorithms ("+strings.Join(token.SupportedAlgorithms, ", ")+"); "+
			strings.TrimPrefix(err.Error(), "token: "))
		return nil
	}
	return algs
}

// tokenHeader accepts an HTTP header name that reaches warden's check
// unchanged: not a hop-by-hop header (removed before) nor one warden sets.
func (p *parser) tokenHeader(name string) string {
	v := p.raw(name)
	if v == "" {
		p.fail(name, v, "a header name such as Authorization")
		return ""
	}
	for _, c := range v {
		if !(c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.ContainsRune("!#$%&'*+.^_`|~", c)) {
			p.fail(name, v, "a header name such as Authorization")
			return ""
		}
	}
	switch strings.ToLower(v) {
	case "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer",
		"transfer-encoding", "upgrade", "host", "content-length", "cookie",
		"x-forwarded-client-cert", "x-forwarded-for", "x-forwarded-proto", "x-request-id":
		p.fail(name, v, "a header that reaches warden's check as the client sent it (not hop-by-hop, Host, Cookie or one warden sets)")
		return ""
	}
	return http.CanonicalHeaderKey(v)
}

// headerNames parses a comma-separated list of header names, or none (the
// empty list). Names are returned in canonical form.
func (p *parser) headerNames(name, none string) []string {
	v := p.raw(name)
	if v == none {
		return nil
	}
	names := p.tokens(name, v, "comma-separated header names such as X-Original-URL,Forwarded, or "+none)
	for i, n := range names {
		names[i] = http.CanonicalHeaderKey(n)
	}
	return names
}

// methods parses a comma-separated list of request methods, which are
// case-sensitive tokens (RFC 9110 section 9.1).
func (p *parser) methods(name string) []string {
	v := p.raw(name)
	out := p.tokens(name, v, "comma-separated methods such as GET,POST")
	if len(out) == 0 && p.err == nil {
		p.fail(name, v, "at least one method, such as GET,POST")
	}
	return out
}

// upgradeTokens parses WARDEN_ALLOW_UPGRADE: comma-separated protocol
// names as Upgrade carries them (RFC 9110 section 7.8: a token, optionally
// "/version"), lower-cased, since warden matches them case-insensitively.
// h2c is refused: once the app switched to it, the tunnel would carry
// HTTP/2 requests to the app that warden never decides (h2c smuggling).
func (p *parser) upgradeTokens(name string) []string {
	v := p.raw(name)
	var out []string
	for _, item := range strings.Split(v, ",") {
		item = strings.ToLower(strings.TrimSpace(item))
		if item == "" {
			continue
		}
		proto, version, hasVersion := strings.Cut(item, "/")
		if !isToken(proto) || hasVersion && !isToken(version) {
			p.fail(name, v, "comma-separated Upgrade protocols such as websocket (at "+strconv.Quote(item)+")")
			return nil
		}
		if proto == "h2c" || proto == "h2" {
			p.fail(name, v, "protocols other than h2c and h2, whose tunnel would carry HTTP/2 requests past the policy (at "+strconv.Quote(item)+")")
			return nil
		}
		out = append(out, item)
	}
	return out
}

// tokens splits v on commas into RFC 9110 tokens, dropping empty items.
func (p *parser) tokens(name, v, expected string) []string {
	var out []string
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if !isToken(item) {
			p.fail(name, v, expected+" (at "+strconv.Quote(item)+")")
			return nil
		}
		out = append(out, item)
	}
	return out
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.ContainsRune("!#$%&'*+.^_`|~", c)) {
			return false
		}
	}
	return true
}

// bundleSource accepts an http(s) URL, or a directory or .tar.gz file that
// exists now: a typo'd path is caught at startup, not at the first poll.
func (p *parser) bundleSource(name string) string {
	v := p.raw(name)
	if v == "" {
		return ""
	}
	if strings.Contains(v, "://") {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.fail(name, v, "an http:// or https:// URL, a directory or a .tar.gz file")
			return ""
		}
		return v
	}
	if p.noFS {
		return v
	}
	info, err := os.Stat(v)
	switch {
	case err != nil:
		p.fail(name, v, "an existing directory or .tar.gz file ("+err.Error()+")")
	case !info.IsDir() && !strings.HasSuffix(v, ".tar.gz") && !strings.HasSuffix(v, ".tgz"):
		p.fail(name, v, "a directory or a file ending in .tar.gz")
	}
	return v
}

// rulePath accepts a Rego rule path such as warden/authz/allow.
func (p *parser) rulePath(name string) string {
	v := strings.Trim(p.raw(name), "/")
	ok := v != ""
	for _, seg := range strings.Split(v, "/") {
		if seg == "" {
			ok = false
		}
		for i, c := range seg {
			if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
				ok = false
			}
		}
	}
	if !ok {
		p.fail(name, v, "a rule path such as warden/authz/allow")
		return ""
	}
	return v
}

func (p *parser) spiffeID(name string) spiffeid.ID {
	v := p.raw(name)
	id, err := spiffeid.FromString(v)
	if err != nil {
		p.fail(name, v, "a SPIFFE ID such as spiffe://example.org/ns/default/sa/app ("+err.Error()+")")
	}
	return id
}

func (p *parser) trustDomain(name string) spiffeid.TrustDomain {
	v := p.raw(name)
	if v == "" {
		return spiffeid.TrustDomain{}
	}
	td, err := spiffeid.TrustDomainFromString(v)
	if err != nil {
		p.fail(name, v, "a trust domain name such as example.org ("+err.Error()+")")
	}
	return td
}
