package config

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	c, err := FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.InboundAddr != "0.0.0.0:15443" || c.UpstreamAddr != "127.0.0.1:8080" || c.AdminAddr != "127.0.0.1:15000" {
		t.Errorf("addresses %q %q %q", c.InboundAddr, c.UpstreamAddr, c.AdminAddr)
	}
	if c.SPIFFEID.String() != "spiffe://warden.local/ns/default/sa/app" || !c.TrustDomain.IsZero() {
		t.Errorf("identity %v %v", c.SPIFFEID, c.TrustDomain)
	}
	if c.DevDir != "./.warden-dev" || c.LogLevel != "info" || c.LogFormat != "json" {
		t.Errorf("dev dir %q, log %q %q", c.DevDir, c.LogLevel, c.LogFormat)
	}
	if c.DrainTimeout != 15*time.Second || c.UpstreamTimeout != 30*time.Second {
		t.Errorf("timeouts %s %s", c.DrainTimeout, c.UpstreamTimeout)
	}
	if c.PolicyBundle != "" || c.PolicyDecision != "warden/authz/allow" || c.PolicyPollInterval != 30*time.Second ||
		c.PolicyCacheSize != 10000 || c.DecisionLog != "stderr" || c.DecisionLogSample != 1 {
		t.Errorf("policy defaults %+v", c)
	}
}

// The issue names the variable's values on/off: `on`, keeping the
// separate access line, is read as separate; the default is combined.
func TestAccessLogValues(t *testing.T) {
	for v, want := range map[string]string{"": "combined", "on": "separate", "separate": "separate", "combined": "combined", "off": "off"} {
		c, err := FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev", "WARDEN_ACCESS_LOG": v}))
		if err != nil || c.AccessLog != want {
			t.Errorf("WARDEN_ACCESS_LOG=%q: %q %v, want %q", v, c.AccessLog, err, want)
		}
	}
}

func TestValidValues(t *testing.T) {
	c, err := FromEnv(env(map[string]string{
		"WARDEN_IDENTITY":            "workloadapi",
		"SPIFFE_ENDPOINT_SOCKET":     "unix:///run/spire/sockets/agent.sock",
		"WARDEN_INBOUND_ADDR":        "[::]:0",
		"WARDEN_TRUST_DOMAIN":        "example.org",
		"WARDEN_ALLOWED_PEERS":       "spiffe://example.org/ns/a/*, spiffe://partner.org/ns/b/sa/c",
		"WARDEN_UPSTREAM_TIMEOUT":    "1500ms",
		"WARDEN_LOG_LEVEL":           "debug",
		"WARDEN_LOG_FORMAT":          "console",
		"WARDEN_ADMIN_PPROF":         "true",
		"WARDEN_DECISION_LOG_SAMPLE": "0.25",
		"WARDEN_ACCESS_LOG":          "separate",
		"WARDEN_SECURITY_LOG":        "syslog+tcp://[::1]:6514",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.TrustDomain.Name() != "example.org" || !c.AdminPprof || c.UpstreamTimeout != 1500*time.Millisecond || c.InboundAddr != "[::]:0" ||
		c.DecisionLogSample != 0.25 || c.AccessLog != "separate" || c.SecurityLog != "syslog+tcp://[::1]:6514" {
		t.Errorf("parsed %+v", c)
	}
}

// Every invalid value stops startup with one line naming the variable, the
// value and what is expected.
func TestInvalidValues(t *testing.T) {
	dev := map[string]string{"WARDEN_IDENTITY": "dev"}
	tests := []struct {
		name string
		set  map[string]string
		want string
	}{
		{"address without port", map[string]string{"WARDEN_INBOUND_ADDR": "0.0.0.0"}, `WARDEN_INBOUND_ADDR="0.0.0.0": expected host:port`},
		{"address with a hostname", map[string]string{"WARDEN_UPSTREAM_ADDR": "app.svc:8080"}, `WARDEN_UPSTREAM_ADDR="app.svc:8080": expected an IP address or localhost`},
		{"port out of range", map[string]string{"WARDEN_ADMIN_ADDR": "127.0.0.1:70000"}, `WARDEN_ADMIN_ADDR="127.0.0.1:70000": expected a port from 0 to 65535`},
		{"non-numeric port", map[string]string{"WARDEN_ADMIN_ADDR": "127.0.0.1:http"}, `WARDEN_ADMIN_ADDR="127.0.0.1:http": expected a port`},
		{"negative peer rate", map[string]string{"WARDEN_PEER_RATE_LIMIT": "-1"}, `WARDEN_PEER_RATE_LIMIT="-1": expected a whole number from 0 (unlimited) to 1000000000`},
		{"fractional peer burst", map[string]string{"WARDEN_PEER_BURST": "1.5"}, `WARDEN_PEER_BURST="1.5": expected a whole number from 0 (unlimited) to 1000000000`},
		{"no rate limit keys", map[string]string{"WARDEN_RATE_LIMIT_KEYS": "0"}, `WARDEN_RATE_LIMIT_KEYS="0": expected a positive integer`},
		{"unknown identity mode", map[string]string{"WARDEN_IDENTITY": "spire"}, `WARDEN_IDENTITY="spire": expected one of workloadapi, dev`},
		{"malformed SPIFFE ID", map[string]string{"WARDEN_SPIFFE_ID": "warden.local/app"}, `WARDEN_SPIFFE_ID="warden.local/app": expected a SPIFFE ID`},
		{"SPIFFE ID with upper case trust domain", map[string]string{"WARDEN_SPIFFE_ID": "spiffe://Warden/app"}, `WARDEN_SPIFFE_ID="spiffe://Warden/app": expected a SPIFFE ID`},
		{"malformed trust domain", map[string]string{"WARDEN_TRUST_DOMAIN": "bad domain"}, `WARDEN_TRUST_DOMAIN="bad domain": expected a trust domain`},
		{"malformed allowed peer", map[string]string{"WARDEN_ALLOWED_PEERS": "spiffe://warden.local/a, nonsense"}, `WARDEN_ALLOWED_PEERS="spiffe://warden.local/a, nonsense": expected comma-separated SPIFFE IDs`},
		{"wildcard inside a peer", map[string]string{"WARDEN_ALLOWED_PEERS": "spiffe://warden.local/*/sa/x"}, `WARDEN_ALLOWED_PEERS="spiffe://warden.local/*/sa/x"`},
		{"negative timeout", map[string]string{"WARDEN_UPSTREAM_TIMEOUT": "-1s"}, `WARDEN_UPSTREAM_TIMEOUT="-1s": expected a positive duration`},
		{"timeout without unit", map[string]string{"WARDEN_READ_TIMEOUT": "30"}, `WARDEN_READ_TIMEOUT="30": expected a positive duration`},
		{"zero drain timeout", map[string]string{"WARDEN_DRAIN_TIMEOUT": "0s"}, `WARDEN_DRAIN_TIMEOUT="0s": expected a positive duration`},
		{"negative body limit", map[string]string{"WARDEN_MAX_REQUEST_BODY_BYTES": "-5"}, `WARDEN_MAX_REQUEST_BODY_BYTES="-5": expected a positive integer`},
		{"non-numeric connection limit", map[string]string{"WARDEN_MAX_CONNECTIONS": "lots"}, `WARDEN_MAX_CONNECTIONS="lots": expected a positive integer`},
		{"tiny header limit", map[string]string{"WARDEN_MAX_HEADER_BYTES": "100"}, `WARDEN_MAX_HEADER_BYTES="100": expected a size of at least 1024 bytes`},
		{"unknown upstream protocol", map[string]string{"WARDEN_UPSTREAM_PROTOCOL": "h2"}, `WARDEN_UPSTREAM_PROTOCOL="h2": expected one of http1, h2c, auto`},
		{"inbound protocol outside h2 and http/1.1", map[string]string{"WARDEN_INBOUND_PROTOCOLS": "h2,h3"}, `WARDEN_INBOUND_PROTOCOLS="h2,h3": expected a non-empty comma-separated subset of h2, http/1.1`},
		{"inbound protocol twice", map[string]string{"WARDEN_INBOUND_PROTOCOLS": "h2,h2"}, `WARDEN_INBOUND_PROTOCOLS="h2,h2": expected a non-empty comma-separated subset`},
		{"no inbound protocol", map[string]string{"WARDEN_INBOUND_PROTOCOLS": ","}, `WARDEN_INBOUND_PROTOCOLS=",": expected a non-empty comma-separated subset`},
		{"zero HTTP/2 streams", map[string]string{"WARDEN_H2_MAX_STREAMS": "0"}, `WARDEN_H2_MAX_STREAMS="0": expected a positive integer`},
		{"zero upstream connections", map[string]string{"WARDEN_UPSTREAM_MAX_CONNS": "0"}, `WARDEN_UPSTREAM_MAX_CONNS="0": expected a positive integer`},
		{"unknown log level", map[string]string{"WARDEN_LOG_LEVEL": "verbose"}, `WARDEN_LOG_LEVEL="verbose": expected one of debug, info, warn, error`},
		{"missing bundle directory", map[string]string{"WARDEN_POLICY_BUNDLE": "/nonexistent/policy"}, `WARDEN_POLICY_BUNDLE="/nonexistent/policy": expected an existing directory or .tar.gz file`},
		{"bundle URL with another scheme", map[string]string{"WARDEN_POLICY_BUNDLE": "ftp://bundles/b.tar.gz"}, `WARDEN_POLICY_BUNDLE="ftp://bundles/b.tar.gz": expected an http:// or https:// URL`},
		{"bundle file that is no tarball", map[string]string{"WARDEN_POLICY_BUNDLE": "config.go"}, `WARDEN_POLICY_BUNDLE="config.go": expected a directory or a file ending in .tar.gz`},
		{"missing verification key", map[string]string{"WARDEN_POLICY_VERIFICATION_KEY": "/nonexistent/key.pem"}, `WARDEN_POLICY_VERIFICATION_KEY="/nonexistent/key.pem": expected a readable file`},
		{"decision log sample as a percentage", map[string]string{"WARDEN_DECISION_LOG_SAMPLE": "10%"}, `WARDEN_DECISION_LOG_SAMPLE="10%": expected a number from 0 to 1, e.g. 0.1`},
		{"negative decision log sample", map[string]string{"WARDEN_DECISION_LOG_SAMPLE": "-0.5"}, `WARDEN_DECISION_LOG_SAMPLE="-0.5": expected a number from 0 to 1`},
		{"decision log sample NaN", map[string]string{"WARDEN_DECISION_LOG_SAMPLE": "NaN"}, `WARDEN_DECISION_LOG_SAMPLE="NaN": expected a number from 0 to 1`},
		{"decision log sample of 2", map[string]string{"WARDEN_DECISION_LOG_SAMPLE": "2"}, `WARDEN_DECISION_LOG_SAMPLE="2": expected a number from 0 to 1`},
		{"access log as a yes/no", map[string]string{"WARDEN_ACCESS_LOG": "yes"}, `WARDEN_ACCESS_LOG="yes": expected one of combined, separate, on, off`},
		{"decision that is no rule path", map[string]string{"WARDEN_POLICY_DECISION": "data.warden.allow"}, `WARDEN_POLICY_DECISION="data.warden.allow": expected a rule path such as warden/authz/allow`},
		{"decision with an empty segment", map[string]string{"WARDEN_POLICY_DECISION": "warden//allow"}, `WARDEN_POLICY_DECISION="warden//allow": expected a rule path`},
		{"negative cache size", map[string]string{"WARDEN_POLICY_CACHE_SIZE": "-1"}, `WARDEN_POLICY_CACHE_SIZE="-1": expected a whole number, 0 or more`},
		{"poll interval without unit", map[string]string{"WARDEN_POLICY_POLL_INTERVAL": "30"}, `WARDEN_POLICY_POLL_INTERVAL="30": expected a positive duration`},
		{"pprof switch that is no boolean", map[string]string{"WARDEN_ADMIN_PPROF": "yes"}, `WARDEN_ADMIN_PPROF="yes": expected one of true, false`},
		{"unknown log format", map[string]string{"WARDEN_LOG_FORMAT": "xml"}, `WARDEN_LOG_FORMAT="xml": expected one of json, console`},
		{"identity timeout without unit", map[string]string{"WARDEN_IDENTITY_TIMEOUT": "30"}, `WARDEN_IDENTITY_TIMEOUT="30": expected a positive duration`},
		{"outbound listener on all interfaces", map[string]string{"WARDEN_OUTBOUND_ADDR": "0.0.0.0:15001"}, `WARDEN_OUTBOUND_ADDR="0.0.0.0:15001": expected a loopback address`},
		{"outbound listener on a pod address", map[string]string{"WARDEN_OUTBOUND_ADDR": "10.0.0.7:15001"}, `WARDEN_OUTBOUND_ADDR="10.0.0.7:15001": expected a loopback address`},
		{"outbound listener without host", map[string]string{"WARDEN_OUTBOUND_ADDR": ":15001"}, `WARDEN_OUTBOUND_ADDR=":15001": expected a loopback address`},
		{"route without destination", map[string]string{"WARDEN_OUTBOUND_ROUTES": "orders"}, `WARDEN_OUTBOUND_ROUTES="orders": expected comma-separated host=addr|spiffe-id`},
		{"route without SPIFFE ID", map[string]string{"WARDEN_OUTBOUND_ROUTES": "orders=127.0.0.1:15443"}, `expected comma-separated host=addr|spiffe-id`},
		{"route to an address without port", map[string]string{"WARDEN_OUTBOUND_ROUTES": "orders=10.0.0.7|spiffe://warden.local/orders"}, `expected a destination host:port after '=' (at "orders=10.0.0.7|spiffe://warden.local/orders")`},
		{"route with a malformed SPIFFE ID", map[string]string{"WARDEN_OUTBOUND_ROUTES": "orders=10.0.0.7:15443|orders"}, `expected a SPIFFE ID after '|'`},
		{"route host with a path", map[string]string{"WARDEN_OUTBOUND_ROUTES": "orders/v1=10.0.0.7:15443|spiffe://warden.local/orders"}, `expected a host name, optionally with :port, before '='`},
		{"route host twice", map[string]string{"WARDEN_OUTBOUND_ROUTES": "orders=a:1|spiffe://w/a, Orders=b:2|spiffe://w/b"}, `expected each host once (host "orders" repeats)`},
		{"security log to an unknown scheme", map[string]string{"WARDEN_SECURITY_LOG": "udp://10.0.0.9:514"}, `WARDEN_SECURITY_LOG="udp://10.0.0.9:514": expected stderr, stdout, a file path, syslog://host:port or syslog+tcp://host:port`},
		{"security log to syslog without port", map[string]string{"WARDEN_SECURITY_LOG": "syslog://collector"}, `WARDEN_SECURITY_LOG="syslog://collector": expected a collector as syslog://host:port with a port from 1 to 65535`},
		{"security log to syslog over TCP on port 0", map[string]string{"WARDEN_SECURITY_LOG": "syslog+tcp://collector:0"}, `WARDEN_SECURITY_LOG="syslog+tcp://collector:0": expected a collector as syslog+tcp://host:port`},
		{"security log to syslog with a path", map[string]string{"WARDEN_SECURITY_LOG": "syslog://collector:514/x"}, `WARDEN_SECURITY_LOG="syslog://collector:514/x": expected a collector as syslog://host:port`},
		{"security log in a missing directory", map[string]string{"WARDEN_SECURITY_LOG": "/nonexistent/security.log"}, `WARDEN_SECURITY_LOG="/nonexistent/security.log": expected a file path in an existing directory`},
		{"security log that is a directory", map[string]string{"WARDEN_SECURITY_LOG": "/tmp"}, `WARDEN_SECURITY_LOG="/tmp": expected a regular file`},
		{"route with an unknown protocol", map[string]string{"WARDEN_OUTBOUND_ROUTES": "orders=10.0.0.7:15443|spiffe://warden.local/orders;proto=h3"}, `expected route parameters ;proto=h2 or ;proto=http1 after the SPIFFE ID (at "orders=10.0.0.7:15443|spiffe://warden.local/orders;proto=h3")`},
		{"route with an unknown parameter", map[string]string{"WARDEN_OUTBOUND_ROUTES": "orders=10.0.0.7:15443|spiffe://warden.local/orders;tls=off"}, `expected route parameters ;proto=h2 or ;proto=http1`},
		{"upgrade to h2c", map[string]string{"WARDEN_ALLOW_UPGRADE": "websocket,h2c"}, `WARDEN_ALLOW_UPGRADE="websocket,h2c": expected protocols other than h2c and h2, whose tunnel would carry HTTP/2 requests past the policy (at "h2c")`},
		{"upgrade token with a space", map[string]string{"WARDEN_ALLOW_UPGRADE": "web socket"}, `WARDEN_ALLOW_UPGRADE="web socket": expected comma-separated Upgrade protocols such as websocket (at "web socket")`},
		{"decoy path that is relative", map[string]string{"WARDEN_HONEYPOT_PATHS": "/.env, wp-login.php"}, `WARDEN_HONEYPOT_PATHS="/.env, wp-login.php": expected comma-separated absolute paths such as /.env or prefixes such as /actuator/*, normalized (no //, ., .., %, ?, # or * but a final /*) (at "wp-login.php")`},
		{"decoy path with a wildcard inside", map[string]string{"WARDEN_HONEYPOT_PATHS": "/a/*/b"}, `(at "/a/*/b")`},
		{"decoy path with a dot segment", map[string]string{"WARDEN_HONEYPOT_PATHS": "/a/../.git/*"}, `(at "/a/../.git/*")`},
		{"decoy path percent-encoded", map[string]string{"WARDEN_HONEYPOT_PATHS": "/%2eenv"}, `(at "/%2eenv")`},
		{"decoy block longer than a day", map[string]string{"WARDEN_HONEYPOT_BLOCK_FOR": "25h"}, `WARDEN_HONEYPOT_BLOCK_FOR="25h": expected a duration from 0 (off) to 24h, such as 10m`},
		{"block cap without unit", map[string]string{"WARDEN_MAX_BLOCK_FOR": "60"}, `WARDEN_MAX_BLOCK_FOR="60": expected a duration from 0 (off) to 24h`},
		{"exempt network that is no CIDR", map[string]string{"WARDEN_BLOCK_EXEMPT": "10.0.0.0/8, health-checker"}, `WARDEN_BLOCK_EXEMPT="10.0.0.0/8, health-checker": expected comma-separated CIDRs such as 10.0.0.0/8 or addresses (at "health-checker")`},
		{"fast path mode that is no mode", map[string]string{"WARDEN_FAST_PATH": "on"}, `WARDEN_FAST_PATH="on": expected one of auto, sockmap, off`},
		{"fast path cgroup that is relative", map[string]string{"WARDEN_FAST_PATH_CGROUP": "system.slice"}, `WARDEN_FAST_PATH_CGROUP="system.slice": expected an absolute path or pod`},
		{"the pod's cgroup without the pod's UID", map[string]string{"WARDEN_FAST_PATH_CGROUP": "pod"}, `WARDEN_POD_UID is empty: expected the pod's UID (metadata.uid, through the downward API) with WARDEN_FAST_PATH_CGROUP=pod`},
		{"pod UID that is no UID", map[string]string{"WARDEN_POD_UID": "../kubepods"}, `WARDEN_POD_UID="../kubepods": expected a pod UID such as`},
		{"host cgroup mount that is relative", map[string]string{"WARDEN_FAST_PATH_HOST_CGROUP": "sys/fs/cgroup"}, `WARDEN_FAST_PATH_HOST_CGROUP="sys/fs/cgroup": expected an absolute path`},
		{"IPv6 block prefix too short", map[string]string{"WARDEN_IPV6_PREFIX": "32"}, `WARDEN_IPV6_PREFIX="32": expected a prefix length from 48 to 128, such as 64`},
		{"decoys that block with rate limiting off", map[string]string{"WARDEN_HONEYPOT_PATHS": "/.env", "WARDEN_RATE_LIMIT_MODE": "off"}, `WARDEN_RATE_LIMIT_MODE=off blocks nobody: set WARDEN_HONEYPOT_BLOCK_FOR=0`},
		{"outbound timeout of zero", map[string]string{"WARDEN_OUTBOUND_TIMEOUT": "0s"}, `WARDEN_OUTBOUND_TIMEOUT="0s": expected a positive duration`},
		{"app probes that are no JSON", map[string]string{"WARDEN_APP_PROBES": "app/readiness=/ready"}, `WARDEN_APP_PROBES="[unparsable WARDEN_APP_PROBES]": expected a JSON object of the app's probes keyed <container>/<probe>`},
		{"app probe with an unknown probe name", map[string]string{"WARDEN_APP_PROBES": `{"app/ready":{"httpGet":{"port":8080}}}`}, `appprobe: probe "app/ready": expected the probe liveness, readiness or startup`},
		{"app probe without a handler", map[string]string{"WARDEN_APP_PROBES": `{"app/liveness":{"timeoutSeconds":1}}`}, `appprobe: probe "app/liveness": expected httpGet or grpc`},
		{"app probe with a host", map[string]string{"WARDEN_APP_PROBES": `{"app/liveness":{"httpGet":{"host":"10.0.0.1","port":8080}}}`}, `appprobe: json: unknown field "host"`},
		{"app probe on port 0", map[string]string{"WARDEN_APP_PROBES": `{"app/startup":{"grpc":{"port":0}}}`}, `appprobe: probe "app/startup": grpc.port 0: expected 1 to 65535`},
		{"app probe with a header carrying CR LF", map[string]string{"WARDEN_APP_PROBES": `{"app/readiness":{"httpGet":{"port":8080,"httpHeaders":[{"name":"X-A","value":"a\r\nB: c"}]}}}`}, `httpGet.httpHeaders: X-A: expected a value without CR, LF or NUL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]string{}
			for k, v := range dev {
				m[k] = v
			}
			for k, v := range tt.set {
				m[k] = v
			}
			_, err := FromEnv(env(m))
			if err == nil {
				t.Fatalf("accepted %v", tt.set)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line containing %q", err, tt.want)
			}
		})
	}
}

func TestDefenseSettings(t *testing.T) {
	c, err := FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev",
		"WARDEN_HONEYPOT_PATHS": " /.env, /actuator/* ,/", "WARDEN_BLOCK_EXEMPT": "10.1.2.3, 192.168.0.0/16, ::ffff:10.9.0.0/112, 2001:db8::/32"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.HoneypotPaths, " "); got != "/.env /actuator/* /" {
		t.Errorf("decoys %q", got)
	}
	var ex []string
	for _, p := range c.BlockExempt {
		ex = append(ex, p.String())
	}
	if got := strings.Join(ex, " "); got != "10.1.2.3/32 192.168.0.0/16 10.9.0.0/16 2001:db8::/32" {
		t.Errorf("exempt %q", got)
	}
	if c.HoneypotBlockFor != 10*time.Minute || c.MaxBlockFor != 24*time.Hour || c.IPv6Prefix != 64 {
		t.Errorf("defaults: block for %v, max %v, IPv6 prefix %d", c.HoneypotBlockFor, c.MaxBlockFor, c.IPv6Prefix)
	}
	c, err = FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev", "WARDEN_HONEYPOT_PATHS": "/.env",
		"WARDEN_HONEYPOT_BLOCK_FOR": "0", "WARDEN_RATE_LIMIT_MODE": "off", "WARDEN_MAX_BLOCK_FOR": "0"}))
	if err != nil || c.HoneypotBlockFor != 0 || c.MaxBlockFor != 0 {
		t.Errorf("decoys that block nobody with rate limiting off: %v, %v, %v", err, c.HoneypotBlockFor, c.MaxBlockFor)
	}
}

func TestOutboundSettings(t *testing.T) {
	c, err := FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.OutboundAddr != "127.0.0.1:15001" || c.OutboundRoutes != nil || c.OutboundTimeout != 30*time.Second || c.IdentityTimeout != 30*time.Second {
		t.Errorf("defaults: addr %q routes %v timeout %s identity timeout %s", c.OutboundAddr, c.OutboundRoutes, c.OutboundTimeout, c.IdentityTimeout)
	}

	c, err = FromEnv(env(map[string]string{
		"WARDEN_IDENTITY":      "dev",
		"WARDEN_OUTBOUND_ADDR": "[::1]:0",
		"WARDEN_OUTBOUND_ROUTES": " Orders = orders.shop.svc:15443 | spiffe://warden.local/ns/shop/sa/orders ,payments:8080=127.0.0.1:25443|spiffe://partner.test/payments," +
			"grpc=10.0.0.9:15443|spiffe://warden.local/ns/shop/sa/grpc ; proto=H2,old=10.0.0.10:15443|spiffe://warden.local/old;proto=http1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	// The routes without ";proto=" mean what they meant: HTTP/1.1.
	want := []Route{
		{Host: "orders", Addr: "orders.shop.svc:15443", ID: spiffeid.RequireFromString("spiffe://warden.local/ns/shop/sa/orders"), Proto: RouteHTTP1},
		{Host: "payments:8080", Addr: "127.0.0.1:25443", ID: spiffeid.RequireFromString("spiffe://partner.test/payments"), Proto: RouteHTTP1},
		{Host: "grpc", Addr: "10.0.0.9:15443", ID: spiffeid.RequireFromString("spiffe://warden.local/ns/shop/sa/grpc"), Proto: RouteH2},
		{Host: "old", Addr: "10.0.0.10:15443", ID: spiffeid.RequireFromString("spiffe://warden.local/old"), Proto: RouteHTTP1},
	}
	if c.OutboundAddr != "[::1]:0" || !slices.Equal(c.OutboundRoutes, want) {
		t.Errorf("addr %q routes %+v, want %+v", c.OutboundAddr, c.OutboundRoutes, want)
	}

	c, err = FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev", "WARDEN_OUTBOUND_ADDR": "off"}))
	if err != nil || c.OutboundAddr != "" {
		t.Errorf("off: addr %q, err %v; want no listener", c.OutboundAddr, err)
	}
}

func TestAllowUpgrade(t *testing.T) {
	tests := []struct {
		name string
		set  map[string]string
		want []string
	}{
		{"default is websocket", nil, []string{"websocket"}},
		{"explicitly empty allows none", map[string]string{"WARDEN_ALLOW_UPGRADE": ""}, nil},
		{"tokens are lower-cased, versions kept", map[string]string{"WARDEN_ALLOW_UPGRADE": " WebSocket, foo/1.1 ,"}, []string{"websocket", "foo/1.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]string{"WARDEN_IDENTITY": "dev"}
			for k, v := range tt.set {
				m[k] = v
			}
			c, err := FromEnv(lookup(m))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.AllowUpgrade, tt.want) {
				t.Errorf("AllowUpgrade %q, want %q", c.AllowUpgrade, tt.want)
			}
		})
	}
}

func TestWorkloadAPIWithoutSocketNamesBothVariables(t *testing.T) {
	_, err := FromEnv(env(nil))
	if err == nil {
		t.Fatal("workloadapi mode without a socket was accepted")
	}
	for _, name := range []string{"WARDEN_IDENTITY", "SPIFFE_ENDPOINT_SOCKET"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	_, err = FromEnv(env(map[string]string{"SPIFFE_ENDPOINT_SOCKET": "/run/agent.sock"}))
	if err == nil || !strings.Contains(err.Error(), `SPIFFE_ENDPOINT_SOCKET="/run/agent.sock": expected unix://`) {
		t.Errorf("socket without scheme: %v", err)
	}
}

// The README's table is the user's reference: every variable FromEnv reads
// must be in it, with its default.
func TestVarsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range Vars {
		row := regexp.MustCompile("(?m)^\\| `" + v.Name + "` \\| ([^|]*) \\|")
		m := row.FindSubmatch(readme)
		if m == nil {
			t.Errorf("README has no table row for %s", v.Name)
			continue
		}
		if v.Default != "" && !strings.Contains(string(m[1]), v.Default) {
			t.Errorf("README gives %s the default %q, code has %q", v.Name, strings.TrimSpace(string(m[1])), v.Default)
		}
	}
}

func TestJWTSettings(t *testing.T) {
	c, err := FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.JWTJWKS != "" || c.JWTJWKSRefresh != 5*time.Minute || c.JWTClockSkew != 30*time.Second || !c.JWTRequired ||
		c.JWTHeader != "Authorization" || !slices.Equal(c.JWTAlgorithms, []string{"RS256", "ES256", "EdDSA", "PS256"}) {
		t.Errorf("defaults %+v", c)
	}

	c, err = FromEnv(env(map[string]string{
		"WARDEN_IDENTITY":       "dev",
		"WARDEN_JWT_JWKS":       "https://sts.example.test/jwks.json",
		"WARDEN_JWT_ISSUERS":    "https://sts.example.test, https://sts2.example.test,",
		"WARDEN_JWT_AUDIENCES":  "orders",
		"WARDEN_JWT_ALGORITHMS": "ES384, EdDSA",
		"WARDEN_JWT_CLOCK_SKEW": "0s",
		"WARDEN_JWT_REQUIRED":   "false",
		"WARDEN_JWT_HEADER":     "x-auth-token",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.JWTIssuers, []string{"https://sts.example.test", "https://sts2.example.test"}) ||
		!slices.Equal(c.JWTAudiences, []string{"orders"}) || !slices.Equal(c.JWTAlgorithms, []string{"ES384", "EdDSA"}) ||
		c.JWTClockSkew != 0 || c.JWTRequired || c.JWTHeader != "X-Auth-Token" {
		t.Errorf("parsed %+v", c)
	}

	// JWT-SVIDs have no issuer to check: the trust domain of their subject is.
	c, err = FromEnv(env(map[string]string{
		"SPIFFE_ENDPOINT_SOCKET": "unix:///run/spire/agent.sock",
		"WARDEN_JWT_JWKS":        "spiffe",
		"WARDEN_JWT_AUDIENCES":   "spiffe://example.org/ns/shop/sa/orders",
	}))
	if err != nil || c.JWTJWKS != JWKSSPIFFE || c.JWTIssuers != nil {
		t.Errorf("spiffe: %+v %v", c, err)
	}

	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	jwt := map[string]string{"WARDEN_IDENTITY": "dev", "WARDEN_JWT_JWKS": file, "WARDEN_JWT_ISSUERS": "iss", "WARDEN_JWT_AUDIENCES": "aud"}
	if _, err := FromEnv(env(jwt)); err != nil {
		t.Errorf("JWKS file: %v", err)
	}
	tests := []struct {
		name string
		set  map[string]string
		want string
	}{
		{"spiffe keys in dev mode", map[string]string{"WARDEN_JWT_JWKS": "spiffe", "WARDEN_JWT_ISSUERS": ""},
			`config: WARDEN_JWT_JWKS=spiffe needs WARDEN_IDENTITY=workloadapi (JWT bundles come from the Workload API), not WARDEN_IDENTITY=dev`},
		{"JWKS URL of another scheme", map[string]string{"WARDEN_JWT_JWKS": "ftp://sts/jwks"}, `WARDEN_JWT_JWKS="ftp://sts/jwks": expected a readable JWKS file, an http:// or https:// JWKS URL`},
		{"missing JWKS file", map[string]string{"WARDEN_JWT_JWKS": "/nonexistent/jwks.json"}, `WARDEN_JWT_JWKS="/nonexistent/jwks.json": expected a readable JWKS file`},
		{"JWKS without issuers", map[string]string{"WARDEN_JWT_ISSUERS": ""}, "config: WARDEN_JWT_ISSUERS is empty: expected the comma-separated iss values"},
		{"JWKS without audiences", map[string]string{"WARDEN_JWT_AUDIENCES": " , "}, "config: WARDEN_JWT_AUDIENCES is empty"},
		{"alg none", map[string]string{"WARDEN_JWT_ALGORITHMS": "RS256,none"}, `WARDEN_JWT_ALGORITHMS="RS256,none": expected comma-separated asymmetric JWS algorithms`},
		{"HMAC", map[string]string{"WARDEN_JWT_ALGORITHMS": "HS256"}, `algorithm "HS256" is refused: an HMAC key would be the public key`},
		{"unknown algorithm", map[string]string{"WARDEN_JWT_ALGORITHMS": "RSA-OAEP"}, `algorithm "RSA-OAEP" is not supported`},
		{"negative clock skew", map[string]string{"WARDEN_JWT_CLOCK_SKEW": "-1s"}, `WARDEN_JWT_CLOCK_SKEW="-1s": expected a duration such as 30s, or 0s`},
		{"refresh of zero", map[string]string{"WARDEN_JWT_JWKS_REFRESH": "0s"}, `WARDEN_JWT_JWKS_REFRESH="0s": expected a positive duration`},
		{"required that is no boolean", map[string]string{"WARDEN_JWT_REQUIRED": "yes"}, `WARDEN_JWT_REQUIRED="yes": expected one of true, false`},
		{"hop-by-hop token header", map[string]string{"WARDEN_JWT_HEADER": "Proxy-Authorization"}, `WARDEN_JWT_HEADER="Proxy-Authorization": expected a header that reaches warden's check`},
		{"token header warden sets", map[string]string{"WARDEN_JWT_HEADER": "X-Forwarded-For"}, `WARDEN_JWT_HEADER="X-Forwarded-For": expected a header that reaches`},
		{"token header that is no header name", map[string]string{"WARDEN_JWT_HEADER": "x token"}, `WARDEN_JWT_HEADER="x token": expected a header name`},
		{"issuers without JWKS", map[string]string{"WARDEN_JWT_JWKS": "", "WARDEN_JWT_ISSUERS": "iss", "WARDEN_JWT_AUDIENCES": ""},
			"config: WARDEN_JWT_ISSUERS is set but WARDEN_JWT_JWKS is empty"},
		{"required without JWKS", map[string]string{"WARDEN_JWT_JWKS": "", "WARDEN_JWT_ISSUERS": "", "WARDEN_JWT_AUDIENCES": "", "WARDEN_JWT_REQUIRED": "true"},
			"config: WARDEN_JWT_REQUIRED is set but WARDEN_JWT_JWKS is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := maps.Clone(jwt)
			maps.Copy(m, tt.set)
			_, err := FromEnv(env(m))
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %v, want one line containing %q", err, tt.want)
			}
		})
	}
}

func TestRequestHardeningSettings(t *testing.T) {
	c, err := FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.AllowGetBody || c.PathSemicolon != PathSemicolonReject || c.HeadersWithUnderscores != UnderscoresDrop ||
		c.AllowMethodOverride || c.MaxHeaders != 100 || c.HandshakeTimeout != 5*time.Second ||
		strings.Join(c.StripHeaders, ",") != "X-Original-Url,X-Rewrite-Url,X-Forwarded-Host,X-Forwarded-Prefix,Forwarded,X-Real-Ip" ||
		strings.Join(c.AllowedMethods, ",") != "GET,HEAD,POST,PUT,PATCH,DELETE,OPTIONS" ||
		c.PolicyCacheBytes != 32<<20 || c.PolicyEvalTimeout != 100*time.Millisecond || c.PolicyAllowNetwork {
		t.Errorf("defaults: %+v", c)
	}
	c, err = FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev", "WARDEN_STRIP_HEADERS": "none", "WARDEN_ALLOWED_METHODS": "GET, PROPFIND"}))
	if err != nil || len(c.StripHeaders) != 0 || strings.Join(c.AllowedMethods, ",") != "GET,PROPFIND" {
		t.Errorf("none and a method list: %v %+v", err, c)
	}
	for name, bad := range map[string]string{
		"WARDEN_STRIP_HEADERS":            "X-Original-URL,Bad Header",
		"WARDEN_ALLOWED_METHODS":          "GET,PO ST",
		"WARDEN_PATH_SEMICOLON":           "strip",
		"WARDEN_HEADERS_WITH_UNDERSCORES": "merge",
		"WARDEN_MAX_HEADERS":              "0",
		"WARDEN_POLICY_EVAL_TIMEOUT":      "0s",
	} {
		_, err := FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev", name: bad}))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: %v, want an error naming it", name, bad, err)
		}
	}
}

func TestInputProtectionSettings(t *testing.T) {
	c, err := FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev"}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.JSONProtection || c.JSON != (JSONLimits{32, 1000, 10000, 65536, 64}) ||
		!c.XMLProtection || c.XML != (XMLLimits{32, 64, 100000, 65536}) ||
		c.OpenAPISpec != "" || c.PolicyBody != PolicyBodyOff || c.PolicyBodyMaxBytes != 65536 {
		t.Errorf("defaults: %+v", c)
	}
	c, err = FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev", "WARDEN_JSON_PROTECTION": "off",
		"WARDEN_XML_PROTECTION": "off", "WARDEN_POLICY_BODY": "json", "WARDEN_JSON_MAX_DEPTH": "8"}))
	if err != nil || c.JSONProtection || c.XMLProtection || c.PolicyBody != PolicyBodyJSON || c.JSON.MaxDepth != 8 {
		t.Errorf("off, off, json, depth 8: %v %+v", err, c)
	}
	for name, bad := range map[string]string{
		"WARDEN_JSON_PROTECTION":       "false",
		"WARDEN_XML_PROTECTION":        "yes",
		"WARDEN_JSON_MAX_DEPTH":        "0",
		"WARDEN_JSON_MAX_STRING":       "-1",
		"WARDEN_XML_MAX_ELEMENTS":      "many",
		"WARDEN_OPENAPI_SPEC":          "/nonexistent/openapi.yaml",
		"WARDEN_POLICY_BODY":           "xml",
		"WARDEN_POLICY_BODY_MAX_BYTES": "0",
		"WARDEN_SIGNATURE_COMPONENTS":  "@method,@nonsense",
		"WARDEN_SIGNATURE_KEYS":        "ftp://keys.example/jwks",
		"WARDEN_OUTBOUND_SIGNING_KEY":  "/nonexistent/key.pem",
	} {
		_, err := FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev", name: bad}))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: %v, want an error naming it", name, bad, err)
		}
	}
}

// A URL's password or signed query never reaches the startup line nor a
// configuration error.
func TestURLCredentialsAreNeverEchoed(t *testing.T) {
	secretURL := "https://user:pa55word@bundles.example/b.tar.gz?X-Amz-Signature=sigsecret"
	o := Overrides(env(map[string]string{"WARDEN_POLICY_BUNDLE": secretURL}))
	if got := o["WARDEN_POLICY_BUNDLE"]; got != "https://bundles.example/b.tar.gz" {
		t.Errorf("startup settings show %q", got)
	}
	_, err := FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev", "WARDEN_JWT_JWKS": "ftp://user:pa55word@keys.example/jwks?sig=sigsecret"}))
	if err == nil || strings.Contains(err.Error(), "pa55word") || strings.Contains(err.Error(), "sigsecret") {
		t.Errorf("error %v", err)
	}
}

func TestJWTSVIDNeedsAJWTSVIDAlgorithm(t *testing.T) {
	base := map[string]string{"SPIFFE_ENDPOINT_SOCKET": "unix:///run/agent.sock", "WARDEN_JWT_JWKS": "spiffe", "WARDEN_JWT_AUDIENCES": "app"}
	if _, err := FromEnv(env(base)); err != nil {
		t.Fatalf("the default algorithms: %v", err)
	}
	base["WARDEN_JWT_ALGORITHMS"] = "EdDSA"
	if _, err := FromEnv(env(base)); err == nil || !strings.Contains(err.Error(), "WARDEN_JWT_ALGORITHMS") {
		t.Errorf("EdDSA alone with JWT-SVIDs: %v, want an error naming WARDEN_JWT_ALGORITHMS", err)
	}
}
