package config

import (
	"net"
	"strconv"
	"strings"
)

// fixedPort is what warden init expects of a port it writes into the
// redirect rules, where it cannot be left to the kernel.
const fixedPort = "a fixed port from 1 to 65535 (`warden init` writes it into the redirect rules)"

// maxUID is the largest user ID Linux assigns ((uid_t)-1 means "none").
const maxUID = 1<<32 - 2

// Init is the configuration of `warden init`.
type Init struct {
	InboundPort   int   // where redirected traffic goes (port of WARDEN_INBOUND_ADDR)
	AdminPort     int   // never redirected (port of WARDEN_ADMIN_ADDR)
	RedirectPorts []int // nil with AllPorts; never InboundPort or AdminPort, each once
	AllPorts      bool  // WARDEN_REDIRECT_PORTS=*
	ProxyUID      int   // never 0
}

// InitFromEnv reads what `warden init` needs (the variables of Vars read
// ByInit), with the same defaults and errors as the sidecar's
// configuration. Ports the sidecar may leave to the kernel (0) must be
// fixed here: a rule cannot name an ephemeral port.
func InitFromEnv[E Env](env E) (Init, error) {
	p := newParser(env)
	p.fixedPorts = true
	var v values
	p.parse(&v, ByInit)
	if p.err != nil {
		return Init{}, p.err
	}
	return Init{
		InboundPort:   portOf(v.InboundAddr),
		AdminPort:     portOf(v.AdminAddr),
		RedirectPorts: v.RedirectPorts,
		AllPorts:      v.RedirectAll,
		ProxyUID:      v.proxyUID,
	}, nil
}

// redirectPorts parses WARDEN_REDIRECT_PORTS: the app ports `warden init`
// redirects to warden, which the sidecar's kernel limiter must also watch
// (XDP sees a packet before netfilter rewrites its port). c holds the
// addresses parsed before it.
func (p *parser) redirectPorts(name string, c Config) (ports []int, all bool) {
	if p.err != nil {
		return nil, false // the ports it is checked against may be wrong
	}
	inbound, admin := portOf(c.InboundAddr), portOf(c.AdminAddr)
	switch v := p.raw(name); {
	case v == "*":
		return nil, true
	case v == "":
		// The default: the app's own port, as the sidecar reaches it
		// (WARDEN_UPSTREAM_PORT, else the port of WARDEN_UPSTREAM_ADDR),
		// and an error names the variable it came from.
		src, n := "WARDEN_UPSTREAM_PORT", c.UpstreamPort
		if n == 0 {
			src, n = "WARDEN_UPSTREAM_ADDR", portOf(c.UpstreamAddr)
			if n == 0 && p.fixedPorts {
				p.fail(src, c.UpstreamAddr, fixedPort)
				return nil, false
			}
		}
		ports = []int{n}
		p.notWardens(src, p.raw(src), n, inbound, admin)
	default:
		seen := make(map[int]bool)
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 65535 {
				p.fail(name, v, "comma-separated ports from 1 to 65535, or *")
				break
			}
			if seen[n] {
				p.fail(name, v, "each port once ("+strconv.Itoa(n)+" repeats)")
				break
			}
			seen[n] = true
			p.notWardens(name, v, n, inbound, admin)
			ports = append(ports, n)
		}
	}
	return ports, false
}

// notWardens refuses to redirect warden's own ports: the inbound port is
// where traffic is sent (redirecting it is meaningless), and the admin port
// must stay reachable as itself (probes).
func (p *parser) notWardens(name, value string, port, inbound, admin int) {
	var e *Error
	switch port {
	case inbound:
		e = invalid(name, value, "ports other than warden's inbound port "+strconv.Itoa(port)+" (WARDEN_INBOUND_ADDR), where redirected traffic goes")
		e.Related = "WARDEN_INBOUND_ADDR"
	case admin:
		e = invalid(name, value, "ports other than warden's admin port "+strconv.Itoa(port)+" (WARDEN_ADMIN_ADDR), which is never redirected")
		e.Related = "WARDEN_ADMIN_ADDR"
	default:
		return
	}
	p.failWith(e)
}

// portOf is the port of a host:port already validated ("" gives 0).
func portOf(addr string) int {
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return n
}

// uid accepts a non-root user ID: connections of this user skip the
// redirect, so root (the app, often) must never be it.
func (p *parser) uid(name string) int {
	v := p.raw(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxUID {
		p.fail(name, v, "warden's own user ID, from 1 to 4294967294 (not root: that user's connections skip the redirect)")
		return 0
	}
	return n
}
