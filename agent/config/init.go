package config

import (
	"net"
	"strconv"
	"strings"
)

// InitVars lists the variables `warden init` reads (the pod's init
// container, which installs the inbound redirect rules). The webhook sets
// them from the same annotations as the sidecar's.
var InitVars = []Var{
	{"WARDEN_REDIRECT_PORTS", "", "`warden init`: comma-separated TCP ports of the app whose inbound traffic is redirected to warden's inbound port, or `*` for every port but warden's own; empty: the port of WARDEN_UPSTREAM_ADDR"},
	{"WARDEN_PROXY_UID", "1337", "`warden init`: the user ID warden runs as; its own traffic is never redirected"},
}

// Init is the configuration of `warden init`.
type Init struct {
	InboundPort   int   // where redirected traffic goes (port of WARDEN_INBOUND_ADDR)
	AdminPort     int   // never redirected (port of WARDEN_ADMIN_ADDR)
	RedirectPorts []int // nil with AllPorts
	AllPorts      bool  // WARDEN_REDIRECT_PORTS=*
	ProxyUID      int
}

// InitFromEnv reads what `warden init` needs, with the same defaults and
// errors as the sidecar's configuration.
func InitFromEnv(getenv func(string) string) (Init, error) {
	p := parser{getenv: getenv}
	c := Init{
		InboundPort: p.port("WARDEN_INBOUND_ADDR"),
		AdminPort:   p.port("WARDEN_ADMIN_ADDR"),
		ProxyUID:    p.nonNegativeInt("WARDEN_PROXY_UID"),
	}
	upstream := p.port("WARDEN_UPSTREAM_ADDR")
	switch v := p.raw("WARDEN_REDIRECT_PORTS"); {
	case v == "*":
		c.AllPorts = true
	case v == "":
		c.RedirectPorts = []int{upstream}
	default:
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 65535 {
				p.fail("WARDEN_REDIRECT_PORTS", v, "comma-separated ports from 1 to 65535, or *")
				break
			}
			c.RedirectPorts = append(c.RedirectPorts, n)
		}
	}
	return c, p.err
}

// port parses a host:port variable and returns its port.
func (p *parser) port(name string) int {
	v := p.addr(name)
	if v == "" {
		return 0
	}
	_, port, _ := net.SplitHostPort(v)
	n, _ := strconv.Atoi(port)
	return n
}
