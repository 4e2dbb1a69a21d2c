package config

import (
	"net"
	"strconv"
	"strings"
)

// InitVars lists the variables `warden init` reads (the pod's init
// container, which installs the inbound redirect rules). The webhook sets
// them from the same annotations as the sidecar's. `warden init` also reads
// WARDEN_INBOUND_ADDR, WARDEN_ADMIN_ADDR, WARDEN_UPSTREAM_PORT and
// WARDEN_UPSTREAM_ADDR, for their ports only.
var InitVars = []Var{
	{"WARDEN_REDIRECT_PORTS", "", "`warden init`: comma-separated TCP ports of the app whose inbound traffic is redirected to warden's inbound port, or `*` for every TCP port but warden's inbound and admin ports (which a list must not name); empty: the app's port (WARDEN_UPSTREAM_PORT, else the port of WARDEN_UPSTREAM_ADDR)"},
	{"WARDEN_PROXY_UID", "1337", "`warden init`: the user ID warden runs as, not 0; connections this user makes to the pod's own address are not redirected (no loop), everyone else's are"},
}

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

// InitFromEnv reads what `warden init` needs, with the same defaults and
// error form as the sidecar's configuration. Ports the sidecar may leave to
// the kernel (0) must be fixed here: a rule cannot name an ephemeral port.
func InitFromEnv(getenv func(string) string) (Init, error) {
	p := parser{getenv: getenv}
	c := Init{
		InboundPort: p.port("WARDEN_INBOUND_ADDR"),
		AdminPort:   p.port("WARDEN_ADMIN_ADDR"),
		ProxyUID:    p.uid("WARDEN_PROXY_UID"),
	}
	if p.err == nil {
		c.RedirectPorts, c.AllPorts = p.redirectPorts(c.InboundPort, c.AdminPort, p.port)
	}
	if p.err != nil {
		return Init{}, p.err
	}
	return c, nil
}

// redirectPorts parses WARDEN_REDIRECT_PORTS: the app ports `warden init`
// redirects to warden, which the sidecar's kernel limiter must also watch
// (XDP sees a packet before netfilter rewrites its port). port parses the
// host:port variable the default comes from.
func (p *parser) redirectPorts(inbound, admin int, port func(string) int) (ports []int, all bool) {
	switch v := p.raw("WARDEN_REDIRECT_PORTS"); {
	case v == "*":
		return nil, true
	case v == "":
		// The default: the app's own port, as the sidecar reaches it
		// (WARDEN_UPSTREAM_PORT, else the port of WARDEN_UPSTREAM_ADDR),
		// and an error names the variable it came from.
		name := "WARDEN_UPSTREAM_PORT"
		_, n := p.upstreamPort(name, "")
		if n == 0 && p.err == nil {
			name, n = "WARDEN_UPSTREAM_ADDR", port("WARDEN_UPSTREAM_ADDR")
		}
		if p.err == nil {
			ports = []int{n}
			p.notWardens(name, p.raw(name), n, inbound, admin)
		}
	default:
		seen := make(map[int]bool)
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 65535 {
				p.fail("WARDEN_REDIRECT_PORTS", v, "comma-separated ports from 1 to 65535, or *")
				break
			}
			if seen[n] {
				p.fail("WARDEN_REDIRECT_PORTS", v, "each port once ("+strconv.Itoa(n)+" repeats)")
				break
			}
			seen[n] = true
			p.notWardens("WARDEN_REDIRECT_PORTS", v, n, inbound, admin)
			ports = append(ports, n)
		}
	}
	return ports, false
}

// notWardens refuses to redirect warden's own ports: the inbound port is
// where traffic is sent (redirecting it is meaningless), and the admin port
// must stay reachable as itself (probes).
func (p *parser) notWardens(name, value string, port, inbound, admin int) {
	switch port {
	case inbound:
		p.fail(name, value, "ports other than warden's inbound port "+strconv.Itoa(port)+" (WARDEN_INBOUND_ADDR), where redirected traffic goes")
	case admin:
		p.fail(name, value, "ports other than warden's admin port "+strconv.Itoa(port)+" (WARDEN_ADMIN_ADDR), which is never redirected")
	}
}

// port parses a host:port variable and returns its port, which must be
// fixed (not 0).
func (p *parser) port(name string) int {
	v := p.addr(name)
	if v == "" {
		return 0
	}
	_, port, _ := net.SplitHostPort(v)
	n, _ := strconv.Atoi(port)
	if n == 0 {
		p.fail(name, v, "a fixed port from 1 to 65535 (`warden init` writes it into the redirect rules)")
	}
	return n
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
