// Package config turns warden's environment into one validated Config. It is
// the only package that reads the environment, and it does so once, at
// startup: every later decision reads the struct.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/warden-sidecar/warden/agent/token"
	"github.com/warden-sidecar/warden/internal/redact"
	"github.com/warden-sidecar/warden/spiffe"
)

// Identity modes for WARDEN_IDENTITY.
const (
	IdentityWorkloadAPI = "workloadapi"
	IdentityDev         = "dev"
)

// Config is warden's whole configuration.
type Config struct {
	InboundAddr  string
	UpstreamAddr string // with WARDEN_UPSTREAM_PORT applied
	UpstreamPort int    // WARDEN_UPSTREAM_PORT; 0 when unset
	AdminAddr    string

	Identity     string
	SPIFFESocket string
	DevDir       string
	SPIFFEID     spiffeid.ID
	TrustDomain  spiffeid.TrustDomain // zero: the trust domain of the own SVID
	AllowedPeers string               // raw list; see spiffe.ParsePeerMatcher

	IdentityTimeout time.Duration // workloadapi mode: the wait for the first SVID

	OutboundAddr    string // "" = no outbound listener
	OutboundRoutes  []Route
	OutboundTimeout time.Duration

	UpstreamTimeout     time.Duration
	UpstreamMaxConns    int
	ReadTimeout         time.Duration
	WriteTimeout        time.Duration
	IdleTimeout         time.Duration
	MaxHeaderBytes      int
	MaxRequestBodyBytes int
	MaxConnections      int
	DrainTimeout        time.Duration
	HandshakeTimeout    time.Duration

	// Request hardening: how warden reads what the app could read otherwise.
	AllowGetBody           bool
	PathSemicolon          string // PathSemicolonReject or PathSemicolonKeep
	HeadersWithUnderscores string // UnderscoresDrop, UnderscoresReject or UnderscoresAllow
	StripHeaders           []string
	AllowMethodOverride    bool
	AllowedMethods         []string
	MaxHeaders             int

	PolicyBundle          string // "" = the embedded default bundle
	PolicyPollInterval    time.Duration
	PolicyVerificationKey string
	PolicyVerificationAlg string
	PolicyDecision        string
	PolicyCacheSize       int
	PolicyCacheTTL        time.Duration
	PolicyCacheBytes      int64
	PolicyAllowNetwork    bool
	PolicyEvalTimeout     time.Duration
	DecisionLog           string // "stderr", "stdout" or a file path

	// JWT verification; off when JWTJWKS is "".
	JWTJWKS        string // "", JWKSSPIFFE, an http(s) URL or a file path
	JWTJWKSRefresh time.Duration
	JWTIssuers     []string // empty only with JWKSSPIFFE: iss is not checked
	JWTAudiences   []string
	JWTAlgorithms  []string
	JWTClockSkew   time.Duration
	JWTRequired    bool
	JWTHeader      string // canonical form, e.g. Authorization

	// Rate limiting and blocking (kernel fast path or userspace).
	RateLimitMode   string // RateLimitAuto, RateLimitEBPF, RateLimitUserspace or RateLimitOff
	BPFInterface    string // "" = the interface that carries the route to the inbound address
	BPFAttach       string // "xdp" or "tc"
	ConnRateLimit   int    // new connections per second per source IP; 0 = unlimited
	ConnBurst       int    // 0 = the rate
	PacketRateLimit int    // packets (userspace: requests) per second per connection; 0 = unlimited
	PacketBurst     int    // 0 = the rate
	BPFMaxSources   int
	BPFMaxConns     int
	// The app ports `warden init` redirects to the inbound port
	// (WARDEN_REDIRECT_PORTS): the kernel limiter sees packets before the
	// redirect, so it limits these ports too (all but admin with RedirectAll).
	RedirectPorts []int
	RedirectAll   bool

	AdminPprof bool

	LogLevel  string
	LogFormat string
}

// Route is one entry of WARDEN_OUTBOUND_ROUTES: requests whose Host is Host
// go over mTLS to Addr, which must present the SVID ID.
type Route struct {
	Host string // lower case; "name" matches any port, "name:port" only that one
	Addr string // host:port of the destination's warden (inbound listener)
	ID   spiffeid.ID
}

// JWKSSPIFFE is the WARDEN_JWT_JWKS value that verifies JWT-SVIDs with the
// Workload API's JWT bundles.
const JWKSSPIFFE = "spiffe"

// OutboundOff is the WARDEN_OUTBOUND_ADDR value that turns the outbound
// listener off (an empty value means the default, as for every variable).
const OutboundOff = "off"

// Values of WARDEN_PATH_SEMICOLON.
const (
	PathSemicolonReject = "reject"
	PathSemicolonKeep   = "keep"
)

// Values of WARDEN_HEADERS_WITH_UNDERSCORES.
const (
	UnderscoresDrop   = "drop"
	UnderscoresReject = "reject"
	UnderscoresAllow  = "allow"
)

// StripNone is the WARDEN_STRIP_HEADERS value that strips nothing (an empty
// value means the default list, as for every variable).
const StripNone = "none"

// Rate limit modes for WARDEN_RATE_LIMIT_MODE.
const (
	RateLimitAuto      = "auto"
	RateLimitEBPF      = "ebpf"
	RateLimitUserspace = "userspace"
	RateLimitOff       = "off"
)

// Var describes one environment variable: the README table is written from
// the same facts, and TestVarsDocumented keeps the two in step.
type Var struct {
	Name    string
	Default string
	Meaning string
}

// Vars lists every variable FromEnv reads, in the order of the README table.
var Vars = []Var{
	{"WARDEN_INBOUND_ADDR", "0.0.0.0:15443", "mTLS listener for inbound requests"},
	{"WARDEN_UPSTREAM_ADDR", "127.0.0.1:8080", "the app, plaintext HTTP on loopback"},
	{"WARDEN_UPSTREAM_PORT", "", "the app's port: when set, it replaces the port of WARDEN_UPSTREAM_ADDR (the webhook's `warden.io/upstream-port` annotation)"},
	{"WARDEN_ADMIN_ADDR", "127.0.0.1:15000", "plaintext admin server (health, readiness, state)"},
	{"WARDEN_IDENTITY", "workloadapi", "`workloadapi` (SVIDs from SPIFFE_ENDPOINT_SOCKET) or `dev` (embedded development CA)"},
	{"SPIFFE_ENDPOINT_SOCKET", "", "Workload API socket, e.g. `unix:///run/spire/sockets/agent.sock`; required in workloadapi mode"},
	{"WARDEN_DEV_DIR", "./.warden-dev", "dev mode: where the development CA lives and `ca.pem` (the trust bundle) is written"},
	{"WARDEN_SPIFFE_ID", "spiffe://warden.local/ns/default/sa/app", "dev mode: warden's own SPIFFE ID"},
	{"WARDEN_TRUST_DOMAIN", "", "trust domain whose members are allowed when WARDEN_ALLOWED_PEERS is empty; empty: the trust domain of the own SVID"},
	{"WARDEN_ALLOWED_PEERS", "", "comma-separated SPIFFE IDs or prefixes ending in `/*`; empty: any ID in the trust domain; others get 403"},
	{"WARDEN_IDENTITY_TIMEOUT", "30s", "workloadapi mode: how long startup waits for the first SVID (`/readyz` answers 503 meanwhile) before warden exits with an error naming the socket"},
	{"WARDEN_OUTBOUND_ADDR", "127.0.0.1:15001", "plaintext HTTP listener where the app sends outbound requests, loopback only; it starts when WARDEN_OUTBOUND_ROUTES is set; `off` turns it off"},
	{"WARDEN_OUTBOUND_ROUTES", "", "comma-separated `host=addr|spiffe-id` routes: a request with that Host goes over mTLS to `addr`, which must present `spiffe-id`; any other Host gets 403 `unknown_destination`"},
	{"WARDEN_OUTBOUND_TIMEOUT", "30s", "time for a destination to send its whole response to an outbound request; no answer by then: 504"},
	{"WARDEN_UPSTREAM_TIMEOUT", "30s", "time for the app to send its whole response (like Envoy's route timeout); no answer by then: 504"},
	{"WARDEN_UPSTREAM_MAX_CONNS", "1024", "maximum open connections to the app"},
	{"WARDEN_READ_TIMEOUT", "30s", "time for a client to send a whole request (and the TLS handshake)"},
	{"WARDEN_WRITE_TIMEOUT", "30s", "time to write a response to a client"},
	{"WARDEN_IDLE_TIMEOUT", "120s", "keep-alive connections idle this long are closed"},
	{"WARDEN_MAX_HEADER_BYTES", "16384", "largest request header block; larger gets 431"},
	{"WARDEN_MAX_REQUEST_BODY_BYTES", "4194304", "largest request body; larger gets 413"},
	{"WARDEN_MAX_CONNECTIONS", "10000", "concurrent inbound connections; more are refused"},
	{"WARDEN_DRAIN_TIMEOUT", "15s", "on SIGTERM/SIGINT, time in-flight requests get to finish"},
	{"WARDEN_HANDSHAKE_TIMEOUT", "5s", "time a client gets to complete the TLS handshake, whatever WARDEN_READ_TIMEOUT allows: unauthenticated connections cannot hold the connection slots"},
	{"WARDEN_ALLOW_GET_BODY", "false", "`true` forwards a body on `GET`, `HEAD`, `OPTIONS` and `TRACE`; `false`: such a request gets 400 (an app that ignores the body would read it as a second request)"},
	{"WARDEN_PATH_SEMICOLON", "reject", "`reject`: a `;` in the path (raw or `%3B`) gets 400, since servlet containers strip `;` parameters and route to another resource than the policy decided on; `keep`: a raw `;` is forwarded as sent (for apps with matrix parameters; unsafe in front of Tomcat, Jetty or Spring), `%3B` still gets 400"},
	{"WARDEN_HEADERS_WITH_UNDERSCORES", "drop", "header names with `_`, which CGI, WSGI, Rack and PHP merge with their `-` twin: `drop` (removed before policy and app), `reject` (400) or `allow`"},
	{"WARDEN_STRIP_HEADERS", "X-Original-URL,X-Rewrite-URL,X-Forwarded-Host,X-Forwarded-Prefix,Forwarded,X-Real-IP", "comma-separated request headers removed before policy and app (routing overrides apps and frameworks trust); `none`: strip nothing"},
	{"WARDEN_ALLOW_METHOD_OVERRIDE", "false", "`true` forwards `X-HTTP-Method-Override`, `X-HTTP-Method` and `X-Method-Override`; `false`: a request carrying one gets 400 (the app would run another method than the policy decided on)"},
	{"WARDEN_ALLOWED_METHODS", "GET,HEAD,POST,PUT,PATCH,DELETE,OPTIONS", "comma-separated request methods; any other gets 405 with `Allow`"},
	{"WARDEN_MAX_HEADERS", "100", "most request header lines; more gets 431"},
	{"WARDEN_POLICY_BUNDLE", "", "policy bundle: a directory, a `.tar.gz` file or an `http(s)://` bundle URL; empty: the default bundle embedded from `bundle/default/`"},
	{"WARDEN_POLICY_POLL_INTERVAL", "30s", "how often the bundle source is checked for a new revision (URLs with `If-None-Match`; files and directories for changes)"},
	{"WARDEN_POLICY_VERIFICATION_KEY", "", "PEM public key (or HS256 shared-secret file) that bundles must be signed with; empty: signatures are not required"},
	{"WARDEN_POLICY_VERIFICATION_ALG", "", "signing algorithm of the key (`RS256`, `ES256`, `HS256`, ...); empty: inferred from the key"},
	{"WARDEN_POLICY_DECISION", "warden/authz/allow", "the rule that decides, as a path under `data`"},
	{"WARDEN_POLICY_CACHE_SIZE", "10000", "decisions cached per bundle revision; 0 turns the cache off"},
	{"WARDEN_POLICY_CACHE_TTL", "60s", "how long a decision without its own `cache_ttl_seconds` stays cached"},
	{"WARDEN_POLICY_CACHE_BYTES", "33554432", "bytes the decision cache may hold per bundle revision (keys and decisions); least recently used decisions go first"},
	{"WARDEN_POLICY_ALLOW_NETWORK", "false", "`true` lets policies call builtins that do network I/O (`http.send`, `net.lookup_ip_addr`); `false`: a bundle using them is rejected"},
	{"WARDEN_POLICY_EVAL_TIMEOUT", "100ms", "longest policy evaluation; a request whose evaluation takes longer is denied (403) and `policy_eval_timeout` logged"},
	{"WARDEN_DECISION_LOG", "stderr", "where decision log lines go: `stderr`, `stdout` or a file path (appended)"},
	{"WARDEN_JWT_JWKS", "", "keys to verify request tokens (JWTs) with: a JWKS file, an `http(s)://` JWKS URL, or `spiffe` for the Workload API's JWT bundles (JWT-SVIDs; workloadapi mode only); empty: tokens are not verified"},
	{"WARDEN_JWT_JWKS_REFRESH", "5m", "how often a JWKS file or URL is loaded again; a token naming an unknown `kid` also triggers a load, at most once per 30s"},
	{"WARDEN_JWT_ISSUERS", "", "comma-separated accepted `iss` values; required with a JWKS file or URL; with `spiffe`, optional (empty: `iss` is not checked)"},
	{"WARDEN_JWT_AUDIENCES", "", "comma-separated accepted `aud` values, of which a token must name one; required when WARDEN_JWT_JWKS is set"},
	{"WARDEN_JWT_ALGORITHMS", "RS256,ES256,EdDSA,PS256", "accepted signature algorithms (RS*, PS*, ES*, EdDSA); `none` and HMAC (`HS*`) are refused"},
	{"WARDEN_JWT_CLOCK_SKEW", "30s", "tolerance on a token's `exp`, `nbf` and `iat`"},
	{"WARDEN_JWT_REQUIRED", "true", "`true`: a request without a token gets 401; `false`: it reaches the policy without `input.token` (an invalid token still gets 401)"},
	{"WARDEN_JWT_HEADER", "Authorization", "the request header carrying the token (`Bearer ` prefix; optional in another header); never the query string"},
	{"WARDEN_RATE_LIMIT_MODE", "auto", "`auto` (eBPF when a conn or packet rate is set and it loads, else the userspace limiter), `ebpf` (startup fails with the kernel's error if it can't load), `userspace` or `off`"},
	{"WARDEN_BPF_INTERFACE", "", "interface the eBPF program attaches to; empty: the one that carries the route to the inbound address (`eth0` in a pod)"},
	{"WARDEN_BPF_ATTACH", "xdp", "`xdp` (native where the driver supports it, else generic) or `tc` (TCX ingress)"},
	{"WARDEN_CONN_RATE_LIMIT", "0", "new connections (SYNs) per second per source IP to the inbound port; 0: unlimited"},
	{"WARDEN_CONN_BURST", "0", "token bucket size for WARDEN_CONN_RATE_LIMIT; 0: equal to the rate"},
	{"WARDEN_PACKET_RATE_LIMIT", "0", "packets per second per connection (5-tuple) to the inbound port; the userspace limiter counts HTTP requests instead and answers 429; 0: unlimited"},
	{"WARDEN_PACKET_BURST", "0", "token bucket size for WARDEN_PACKET_RATE_LIMIT; 0: equal to the rate"},
	{"WARDEN_BPF_MAX_SOURCES", "65536", "entries in the per-source LRU map (least recently seen sources are forgotten first)"},
	{"WARDEN_BPF_MAX_CONNS", "262144", "entries in the per-connection LRU map"},
	{"WARDEN_ADMIN_PPROF", "false", "`true` serves Go's profiler under `/debug/pprof/` on the admin address"},
	{"WARDEN_LOG_LEVEL", "info", "`debug`, `info`, `warn` or `error`"},
	{"WARDEN_LOG_FORMAT", "json", "`json` or `console`"},
}

func defaultOf(name string) string {
	for _, table := range [][]Var{Vars, InitVars, WebhookVars} {
		for _, v := range table {
			if v.Name == name {
				return v.Default
			}
		}
	}
	panic("config: no variable " + name)
}

// FromEnv builds and validates the configuration. getenv is os.Getenv in
// production and a map lookup in tests. The first invalid value stops it
// with an error naming the variable, the value and what was expected.
func FromEnv(getenv func(string) string) (Config, error) {
	return fromEnv(&parser{getenv: getenv})
}

// Validate runs FromEnv's checks on an environment that is not this
// process's own: the one the webhook gives a pod's sidecar. It skips what
// only the pod can see, whether the files named by WARDEN_POLICY_BUNDLE,
// WARDEN_POLICY_VERIFICATION_KEY and WARDEN_JWT_JWKS exist; the sidecar
// checks those when it starts.
func Validate(getenv func(string) string) error {
	_, err := fromEnv(&parser{getenv: getenv, noFS: true})
	return err
}

func fromEnv(p *parser) (Config, error) {
	getenv := p.getenv
	c := Config{
		InboundAddr:            p.addr("WARDEN_INBOUND_ADDR"),
		UpstreamAddr:           p.addr("WARDEN_UPSTREAM_ADDR"),
		AdminAddr:              p.addr("WARDEN_ADMIN_ADDR"),
		Identity:               p.oneOf("WARDEN_IDENTITY", IdentityWorkloadAPI, IdentityDev),
		SPIFFESocket:           p.str("SPIFFE_ENDPOINT_SOCKET"),
		DevDir:                 p.str("WARDEN_DEV_DIR"),
		AllowedPeers:           p.str("WARDEN_ALLOWED_PEERS"),
		IdentityTimeout:        p.duration("WARDEN_IDENTITY_TIMEOUT"),
		OutboundAddr:           p.outboundAddr("WARDEN_OUTBOUND_ADDR"),
		OutboundRoutes:         p.routes("WARDEN_OUTBOUND_ROUTES"),
		OutboundTimeout:        p.duration("WARDEN_OUTBOUND_TIMEOUT"),
		UpstreamTimeout:        p.duration("WARDEN_UPSTREAM_TIMEOUT"),
		UpstreamMaxConns:       p.positiveInt("WARDEN_UPSTREAM_MAX_CONNS"),
		ReadTimeout:            p.duration("WARDEN_READ_TIMEOUT"),
		WriteTimeout:           p.duration("WARDEN_WRITE_TIMEOUT"),
		IdleTimeout:            p.duration("WARDEN_IDLE_TIMEOUT"),
		MaxHeaderBytes:         p.positiveInt("WARDEN_MAX_HEADER_BYTES"),
		MaxRequestBodyBytes:    p.positiveInt("WARDEN_MAX_REQUEST_BODY_BYTES"),
		MaxConnections:         p.positiveInt("WARDEN_MAX_CONNECTIONS"),
		DrainTimeout:           p.duration("WARDEN_DRAIN_TIMEOUT"),
		HandshakeTimeout:       p.duration("WARDEN_HANDSHAKE_TIMEOUT"),
		AllowGetBody:           p.oneOf("WARDEN_ALLOW_GET_BODY", "true", "false") == "true",
		PathSemicolon:          p.oneOf("WARDEN_PATH_SEMICOLON", PathSemicolonReject, PathSemicolonKeep),
		HeadersWithUnderscores: p.oneOf("WARDEN_HEADERS_WITH_UNDERSCORES", UnderscoresDrop, UnderscoresReject, UnderscoresAllow),
		StripHeaders:           p.headerNames("WARDEN_STRIP_HEADERS", StripNone),
		AllowMethodOverride:    p.oneOf("WARDEN_ALLOW_METHOD_OVERRIDE", "true", "false") == "true",
		AllowedMethods:         p.methods("WARDEN_ALLOWED_METHODS"),
		MaxHeaders:             p.positiveInt("WARDEN_MAX_HEADERS"),
		PolicyBundle:           p.bundleSource("WARDEN_POLICY_BUNDLE"),
		PolicyPollInterval:     p.duration("WARDEN_POLICY_POLL_INTERVAL"),
		PolicyVerificationKey:  p.file("WARDEN_POLICY_VERIFICATION_KEY"),
		PolicyVerificationAlg:  p.str("WARDEN_POLICY_VERIFICATION_ALG"),
		PolicyDecision:         p.rulePath("WARDEN_POLICY_DECISION"),
		PolicyCacheSize:        p.nonNegativeInt("WARDEN_POLICY_CACHE_SIZE"),
		PolicyCacheTTL:         p.duration("WARDEN_POLICY_CACHE_TTL"),
		PolicyCacheBytes:       int64(p.nonNegativeInt("WARDEN_POLICY_CACHE_BYTES")),
		PolicyAllowNetwork:     p.oneOf("WARDEN_POLICY_ALLOW_NETWORK", "true", "false") == "true",
		PolicyEvalTimeout:      p.duration("WARDEN_POLICY_EVAL_TIMEOUT"),
		DecisionLog:            p.str("WARDEN_DECISION_LOG"),
		JWTJWKS:                p.jwks("WARDEN_JWT_JWKS"),
		JWTJWKSRefresh:         p.duration("WARDEN_JWT_JWKS_REFRESH"),
		JWTIssuers:             p.list("WARDEN_JWT_ISSUERS"),
		JWTAudiences:           p.list("WARDEN_JWT_AUDIENCES"),
		JWTAlgorithms:          p.algorithms("WARDEN_JWT_ALGORITHMS"),
		JWTClockSkew:           p.nonNegativeDuration("WARDEN_JWT_CLOCK_SKEW"),
		JWTRequired:            p.oneOf("WARDEN_JWT_REQUIRED", "true", "false") == "true",
		JWTHeader:              p.tokenHeader("WARDEN_JWT_HEADER"),
		RateLimitMode:          p.oneOf("WARDEN_RATE_LIMIT_MODE", RateLimitAuto, RateLimitEBPF, RateLimitUserspace, RateLimitOff),
		BPFInterface:           p.iface("WARDEN_BPF_INTERFACE"),
		BPFAttach:              p.oneOf("WARDEN_BPF_ATTACH", "xdp", "tc"),
		ConnRateLimit:          p.rate("WARDEN_CONN_RATE_LIMIT"),
		ConnBurst:              p.rate("WARDEN_CONN_BURST"),
		PacketRateLimit:        p.rate("WARDEN_PACKET_RATE_LIMIT"),
		PacketBurst:            p.rate("WARDEN_PACKET_BURST"),
		BPFMaxSources:          p.positiveInt("WARDEN_BPF_MAX_SOURCES"),
		BPFMaxConns:            p.positiveInt("WARDEN_BPF_MAX_CONNS"),
		AdminPprof:             p.oneOf("WARDEN_ADMIN_PPROF", "true", "false") == "true",
		LogLevel:               p.oneOf("WARDEN_LOG_LEVEL", "debug", "info", "warn", "error"),
		LogFormat:              p.oneOf("WARDEN_LOG_FORMAT", "json", "console"),
	}
	if c.MaxHeaderBytes < 1024 && p.err == nil {
		p.fail("WARDEN_MAX_HEADER_BYTES", getenv("WARDEN_MAX_HEADER_BYTES"), "a size of at least 1024 bytes")
	}
	c.UpstreamAddr, c.UpstreamPort = p.upstreamPort("WARDEN_UPSTREAM_PORT", c.UpstreamAddr)
	if p.err == nil {
		c.RedirectPorts, c.RedirectAll = p.redirectPorts(portOf(c.InboundAddr), portOf(c.AdminAddr),
			func(name string) int { return portOf(p.addr(name)) })
	}
	c.SPIFFEID = p.spiffeID("WARDEN_SPIFFE_ID")
	c.TrustDomain = p.trustDomain("WARDEN_TRUST_DOMAIN")
	if p.err != nil {
		return Config{}, p.err
	}

	if c.Identity == IdentityWorkloadAPI && c.SPIFFESocket == "" {
		return Config{}, errors.New("config: WARDEN_IDENTITY=workloadapi needs SPIFFE_ENDPOINT_SOCKET (e.g. unix:///run/spire/sockets/agent.sock); set it, or set WARDEN_IDENTITY=dev for the development identity")
	}
	if c.Identity == IdentityWorkloadAPI {
		if err := workloadapi.ValidateAddress(c.SPIFFESocket); err != nil {
			return Config{}, fmt.Errorf("config: SPIFFE_ENDPOINT_SOCKET=%q: expected unix:///path/to/agent.sock or tcp://IP:port: %w", c.SPIFFESocket, err)
		}
	}
	if c.Identity == IdentityDev && c.DevDir == "" {
		return Config{}, errors.New("config: WARDEN_DEV_DIR is empty: expected a directory for the development CA")
	}
	if err := checkJWT(c, getenv); err != nil {
		return Config{}, err
	}
	// The allow-list is checked now, against the trust domain known so far,
	// so that a typo stops startup; the agent builds the matcher again once
	// the own SVID (and so the default trust domain) is known.
	td := c.TrustDomain
	if td.IsZero() {
		td = c.SPIFFEID.TrustDomain()
	}
	if _, err := spiffe.ParsePeerMatcher(c.AllowedPeers, td); err != nil {
		return Config{}, fmt.Errorf("config: WARDEN_ALLOWED_PEERS=%q: expected comma-separated SPIFFE IDs or prefixes ending in /*: %w", c.AllowedPeers, err)
	}
	return c, nil
}

// checkJWT validates the WARDEN_JWT_* variables together.
func checkJWT(c Config, getenv func(string) string) error {
	if c.JWTJWKS == "" {
		for _, v := range Vars {
			if strings.HasPrefix(v.Name, "WARDEN_JWT_") && strings.TrimSpace(getenv(v.Name)) != "" {
				return fmt.Errorf("config: %s is set but WARDEN_JWT_JWKS is empty: expected WARDEN_JWT_JWKS (a JWKS file, an http(s):// JWKS URL or %s) to verify tokens with", v.Name, JWKSSPIFFE)
			}
		}
		return nil
	}
	if c.JWTJWKS == JWKSSPIFFE && c.Identity != IdentityWorkloadAPI {
		return fmt.Errorf("config: WARDEN_JWT_JWKS=%s needs WARDEN_IDENTITY=workloadapi (JWT bundles come from the Workload API), not WARDEN_IDENTITY=%s; in dev mode use a JWKS file or URL", JWKSSPIFFE, c.Identity)
	}
	if c.JWTJWKS == JWKSSPIFFE && !slices.ContainsFunc(c.JWTAlgorithms, func(a string) bool { return slices.Contains(token.JWTSVIDAlgorithms, a) }) {
		return fmt.Errorf("config: WARDEN_JWT_ALGORITHMS=%q: expected at least one JWT-SVID algorithm (%s) with WARDEN_JWT_JWKS=%s",
			strings.Join(c.JWTAlgorithms, ","), strings.Join(token.JWTSVIDAlgorithms, ", "), JWKSSPIFFE)
	}
	if c.JWTJWKS != JWKSSPIFFE && len(c.JWTIssuers) == 0 {
		return fmt.Errorf("config: WARDEN_JWT_ISSUERS is empty: expected the comma-separated iss values tokens verified with WARDEN_JWT_JWKS=%s may carry", c.JWTJWKS)
	}
	if len(c.JWTAudiences) == 0 {
		return errors.New("config: WARDEN_JWT_AUDIENCES is empty: expected the comma-separated aud values that name this service (a token meant for another service must not be accepted here)")
	}
	return nil
}

// Overrides lists the variables set to something other than their default,
// for the startup log line. URLs are shown as scheme://host/path: a bundle
// or JWKS URL may carry a password or a signed query.
func Overrides(getenv func(string) string) map[string]string {
	out := make(map[string]string)
	for _, v := range Vars {
		if val := getenv(v.Name); val != "" && val != v.Default {
			out[v.Name] = redact.URL(val)
		}
	}
	return out
}

// parser reads variables and keeps the first error, so FromEnv reads as a
// list of fields rather than a ladder of checks.
type parser struct {
	getenv func(string) string
	noFS   bool // Validate: files named by variables are not checked
	err    error
}

func (p *parser) raw(name string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return defaultOf(name)
}

func (p *parser) fail(name, value, expected string) {
	if p.err == nil {
		p.err = fmt.Errorf("config: %s=%q: expected %s", name, redact.URL(value), expected)
	}
}

func (p *parser) str(name string) string {
	return p.raw(name)
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

// outboundAddr accepts OutboundOff or a loopback host:port: the listener
// relays plaintext from the app into mTLS with the pod's identity, so
// anything that can reach it speaks as the pod.
func (p *parser) outboundAddr(name string) string {
	if p.raw(name) == OutboundOff {
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
		const form = "host=addr|spiffe-id, e.g. orders=10.0.0.7:15443|spiffe://example.org/ns/shop/sa/orders"
		host, rest, ok := strings.Cut(entry, "=")
		addr, id, ok2 := strings.Cut(rest, "|")
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
		out = append(out, Route{Host: host, Addr: addr, ID: sid})
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

// jwks accepts "", spiffe, an http(s) URL, or a readable regular file.
func (p *parser) jwks(name string) string {
	v := p.raw(name)
	switch {
	case v == "" || v == JWKSSPIFFE:
		return v
	case strings.Contains(v, "://"):
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.fail(name, v, "a readable JWKS file, an http:// or https:// JWKS URL, or "+JWKSSPIFFE)
			return ""
		}
		return v
	}
	if p.noFS {
		return v
	}
	if info, err := os.Stat(v); err != nil || !info.Mode().IsRegular() {
		p.fail(name, v, "a readable JWKS file, an http:// or https:// JWKS URL, or "+JWKSSPIFFE)
	}
	return v
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

func (p *parser) positiveInt(name string) int {
	v := p.raw(name)
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		p.fail(name, v, "a positive integer")
		return 0
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

func (p *parser) nonNegativeInt(name string) int {
	v := p.raw(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		p.fail(name, v, "a whole number, 0 or more")
		return 0
	}
	return n
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

// Dev is the part of the configuration `warden dev issue` needs.
type Dev struct {
	DevDir   string
	SPIFFEID spiffeid.ID
}

// DevFromEnv reads WARDEN_DEV_DIR and WARDEN_SPIFFE_ID alone, so that issuing
// a client SVID does not require a complete sidecar configuration.
func DevFromEnv(getenv func(string) string) (Dev, error) {
	p := parser{getenv: getenv}
	d := Dev{DevDir: p.str("WARDEN_DEV_DIR"), SPIFFEID: p.spiffeID("WARDEN_SPIFFE_ID")}
	return d, p.err
}
