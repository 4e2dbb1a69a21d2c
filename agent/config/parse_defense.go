package config

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The parsers of the active defense's variables: decoy paths, block
// durations, exempt networks and the IPv6 block prefix.

// maxBlock is the longest block: blocks must expire by themselves, and the
// rate limiter refuses longer ones (agent/ratelimit.MaxBlock).
const maxBlock = 24 * time.Hour

// honeypotPaths accepts absolute, normalized paths (what the pipeline
// matches: no dot segments, no empty segments, no percent-encoding, no
// query), each exact or a prefix ending in "/*".
func (p *parser) honeypotPaths(name string) []string {
	const expected = "comma-separated absolute paths such as /.env or prefixes such as /actuator/*, normalized (no //, ., .., %, ?, # or * but a final /*)"
	items := p.list(name)
	for _, it := range items {
		path := strings.TrimSuffix(it, "/*")
		if !validDecoyPath(path) {
			p.fail(name, p.raw(name), expected+` (at "`+it+`")`)
			return nil
		}
	}
	return items
}

func validDecoyPath(path string) bool {
	if path == "" || path[0] != '/' || strings.ContainsAny(path, "%?#*;\\") {
		return false
	}
	if path == "/" {
		return true
	}
	for _, seg := range strings.Split(path[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	for _, c := range []byte(path) {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// blockDuration accepts 0 (off) or a duration up to 24h.
func (p *parser) blockDuration(name string) time.Duration {
	v := p.raw(name)
	if v == "0" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > maxBlock {
		p.fail(name, v, "a duration from 0 (off) to 24h, such as 10m")
		return 0
	}
	return d
}

// cidrs accepts comma-separated CIDRs or addresses (a /32 or /128).
func (p *parser) cidrs(name string) []netip.Prefix {
	var out []netip.Prefix
	for _, it := range p.list(name) {
		pr, err := netip.ParsePrefix(it)
		if err != nil {
			a, aerr := netip.ParseAddr(it)
			if aerr != nil || a.Zone() != "" {
				p.fail(name, p.raw(name), `comma-separated CIDRs such as 10.0.0.0/8 or addresses (at "`+it+`")`)
				return nil
			}
			pr = netip.PrefixFrom(a, a.BitLen())
		}
		// An IPv4-mapped prefix would never match: sources are unmapped.
		if pr.Addr().Is4In6() && pr.Bits() >= 96 {
			pr = netip.PrefixFrom(pr.Addr().Unmap(), pr.Bits()-96)
		}
		out = append(out, pr.Masked())
	}
	return out
}

// ipv6Prefix accepts a prefix length from 48 to 128: shorter would block
// whole sites for one host's hit.
func (p *parser) ipv6Prefix(name string) int {
	v := p.raw(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < 48 || n > 128 {
		p.fail(name, v, "a prefix length from 48 to 128, such as 64")
		return 0
	}
	return n
}
