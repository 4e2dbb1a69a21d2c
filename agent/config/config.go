// Package config turns warden's environment into one validated Config. It is
// the only package that reads the environment, and it does so once, at
// startup: every later decision reads the struct.
//
// table.go declares every variable once (Vars): default, meaning, readers
// and the setter that parses it. parse.go and parse_security.go hold the
// value parsers, errors.go the *Error they return; this file, init.go and
// webhook.go hold what each process gets (Config, Init, Webhook) and the
// checks across variables.
package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/warden-sidecar/warden/agent/token"
	"github.com/warden-sidecar/warden/internal/appprobe"
	"github.com/warden-sidecar/warden/internal/redact"
	"github.com/warden-sidecar/warden/spiffe"
)

// Identity modes for WARDEN_IDENTITY.
const (
	IdentityWorkloadAPI = "workloadapi"
	IdentityDev         = "dev"
)

// Protocols to the app (WARDEN_UPSTREAM_PROTOCOL).
const (
	UpstreamHTTP1 = "http1"
	UpstreamH2C   = "h2c"
	UpstreamAuto  = "auto"
)

// ALPN names of WARDEN_INBOUND_PROTOCOLS.
const (
	ProtocolH2     = "h2"
	ProtocolHTTP11 = "http/1.1"
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
	UpstreamAffinity    bool     // WARDEN_UPSTREAM_AFFINITY=on
	UpstreamProtocol    string   // UpstreamHTTP1, UpstreamH2C or UpstreamAuto
	InboundProtocols    []string // ALPN names, in order of preference: "h2", "http/1.1"
	H2MaxStreams        int
	ReadTimeout         time.Duration
	WriteTimeout        time.Duration
	IdleTimeout         time.Duration
	MaxHeaderBytes      int
	MaxRequestBodyBytes int
	MaxConnections      int
	DrainTimeout        time.Duration
	HandshakeTimeout    time.Duration
	// AllowUpgrade are the lower-case Upgrade tokens (WARDEN_ALLOW_UPGRADE)
	// tunnelled to the app after the upgrade request is allowed; empty:
	// none.
	AllowUpgrade []string

	// Request hardening: how warden reads what the app could read otherwise.
	AllowGetBody           bool
	PathSemicolon          string // PathSemicolonReject or PathSemicolonKeep
	HeadersWithUnderscores string // UnderscoresDrop, UnderscoresReject or UnderscoresAllow
	StripHeaders           []string
	AllowMethodOverride    bool
	AllowedMethods         []string
	MaxHeaders             int

	// Input threat protection: body limits, the API's own description.
	JSONProtection     bool
	JSON               JSONLimits
	XMLProtection      bool
	XML                XMLLimits
	OpenAPISpec        string // "" = no OpenAPI validation
	OpenAPIPoll        time.Duration
	PolicyBody         string // PolicyBodyOff or PolicyBodyJSON
	PolicyBodyMaxBytes int

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
	DecisionLog           string  // "stderr", "stdout" or a file path
	DecisionLogSample     float64 // 0..1: the share of allowed, cached decisions logged
	AccessLog             string  // "combined", "separate" or "off"
	SecurityLog           string  // "stderr", "stdout", a file path, or syslog://host:port, syslog+tcp://host:port

	// Tracing; off when OTLPEndpoint is "".
	OTLPEndpoint string
	OTLPProtocol string // "grpc" or "http/protobuf"
	TraceSample  float64

	// JWT verification; off when JWTJWKS is "".
	JWTJWKS        string // "", JWKSSPIFFE, an http(s) URL or a file path
	JWTJWKSRefresh time.Duration
	JWTIssuers     []string // empty only with JWKSSPIFFE: iss is not checked
	JWTAudiences   []string
	JWTAlgorithms  []string
	JWTClockSkew   time.Duration
	JWTRequired    bool
	JWTHeader      string // canonical form, e.g. Authorization

	// Signed requests (RFC 9421); off when SignatureKeys is "".
	SignatureKeys       string // a JWKS file or http(s) URL
	SignatureRequired   bool
	SignatureComponents []string
	SignatureMaxAge     time.Duration
	OutboundSigningKey  string // "", SigningKeySVID or a PEM file

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
	// The sockmap fast path between warden and the app.
	FastPath       string // FastPathAuto, FastPathSockmap or FastPathOff
	FastPathCgroup string // "" = warden's own cgroup v2; FastPathCgroupPod = the pod's
	// FastPathHostCgroup is the node's /sys/fs/cgroup as mounted in
	// warden's container, where FastPathCgroupPod is looked for.
	FastPathHostCgroup string
	PodUID             string // metadata.uid; "" = not given
	// Layer 7 limits, applied by the pipeline after the policy allowed: a
	// decision's rate_limit, else the per-peer default.
	PeerRateLimit int // requests per second per peer SPIFFE ID; 0 = unlimited
	PeerBurst     int // 0 = the rate
	RateLimitKeys int // buckets kept, least recently used forgotten first
	// Active defense: decoys and blocks.
	HoneypotPaths    []string       // exact paths, or prefixes ending in "/*"
	HoneypotBlockFor time.Duration  // 0: decoys block nobody
	MaxBlockFor      time.Duration  // cap of a decision's block_for_seconds; 0: policies block nobody
	BlockExempt      []netip.Prefix // never blocked
	IPv6Prefix       int            // IPv6 sources are blocked per prefix of this length
	// The app ports `warden init` redirects to the inbound port
	// (WARDEN_REDIRECT_PORTS): the kernel limiter sees packets before the
	// redirect, so it limits these ports too (all but admin with RedirectAll).
	RedirectPorts []int
	RedirectAll   bool

	AdminPprof bool
	AppProbes  appprobe.Set // the app's probes served on /app-health/; nil: none

	LogLevel  string
	LogFormat string
}

// JSONLimits are the WARDEN_JSON_MAX_* limits.
type JSONLimits struct{ MaxDepth, MaxKeys, MaxArray, MaxString, MaxNumber int }

// XMLLimits are the WARDEN_XML_MAX_* limits.
type XMLLimits struct{ MaxDepth, MaxAttributes, MaxElements, MaxText int }

// Route is one entry of WARDEN_OUTBOUND_ROUTES: requests whose Host is Host
// go over mTLS to Addr, which must present the SVID ID.
type Route struct {
	Host  string // lower case; "name" matches any port, "name:port" only that one
	Addr  string // host:port of the destination's warden (inbound listener)
	ID    spiffeid.ID
	Proto string // RouteHTTP1 (no ";proto=": the former routes) or RouteH2
}

// Values of a route's ";proto=": the protocol spoken to the destination.
const (
	RouteHTTP1 = "http1"
	RouteH2    = "h2"
)

// JWKSSPIFFE is the WARDEN_JWT_JWKS value that verifies JWT-SVIDs with the
// Workload API's JWT bundles.
const JWKSSPIFFE = "spiffe"

// OutboundOff is the former WARDEN_OUTBOUND_ADDR value that turns the
// outbound listener off; an explicitly empty value does the same now, and
// off keeps working until it is retired.
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

// StripNone is the former WARDEN_STRIP_HEADERS value that strips nothing;
// an explicitly empty value does the same now, and none keeps working until
// it is retired.
const StripNone = "none"

// Values of WARDEN_JSON_PROTECTION and WARDEN_XML_PROTECTION.
const (
	ProtectionOn  = "on"
	ProtectionOff = "off"
)

// SigningKeySVID is the WARDEN_OUTBOUND_SIGNING_KEY value that signs with
// warden's own SVID key.
const SigningKeySVID = "svid"

// Values of WARDEN_POLICY_BODY.
const (
	PolicyBodyOff  = "off"
	PolicyBodyJSON = "json"
)

// Fast path modes for WARDEN_FAST_PATH.
const (
	FastPathAuto    = "auto"
	FastPathSockmap = "sockmap"
	FastPathOff     = "off"
	// FastPathCgroupPod is WARDEN_FAST_PATH_CGROUP's name for the pod's
	// cgroup, found by WARDEN_POD_UID under WARDEN_FAST_PATH_HOST_CGROUP.
	FastPathCgroupPod = "pod"
)

// Rate limit modes for WARDEN_RATE_LIMIT_MODE.
const (
	RateLimitAuto      = "auto"
	RateLimitEBPF      = "ebpf"
	RateLimitUserspace = "userspace"
	RateLimitOff       = "off"
)

// FromEnv builds and validates the configuration. env is os.LookupEnv in
// production, or a map lookup in tests; a getenv function works too, with
// an empty value read as unset. The first invalid value stops it with an
// *Error naming the variable, the value and what was expected.
func FromEnv[E Env](env E) (Config, error) {
	return fromEnv(newParser(env))
}

// Validate runs FromEnv's checks on an environment that is not this
// process's own: the one the webhook gives a pod's sidecar. It skips what
// only the pod can see, whether the files named by WARDEN_POLICY_BUNDLE,
// WARDEN_POLICY_VERIFICATION_KEY and WARDEN_JWT_JWKS exist; the sidecar
// checks those when it starts.
func Validate[E Env](env E) error {
	_, err := Check(env)
	return err
}

// Check is Validate, returning the configuration the sidecar will make of
// env (the webhook derives the pod's ports and capabilities from it).
func Check[E Env](env E) (Config, error) {
	p := newParser(env)
	p.noFS = true
	return fromEnv(p)
}

func fromEnv(p *parser) (Config, error) {
	var v values
	p.parse(&v, BySidecar)
	if p.err != nil {
		return Config{}, p.err
	}
	if err := check(v.Config, p); err != nil {
		return Config{}, err
	}
	return v.Config, nil
}

// check validates what involves more than one variable.
func check(c Config, p *parser) error {
	if c.Identity == IdentityWorkloadAPI && c.SPIFFESocket == "" {
		return &Error{Variable: "SPIFFE_ENDPOINT_SOCKET", Related: "WARDEN_IDENTITY", Expected: "a Workload API socket with WARDEN_IDENTITY=workloadapi",
			msg: "config: WARDEN_IDENTITY=workloadapi needs SPIFFE_ENDPOINT_SOCKET (e.g. unix:///run/spire/sockets/agent.sock); set it, or set WARDEN_IDENTITY=dev for the development identity"}
	}
	if c.Identity == IdentityWorkloadAPI {
		if err := workloadapi.ValidateAddress(c.SPIFFESocket); err != nil {
			e := invalid("SPIFFE_ENDPOINT_SOCKET", c.SPIFFESocket, "unix:///path/to/agent.sock or tcp://IP:port")
			e.err = err
			return e
		}
	}
	if c.Identity == IdentityDev && c.DevDir == "" {
		return emptyError("WARDEN_DEV_DIR", "", "a directory for the development CA")
	}
	if len(c.HoneypotPaths) > 0 && c.HoneypotBlockFor > 0 && c.RateLimitMode == RateLimitOff {
		return &Error{Variable: "WARDEN_HONEYPOT_BLOCK_FOR", Value: c.HoneypotBlockFor.String(), Related: "WARDEN_RATE_LIMIT_MODE",
			Expected: "0 with WARDEN_RATE_LIMIT_MODE=off",
			msg: "config: WARDEN_HONEYPOT_PATHS blocks decoy hitters for WARDEN_HONEYPOT_BLOCK_FOR=" + c.HoneypotBlockFor.String() +
				", but WARDEN_RATE_LIMIT_MODE=off blocks nobody: set WARDEN_HONEYPOT_BLOCK_FOR=0, or another WARDEN_RATE_LIMIT_MODE"}
	}
	if c.FastPathCgroup == FastPathCgroupPod && c.PodUID == "" && c.FastPath != FastPathOff {
		return emptyError("WARDEN_POD_UID", "WARDEN_FAST_PATH_CGROUP", "the pod's UID (metadata.uid, through the downward API) with WARDEN_FAST_PATH_CGROUP=pod")
	}
	if err := checkJWT(c, p); err != nil {
		return err
	}
	// The allow-list is checked now, against the trust domain known so far,
	// so that a typo stops startup; the agent builds the matcher again once
	// the own SVID (and so the default trust domain) is known.
	td := c.TrustDomain
	if td.IsZero() {
		td = c.SPIFFEID.TrustDomain()
	}
	if _, err := spiffe.ParsePeerMatcher(c.AllowedPeers, td); err != nil {
		const expected = "comma-separated SPIFFE IDs or prefixes ending in /*"
		return &Error{Variable: "WARDEN_ALLOWED_PEERS", Value: redact.URL(c.AllowedPeers), Expected: expected, err: err,
			msg: fmt.Sprintf("config: WARDEN_ALLOWED_PEERS=%q: expected %s: %v", c.AllowedPeers, expected, err)}
	}
	return nil
}

// checkJWT validates the WARDEN_JWT_* variables together.
func checkJWT(c Config, p *parser) error {
	if c.JWTJWKS == "" {
		for _, v := range Vars {
			if strings.HasPrefix(v.Name, "WARDEN_JWT_") && p.set(v.Name) {
				expected := "WARDEN_JWT_JWKS (a JWKS file, an http(s):// JWKS URL or " + JWKSSPIFFE + ") to verify tokens with"
				return &Error{Variable: v.Name, Related: "WARDEN_JWT_JWKS", Expected: expected,
					msg: "config: " + v.Name + " is set but WARDEN_JWT_JWKS is empty: expected " + expected}
			}
		}
		return nil
	}
	if c.JWTJWKS == JWKSSPIFFE && c.Identity != IdentityWorkloadAPI {
		return &Error{Variable: "WARDEN_JWT_JWKS", Value: JWKSSPIFFE, Related: "WARDEN_IDENTITY", Expected: "WARDEN_IDENTITY=workloadapi",
			msg: fmt.Sprintf("config: WARDEN_JWT_JWKS=%s needs WARDEN_IDENTITY=workloadapi (JWT bundles come from the Workload API), not WARDEN_IDENTITY=%s; in dev mode use a JWKS file or URL", JWKSSPIFFE, c.Identity)}
	}
	if c.JWTJWKS == JWKSSPIFFE && !slices.ContainsFunc(c.JWTAlgorithms, func(a string) bool { return slices.Contains(token.JWTSVIDAlgorithms, a) }) {
		e := invalid("WARDEN_JWT_ALGORITHMS", strings.Join(c.JWTAlgorithms, ","),
			"at least one JWT-SVID algorithm ("+strings.Join(token.JWTSVIDAlgorithms, ", ")+") with WARDEN_JWT_JWKS="+JWKSSPIFFE)
		e.Related = "WARDEN_JWT_JWKS"
		return e
	}
	if c.JWTJWKS != JWKSSPIFFE && len(c.JWTIssuers) == 0 {
		return emptyError("WARDEN_JWT_ISSUERS", "WARDEN_JWT_JWKS", "the comma-separated iss values tokens verified with WARDEN_JWT_JWKS="+c.JWTJWKS+" may carry")
	}
	if len(c.JWTAudiences) == 0 {
		return emptyError("WARDEN_JWT_AUDIENCES", "", "the comma-separated aud values that name this service (a token meant for another service must not be accepted here)")
	}
	return nil
}

// Overrides lists the variables of the sidecar set to something other than
// their default, for the startup log line. URLs are shown as
// scheme://host/path: a bundle or JWKS URL may carry a password or a
// signed query.
func Overrides[E Env](env E) map[string]string {
	lookup := lookupOf(env)
	out := make(map[string]string)
	for _, v := range Vars {
		val, set := lookup(v.Name)
		if v.Readers&BySidecar != 0 && set && val != v.Default && (val != "" || v.Empty != "") {
			if v.Name == "WARDEN_APP_PROBES" {
				out[v.Name] = appprobe.Redacted(val) // probe headers may carry credentials
				continue
			}
			out[v.Name] = redact.URL(val)
		}
	}
	return out
}

// Dev is the part of the configuration `warden dev issue` needs.
type Dev struct {
	DevDir   string
	SPIFFEID spiffeid.ID
}

// DevFromEnv reads WARDEN_DEV_DIR and WARDEN_SPIFFE_ID alone, so that issuing
// a client SVID does not require a complete sidecar configuration.
func DevFromEnv[E Env](env E) (Dev, error) {
	p := newParser(env)
	var v values
	for _, name := range []string{"WARDEN_DEV_DIR", "WARDEN_SPIFFE_ID"} {
		byName[name].set(p, &v, name)
	}
	return Dev{DevDir: v.DevDir, SPIFFEID: v.SPIFFEID}, p.err
}
