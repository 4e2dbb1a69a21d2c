package config

import (
	"fmt"
	"strings"
	"testing"
)

func TestInitDefaults(t *testing.T) {
	// The init container gets none of the sidecar's required settings
	// (WARDEN_IDENTITY, ...): InitFromEnv must not need them.
	c, err := InitFromEnv(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", c) != "{InboundPort:15443 AdminPort:15000 RedirectPorts:[8080] AllPorts:false ProxyUID:1337}" {
		t.Errorf("defaults %+v", c)
	}
}

func TestInitValidValues(t *testing.T) {
	tests := []struct {
		name string
		set  map[string]string
		want string
	}{
		{"the default redirect port follows the upstream address", map[string]string{"WARDEN_UPSTREAM_ADDR": "127.0.0.1:5000"},
			"{InboundPort:15443 AdminPort:15000 RedirectPorts:[5000] AllPorts:false ProxyUID:1337}"},
		{"the upstream port replaces the upstream address's", map[string]string{"WARDEN_UPSTREAM_ADDR": "127.0.0.1:5000", "WARDEN_UPSTREAM_PORT": "3000"},
			"{InboundPort:15443 AdminPort:15000 RedirectPorts:[3000] AllPorts:false ProxyUID:1337}"},
		{"a list wins over the upstream port", map[string]string{"WARDEN_UPSTREAM_PORT": "3000", "WARDEN_REDIRECT_PORTS": "8080"},
			"{InboundPort:15443 AdminPort:15000 RedirectPorts:[8080] AllPorts:false ProxyUID:1337}"},
		{"a list keeps its order and allows spaces", map[string]string{"WARDEN_REDIRECT_PORTS": " 9090, 8080 ,3000"},
			"{InboundPort:15443 AdminPort:15000 RedirectPorts:[9090 8080 3000] AllPorts:false ProxyUID:1337}"},
		{"* is every port", map[string]string{"WARDEN_REDIRECT_PORTS": "*"},
			"{InboundPort:15443 AdminPort:15000 RedirectPorts:[] AllPorts:true ProxyUID:1337}"},
		{"custom warden ports and uid", map[string]string{"WARDEN_INBOUND_ADDR": "[::]:8443", "WARDEN_ADMIN_ADDR": "0.0.0.0:9901", "WARDEN_PROXY_UID": "65532"},
			"{InboundPort:8443 AdminPort:9901 RedirectPorts:[8080] AllPorts:false ProxyUID:65532}"},
		{"the upstream address is not read when ports are listed", map[string]string{"WARDEN_REDIRECT_PORTS": "8080", "WARDEN_UPSTREAM_ADDR": "127.0.0.1:0"},
			"{InboundPort:15443 AdminPort:15000 RedirectPorts:[8080] AllPorts:false ProxyUID:1337}"},
		{"the largest uid", map[string]string{"WARDEN_PROXY_UID": "4294967294"},
			"{InboundPort:15443 AdminPort:15000 RedirectPorts:[8080] AllPorts:false ProxyUID:4294967294}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := InitFromEnv(env(tt.set))
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%+v", c); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// As for the sidecar: one line naming the variable, the value and what is
// expected, and `warden init` exits non-zero with it.
func TestInitInvalidValues(t *testing.T) {
	tests := []struct {
		name string
		set  map[string]string
		want string
	}{
		{"a port that is no number", map[string]string{"WARDEN_REDIRECT_PORTS": "8080,http"}, `config: WARDEN_REDIRECT_PORTS="8080,http": expected comma-separated ports from 1 to 65535, or *`},
		{"an empty item", map[string]string{"WARDEN_REDIRECT_PORTS": "8080,"}, `WARDEN_REDIRECT_PORTS="8080,": expected comma-separated ports`},
		{"port 0", map[string]string{"WARDEN_REDIRECT_PORTS": "0"}, `WARDEN_REDIRECT_PORTS="0": expected comma-separated ports from 1 to 65535`},
		{"a port out of range", map[string]string{"WARDEN_REDIRECT_PORTS": "70000"}, `WARDEN_REDIRECT_PORTS="70000": expected comma-separated ports from 1 to 65535`},
		{"* with ports", map[string]string{"WARDEN_REDIRECT_PORTS": "*,8080"}, `WARDEN_REDIRECT_PORTS="*,8080": expected comma-separated ports from 1 to 65535, or *`},
		{"a port range", map[string]string{"WARDEN_REDIRECT_PORTS": "8000-8010"}, `WARDEN_REDIRECT_PORTS="8000-8010": expected comma-separated ports`},
		{"a port twice", map[string]string{"WARDEN_REDIRECT_PORTS": "8080,9090,8080"}, `WARDEN_REDIRECT_PORTS="8080,9090,8080": expected each port once (8080 repeats)`},
		{"warden's inbound port", map[string]string{"WARDEN_REDIRECT_PORTS": "8080,15443"}, `WARDEN_REDIRECT_PORTS="8080,15443": expected ports other than warden's inbound port 15443 (WARDEN_INBOUND_ADDR)`},
		{"warden's admin port", map[string]string{"WARDEN_REDIRECT_PORTS": "15000"}, `WARDEN_REDIRECT_PORTS="15000": expected ports other than warden's admin port 15000 (WARDEN_ADMIN_ADDR), which is never redirected`},
		{"a custom admin port", map[string]string{"WARDEN_ADMIN_ADDR": "0.0.0.0:9901", "WARDEN_REDIRECT_PORTS": "8080,9901"}, `expected ports other than warden's admin port 9901`},
		{"an upstream on the admin port, by default redirected", map[string]string{"WARDEN_UPSTREAM_ADDR": "127.0.0.1:15000"}, `config: WARDEN_UPSTREAM_ADDR="127.0.0.1:15000": expected ports other than warden's admin port 15000`},
		{"an upstream port that is warden's, by default redirected", map[string]string{"WARDEN_UPSTREAM_PORT": "15443"}, `config: WARDEN_UPSTREAM_PORT="15443": expected ports other than warden's inbound port 15443`},
		{"an invalid upstream port", map[string]string{"WARDEN_UPSTREAM_PORT": "0"}, `config: WARDEN_UPSTREAM_PORT="0": expected a port from 1 to 65535`},
		{"an upstream on port 0, by default redirected", map[string]string{"WARDEN_UPSTREAM_ADDR": "127.0.0.1:0"}, `WARDEN_UPSTREAM_ADDR="127.0.0.1:0": expected a fixed port from 1 to 65535`},
		{"an ephemeral inbound port", map[string]string{"WARDEN_INBOUND_ADDR": "0.0.0.0:0"}, `WARDEN_INBOUND_ADDR="0.0.0.0:0": expected a fixed port from 1 to 65535`},
		{"an ephemeral admin port", map[string]string{"WARDEN_ADMIN_ADDR": "127.0.0.1:0"}, `WARDEN_ADMIN_ADDR="127.0.0.1:0": expected a fixed port`},
		{"an inbound address without port", map[string]string{"WARDEN_INBOUND_ADDR": "nowhere"}, `WARDEN_INBOUND_ADDR="nowhere": expected host:port`},
		{"root as warden's uid", map[string]string{"WARDEN_PROXY_UID": "0"}, `config: WARDEN_PROXY_UID="0": expected warden's own user ID, from 1 to 4294967294 (not root`},
		{"a negative uid", map[string]string{"WARDEN_PROXY_UID": "-1"}, `WARDEN_PROXY_UID="-1": expected warden's own user ID`},
		{"a user name", map[string]string{"WARDEN_PROXY_UID": "warden"}, `WARDEN_PROXY_UID="warden": expected warden's own user ID`},
		{"the no-uid value", map[string]string{"WARDEN_PROXY_UID": "4294967295"}, `WARDEN_PROXY_UID="4294967295": expected warden's own user ID`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := InitFromEnv(env(tt.set))
			if err == nil {
				t.Fatalf("accepted %v: %+v", tt.set, c)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line containing %q", err, tt.want)
			}
		})
	}
}

// WARDEN_REDIRECT_PORTS comes from a pod annotation: whatever it holds,
// InitFromEnv either refuses it in one line naming a variable or returns
// ports a rule can name, none of them warden's own.
func FuzzInitFromEnv(f *testing.F) {
	for _, s := range []string{"", "*", "8080", "8080,9090", " 1, 65535 ", "15443", "15000", "8080,8080", "0", "-1", "+80", "08080", "*,1", "1e3", "٨٠"} {
		f.Add(s, "1337")
	}
	f.Add("8080", "0")
	f.Add("8080", "+1")
	f.Fuzz(func(t *testing.T, ports, uid string) {
		c, err := InitFromEnv(env(map[string]string{"WARDEN_REDIRECT_PORTS": ports, "WARDEN_PROXY_UID": uid}))
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "config: WARDEN_") {
				t.Fatalf("error %q", msg)
			}
			return
		}
		if c.ProxyUID < 1 || c.ProxyUID > maxUID || c.AllPorts == (len(c.RedirectPorts) > 0) {
			t.Fatalf("accepted %q, %q: %+v", ports, uid, c)
		}
		seen := map[int]bool{}
		for _, p := range c.RedirectPorts {
			if p < 1 || p > 65535 || p == c.InboundPort || p == c.AdminPort || seen[p] {
				t.Fatalf("accepted %q: %+v", ports, c)
			}
			seen[p] = true
		}
	})
}
