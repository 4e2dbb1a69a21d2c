package config

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/warden-sidecar/warden/internal/appprobe"
	"github.com/warden-sidecar/warden/internal/redact"
)

// parser reads variables and keeps the first error, so that each setter
// of the table is one line.
type parser struct {
	lookup     func(string) (string, bool)
	noFS       bool // Validate: files named by variables are not checked
	fixedPorts bool // warden init: listen ports go into rules, so not 0
	err        error
}

// Env is how the configuration reads the environment: a lookup such as
// os.LookupEnv, which tells an unset variable from an empty one, or a
// getenv function such as os.Getenv, with which an empty value counts as
// unset (the default).
type Env interface {
	func(string) (string, bool) | func(string) string
}

func lookupOf[E Env](env E) func(string) (string, bool) {
	switch f := any(env).(type) {
	case func(string) (string, bool):
		return f
	case func(string) string:
		return func(name string) (string, bool) {
			v := f(name)
			return v, v != ""
		}
	}
	panic("config: unreachable: Env is one of two function types")
}

func newParser[E Env](env E) *parser {
	return &parser{lookup: lookupOf(env)}
}

// raw is the trimmed value of a variable; unset or blank, its default,
// unless the variable gives an explicitly empty value a meaning (Var.Empty).
func (p *parser) raw(name string) string {
	v, set := p.lookup(name)
	if v = strings.TrimSpace(v); v != "" {
		return v
	}
	if set && byName[name].Empty != "" {
		return ""
	}
	return Default(name)
}

// set says whether a variable is set to something other than blanks.
func (p *parser) set(name string) bool {
	v, _ := p.lookup(name)
	return strings.TrimSpace(v) != ""
}

func (p *parser) fail(name, value, expected string) {
	p.failWith(invalid(name, value, expected))
}

func (p *parser) failWith(err *Error) {
	if p.err == nil {
		p.err = err
	}
}

func (p *parser) str(name string) string {
	return p.raw(name)
}

func (p *parser) oneOf(name string, allowed ...string) string {
	v := p.raw(name)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	p.fail(name, v, "one of "+strings.Join(allowed, ", "))
	return ""
}

func (p *parser) boolean(name string) bool {
	return p.oneOf(name, "true", "false") == "true"
}

func (p *parser) duration(name string) time.Duration {
	v := p.raw(name)
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.fail(name, v, "a positive duration such as 30s or 1m")
		return 0
	}
	return d
}

func (p *parser) nonNegativeDuration(name string) time.Duration {
	v := p.raw(name)
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		p.fail(name, v, "a duration such as 30s, or 0s")
		return 0
	}
	return d
}

// list splits a comma-separated value, dropping empty items.
func (p *parser) list(name string) []string {
	var out []string
	for _, item := range strings.Split(p.raw(name), ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func (p *parser) positiveInt(name string) int {
	v := p.raw(name)
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		p.fail(name, v, "a positive integer")
		return 0
	}
	return n
}

// headerBytes is WARDEN_MAX_HEADER_BYTES: room for at least a few headers.
func (p *parser) headerBytes(name string) int {
	n := p.positiveInt(name)
	if n > 0 && n < 1024 {
		p.fail(name, p.raw(name), "a size of at least 1024 bytes")
	}
	return n
}

// maxRate bounds rates and bursts: the kernel keeps them as 32-bit counts.
const maxRate = 1_000_000_000

func (p *parser) rate(name string) int {
	v := p.raw(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > maxRate {
		p.fail(name, v, "a whole number from 0 (unlimited) to 1000000000")
		return 0
	}
	return n
}

func (p *parser) nonNegativeInt(name string) int {
	v := p.raw(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		p.fail(name, v, "a whole number, 0 or more")
		return 0
	}
	return n
}

// ratio accepts a decimal number from 0 to 1.
func (p *parser) ratio(name string) float64 {
	v := p.raw(name)
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f >= 0 && f <= 1) { // NaN fails both
		p.fail(name, v, "a number from 0 to 1, e.g. 0.1")
		return 0
	}
	return f
}

// file accepts an empty value or a readable regular file.
func (p *parser) file(name string) string {
	v := p.raw(name)
	if v == "" || p.noFS {
		return v
	}
	if info, err := os.Stat(v); err != nil || !info.Mode().IsRegular() {
		p.fail(name, v, "a readable file")
	}
	return v
}

// absPath is an absolute path, or empty; whether it exists is for the
// part that uses it to say.
func (p *parser) absPath(name string) string {
	v := p.raw(name)
	if v == "" {
		return ""
	}
	if !filepath.IsAbs(v) {
		p.fail(name, v, "an absolute path")
	}
	return filepath.Clean(v)
}

// fastPathCgroup is an absolute path, FastPathCgroupPod or empty.
func (p *parser) fastPathCgroup(name string) string {
	if v := p.raw(name); v == FastPathCgroupPod {
		return v
	} else if v != "" && !filepath.IsAbs(v) {
		p.fail(name, v, "an absolute path or "+FastPathCgroupPod)
		return ""
	}
	return p.absPath(name)
}

var podUIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// podUID is a Kubernetes object UID (a lowercase UUID), or empty.
func (p *parser) podUID(name string) string {
	v := p.raw(name)
	if v != "" && !podUIDPattern.MatchString(v) {
		p.fail(name, v, "a pod UID such as 6f1c2a3b-4d5e-4f60-8a9b-0c1d2e3f4a5b (metadata.uid)")
		return ""
	}
	return v
}

func (p *parser) addr(name string) string {
	v := p.raw(name)
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		p.fail(name, v, "host:port, e.g. 127.0.0.1:8080")
		return ""
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		p.fail(name, v, "an IP address or localhost as host")
		return ""
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.fail(name, v, "a port from 0 to 65535")
		return ""
	}
	return v
}

// listenAddr is an address warden listens on; warden init writes its port
// into the redirect rules, where it cannot be left to the kernel.
func (p *parser) listenAddr(name string) string {
	v := p.addr(name)
	if p.fixedPorts && v != "" && portOf(v) == 0 {
		p.fail(name, v, fixedPort)
	}
	return v
}

// upstreamPort parses a port that replaces the one of addr (itself parsed
// already: "" when it was invalid).
func (p *parser) upstreamPort(name, addr string) (string, int) {
	v := p.raw(name)
	if v == "" {
		return addr, 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		p.fail(name, v, "a port from 1 to 65535 (it replaces the port of WARDEN_UPSTREAM_ADDR)")
		return addr, 0
	}
	if addr == "" {
		return "", n
	}
	host, _, _ := net.SplitHostPort(addr)
	return net.JoinHostPort(host, strconv.Itoa(n)), n
}

// outboundAddr accepts "" or OutboundOff (no listener), or a loopback host:port: the listener
// relays plaintext from the app into mTLS with the pod's identity, so
// anything that can reach it speaks as the pod.
func (p *parser) outboundAddr(name string) string {
	if v := p.raw(name); v == "" || v == OutboundOff {
		return ""
	}
	v := p.addr(name)
	if v == "" {
		return ""
	}
	host, _, _ := net.SplitHostPort(v)
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		p.fail(name, v, "a loopback address such as 127.0.0.1:15001 (anything that reaches the listener speaks with the pod's identity), or "+OutboundOff)
		return ""
	}
	return v
}

// routes parses host=addr|spiffe-id,... Hosts are unique and matched case
// insensitively; addr may name a DNS host (a Service) since it is dialled,
// not bound.
func (p *parser) routes(name string) []Route {
	v := p.raw(name)
	var out []Route
	seen := make(map[string]bool)
	for _, raw := range strings.Split(v, ",") {
		entry := strings.TrimSpace(raw)
		if entry == "" {
			continue
		}
		const form = "host=addr|spiffe-id[;proto=h2], e.g. orders=10.0.0.7:15443|spiffe://example.org/ns/shop/sa/orders"
		host, rest, ok := strings.Cut(entry, "=")
		addr, id, ok2 := strings.Cut(rest, "|")
		// A SPIFFE ID holds no ';', so whatever follows one was never part
		// of a valid route: the parameters extend the syntax without
		// changing what any former route means.
		id, params, _ := strings.Cut(id, ";")
		host, addr, id = strings.ToLower(strings.TrimSpace(host)), strings.TrimSpace(addr), strings.TrimSpace(id)
		if !ok || !ok2 || host == "" {
			p.fail(name, v, "comma-separated "+form+" (at "+strconv.Quote(entry)+")")
			return nil
		}
		if !validRouteHost(host) {
			p.fail(name, v, "a host name, optionally with :port, before '=' (at "+strconv.Quote(entry)+")")
			return nil
		}
		if seen[host] {
			p.fail(name, v, "each host once (host "+strconv.Quote(host)+" repeats)")
			return nil
		}
		seen[host] = true
		h, port, err := net.SplitHostPort(addr)
		if n, perr := strconv.Atoi(port); err != nil || h == "" || perr != nil || n < 1 || n > 65535 {
			p.fail(name, v, "a destination host:port after '=' (at "+strconv.Quote(entry)+")")
			return nil
		}
		sid, err := spiffeid.FromString(id)
		if err != nil {
			p.fail(name, v, "a SPIFFE ID after '|' (at "+strconv.Quote(entry)+": "+err.Error()+")")
			return nil
		}
		proto := RouteHTTP1
		for _, kv := range strings.Split(params, ";") {
			if kv = strings.TrimSpace(kv); kv == "" {
				continue
			}
			k, val, _ := strings.Cut(kv, "=")
			k, val = strings.ToLower(strings.TrimSpace(k)), strings.ToLower(strings.TrimSpace(val))
			if k != "proto" || (val != RouteHTTP1 && val != RouteH2) {
				p.fail(name, v, "route parameters ;proto=h2 or ;proto=http1 after the SPIFFE ID (at "+strconv.Quote(entry)+")")
				return nil
			}
			proto = val
		}
		out = append(out, Route{Host: host, Addr: addr, ID: sid, Proto: proto})
	}
	return out
}

// validRouteHost accepts what can appear in a Host header: a DNS name or
// IPv4 address, or a bracketed IPv6 address, with an optional port.
func validRouteHost(h string) bool {
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 || net.ParseIP(h[1:end]) == nil {
			return false
		}
		h = "x" + h[end+1:]
	}
	name, port, hasPort := strings.Cut(h, ":")
	if hasPort {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return false
		}
	}
	if name == "" {
		return false
	}
	for _, c := range name {
		if !(c == '-' || c == '.' || c == '_' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// iface accepts a Linux interface name (at most 15 bytes, no '/' or space);
// whether it exists is checked when the program attaches.
func (p *parser) iface(name string) string {
	v := p.raw(name)
	if len(v) > 15 || strings.ContainsAny(v, "/ \t:") {
		p.fail(name, v, "an interface name such as eth0 (at most 15 characters)")
		return ""
	}
	return v
}

// otlpEndpoint accepts an empty value or an http(s)://host:port URL.
func (p *parser) otlpEndpoint(name string) string {
	v := p.raw(name)
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		p.fail(name, redact.URL(v), "http://host:port or https://host:port")
		return ""
	}
	return v
}

// Security log destinations besides a file path.
const (
	SyslogUDPScheme = "syslog://"
	SyslogTCPScheme = "syslog+tcp://"
)

// securityLog is stderr, stdout, syslog://host:port, syslog+tcp://host:port
// or a file path whose directory exists.
func (p *parser) securityLog(name string) string {
	v := p.raw(name)
	const expected = "stderr, stdout, a file path, syslog://host:port or syslog+tcp://host:port"
	switch {
	case v == "stderr" || v == "stdout":
		return v
	case strings.HasPrefix(v, SyslogUDPScheme) || strings.HasPrefix(v, SyslogTCPScheme):
		hostport := v[strings.Index(v, "://")+3:]
		host, port, err := net.SplitHostPort(hostport)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 ||
			strings.ContainsAny(host, "/@?#") {
			p.fail(name, v, "a collector as "+v[:strings.Index(v, "://")+3]+"host:port with a port from 1 to 65535")
			return ""
		}
		return v
	case strings.Contains(v, "://"):
		p.fail(name, v, expected)
		return ""
	}
	if p.noFS {
		return v
	}
	if info, err := os.Stat(filepath.Dir(v)); err != nil || !info.IsDir() {
		p.fail(name, v, "a file path in an existing directory (or "+expected+")")
		return ""
	}
	if info, err := os.Stat(v); err == nil && !info.Mode().IsRegular() {
		p.fail(name, v, "a regular file (or "+expected+")")
		return ""
	}
	return v
}

// appProbes accepts WARDEN_APP_PROBES, the app's probes as the webhook
// wrote them (internal/appprobe). The value is shown redacted: a probe's
// headers may carry a credential.
func (p *parser) appProbes(name string) appprobe.Set {
	v := p.raw(name)
	set, err := appprobe.Parse(v)
	if err != nil {
		p.failWith(&Error{Variable: name, Value: appprobe.Redacted(v), err: err,
			Expected: "a JSON object of the app's probes keyed <container>/<probe>, as the webhook writes it"})
		return nil
	}
	return set
}

// inboundProtocols parses WARDEN_INBOUND_PROTOCOLS: a non-empty list of
// "h2" and "http/1.1", each at most once, in the order given (the ALPN
// preference).
func (p *parser) inboundProtocols(name string) []string {
	v := p.raw(name)
	const expected = "a non-empty comma-separated subset of h2, http/1.1"
	var out []string
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item != ProtocolH2 && item != ProtocolHTTP11 || slices.Contains(out, item) {
			p.fail(name, v, expected)
			return nil
		}
		out = append(out, item)
	}
	return out
}
