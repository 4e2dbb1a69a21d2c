package config

// Reader is a set of the processes that read a variable.
type Reader uint8

const (
	BySidecar Reader = 1 << iota // warden: FromEnv
	ByInit                       // warden init: InitFromEnv
	ByWebhook                    // warden webhook: WebhookFromEnv
)

// Var is one environment variable. It is declared once, in Vars, and the
// rest follows from it: what each process parses, the README table
// (TestVarsDocumented), the webhook's annotations and their readers.
type Var struct {
	Name    string
	Default string
	Meaning string // the README's description
	Readers Reader
	// Empty is what an explicitly empty value means, when it is not the
	// default (WARDEN_STRIP_HEADERS= strips nothing); "": an empty or
	// blank value means the default.
	Empty string

	set setter
}

// setter parses the variable name into its field of c; the first error is
// kept by p.
type setter func(p *parser, c *values, name string)

// values is what the table's setters fill in: each process takes its part.
type values struct {
	Config
	proxyUID int // warden init only
	webhook  Webhook
}

// Vars is every variable warden, warden init and warden webhook read; the
// webhook writes a sidecar's environment in this order. Parsing runs the setters of a process's
// variables in this order, so that a setter may use the fields of the
// variables before it (WARDEN_UPSTREAM_PORT replaces the port of
// WARDEN_UPSTREAM_ADDR).
var Vars = []Var{
	{"WARDEN_INBOUND_ADDR", "0.0.0.0:15443", "mTLS listener for inbound requests", BySidecar | ByInit, "",
		func(p *parser, c *values, n string) { c.InboundAddr = p.listenAddr(n) }},
	{"WARDEN_UPSTREAM_ADDR", "127.0.0.1:8080", "the app, plaintext HTTP on loopback", BySidecar | ByInit, "",
		func(p *parser, c *values, n string) { c.UpstreamAddr = p.addr(n) }},
	{"WARDEN_UPSTREAM_PORT", "", "the app's port: when set, it replaces the port of WARDEN_UPSTREAM_ADDR (the webhook's `warden.io/upstream-port` annotation)", BySidecar | ByInit, "",
		func(p *parser, c *values, n string) {
			c.UpstreamAddr, c.UpstreamPort = p.upstreamPort(n, c.UpstreamAddr)
		}},
	{"WARDEN_ADMIN_ADDR", "127.0.0.1:15000", "plaintext admin server (health, readiness, state)", BySidecar | ByInit, "",
		func(p *parser, c *values, n string) { c.AdminAddr = p.listenAddr(n) }},
	{"WARDEN_IDENTITY", "workloadapi", "`workloadapi` (SVIDs from SPIFFE_ENDPOINT_SOCKET) or `dev` (embedded development CA)", BySidecar, "",
		func(p *parser, c *values, n string) { c.Identity = p.oneOf(n, IdentityWorkloadAPI, IdentityDev) }},
	{"SPIFFE_ENDPOINT_SOCKET", "", "Workload API socket, e.g. `unix:///run/spire/sockets/agent.sock`; required in workloadapi mode", BySidecar, "",
		func(p *parser, c *values, n string) { c.SPIFFESocket = p.str(n) }},
	{"WARDEN_DEV_DIR", "./.warden-dev", "dev mode: where the development CA lives and `ca.pem` (the trust bundle) is written", BySidecar, "",
		func(p *parser, c *values, n string) { c.DevDir = p.str(n) }},
	{"WARDEN_SPIFFE_ID", "spiffe://warden.local/ns/default/sa/app", "dev mode: warden's own SPIFFE ID", BySidecar, "",
		func(p *parser, c *values, n string) { c.SPIFFEID = p.spiffeID(n) }},
	{"WARDEN_TRUST_DOMAIN", "", "trust domain whose members are allowed when WARDEN_ALLOWED_PEERS is empty; empty: the trust domain of the own SVID", BySidecar, "",
		func(p *parser, c *values, n string) { c.TrustDomain = p.trustDomain(n) }},
	{"WARDEN_ALLOWED_PEERS", "", "comma-separated SPIFFE IDs or prefixes ending in `/*`; empty: any ID in the trust domain; others get 403", BySidecar, "",
		func(p *parser, c *values, n string) { c.AllowedPeers = p.str(n) }},
	{"WARDEN_IDENTITY_TIMEOUT", "30s", "workloadapi mode: how long startup waits for the first SVID (`/readyz` answers 503 meanwhile) before warden exits with an error naming the socket", BySidecar, "",
		func(p *parser, c *values, n string) { c.IdentityTimeout = p.duration(n) }},
	{"WARDEN_OUTBOUND_ADDR", "127.0.0.1:15001", "plaintext HTTP listener where the app sends outbound requests, loopback only; it starts when WARDEN_OUTBOUND_ROUTES is set; empty (or `off`, the former way) turns it off", BySidecar, "no outbound listener",
		func(p *parser, c *values, n string) { c.OutboundAddr = p.outboundAddr(n) }},
	{"WARDEN_OUTBOUND_ROUTES", "", "comma-separated `host=addr|spiffe-id` routes, each optionally followed by `;proto=h2` (HTTP/2 over mTLS, ALPN `h2`) or `;proto=http1` (the default): a request with that Host goes over mTLS to `addr`, which must present `spiffe-id`; any other Host gets 403 `unknown_destination`", BySidecar, "",
		func(p *parser, c *values, n string) { c.OutboundRoutes = p.routes(n) }},
	{"WARDEN_OUTBOUND_TIMEOUT", "30s", "time for a destination to send its whole response to an outbound request; no answer by then: 504", BySidecar, "",
		func(p *parser, c *values, n string) { c.OutboundTimeout = p.duration(n) }},
	{"WARDEN_UPSTREAM_TIMEOUT", "30s", "time for the app to send its whole response (like Envoy's route timeout); no answer by then: 504", BySidecar, "",
		func(p *parser, c *values, n string) { c.UpstreamTimeout = p.duration(n) }},
	{"WARDEN_UPSTREAM_PROTOCOL", "http1", "how warden speaks to the app: `http1` (HTTP/1.1), `h2c` (HTTP/2 with prior knowledge, what gRPC servers speak in plaintext) or `auto` (h2c for gRPC requests, HTTP/1.1 for the rest)", BySidecar, "",
		func(p *parser, c *values, n string) {
			c.UpstreamProtocol = p.oneOf(n, UpstreamHTTP1, UpstreamH2C, UpstreamAuto)
		}},
	{"WARDEN_INBOUND_PROTOCOLS", "h2,http/1.1", "comma-separated protocols the mTLS listener offers in ALPN, a non-empty subset of `h2` (HTTP/2 and gRPC) and `http/1.1`; a client without ALPN speaks HTTP/1.1", BySidecar, "",
		func(p *parser, c *values, n string) { c.InboundProtocols = p.inboundProtocols(n) }},
	{"WARDEN_H2_MAX_STREAMS", "250", "concurrent HTTP/2 streams per inbound connection (SETTINGS_MAX_CONCURRENT_STREAMS)", BySidecar, "",
		func(p *parser, c *values, n string) { c.H2MaxStreams = p.positiveInt(n) }},
	{"WARDEN_UPSTREAM_MAX_CONNS", "1024", "maximum open connections to the app", BySidecar, "",
		func(p *parser, c *values, n string) { c.UpstreamMaxConns = p.positiveInt(n) }},
	{"WARDEN_UPSTREAM_AFFINITY", "on", "`on`: each inbound HTTP/1.1 connection gets an app connection of its own for its lifetime (no shared pool on the request path; half of `WARDEN_UPSTREAM_MAX_CONNS` is for these, the shared pool keeps the other half for the connections beyond and for HTTP/2); `off`: every request draws from the shared pool", BySidecar, "",
		func(p *parser, c *values, n string) { c.UpstreamAffinity = p.oneOf(n, "on", "off") == "on" }},
	{"WARDEN_READ_TIMEOUT", "30s", "time for a client to send a whole request (and the TLS handshake)", BySidecar, "",
		func(p *parser, c *values, n string) { c.ReadTimeout = p.duration(n) }},
	{"WARDEN_WRITE_TIMEOUT", "30s", "time to write a response to a client", BySidecar, "",
		func(p *parser, c *values, n string) { c.WriteTimeout = p.duration(n) }},
	{"WARDEN_IDLE_TIMEOUT", "120s", "keep-alive connections idle this long are closed", BySidecar, "",
		func(p *parser, c *values, n string) { c.IdleTimeout = p.duration(n) }},
	{"WARDEN_MAX_HEADER_BYTES", "16384", "largest request header block; larger gets 431", BySidecar, "",
		func(p *parser, c *values, n string) { c.MaxHeaderBytes = p.headerBytes(n) }},
	{"WARDEN_MAX_REQUEST_BODY_BYTES", "4194304", "largest request body; larger gets 413", BySidecar, "",
		func(p *parser, c *values, n string) { c.MaxRequestBodyBytes = p.positiveInt(n) }},
	{"WARDEN_MAX_CONNECTIONS", "10000", "concurrent inbound connections; more are refused", BySidecar, "",
		func(p *parser, c *values, n string) { c.MaxConnections = p.positiveInt(n) }},
	{"WARDEN_DRAIN_TIMEOUT", "15s", "on SIGTERM/SIGINT, time in-flight requests get to finish", BySidecar, "",
		func(p *parser, c *values, n string) { c.DrainTimeout = p.duration(n) }},
	{"WARDEN_HANDSHAKE_TIMEOUT", "5s", "time a client gets to complete the TLS handshake, whatever WARDEN_READ_TIMEOUT allows: unauthenticated connections cannot hold the connection slots", BySidecar, "",
		func(p *parser, c *values, n string) { c.HandshakeTimeout = p.duration(n) }},
	{"WARDEN_ALLOW_UPGRADE", "websocket", "comma-separated `Upgrade` tokens (case-insensitive) whose requests, once allowed like any other, are tunnelled to the app byte for byte after it answers 101; empty: no upgrades, an upgrade request gets 400 `upgrade_not_allowed`; `h2c` is refused (its tunnel would carry HTTP/2 requests past the policy)", BySidecar, "no upgrades",
		func(p *parser, c *values, n string) { c.AllowUpgrade = p.upgradeTokens(n) }},
	{"WARDEN_ALLOW_GET_BODY", "false", "`true` forwards a body on `GET`, `HEAD`, `OPTIONS` and `TRACE`; `false`: such a request gets 400 (an app that ignores the body would read it as a second request)", BySidecar, "",
		func(p *parser, c *values, n string) { c.AllowGetBody = p.boolean(n) }},
	{"WARDEN_PATH_SEMICOLON", "reject", "`reject`: a `;` in the path (raw or `%3B`) gets 400, since servlet containers strip `;` parameters and route to another resource than the policy decided on; `keep`: a raw `;` is forwarded as sent (for apps with matrix parameters; unsafe in front of Tomcat, Jetty or Spring), `%3B` still gets 400", BySidecar, "",
		func(p *parser, c *values, n string) {
			c.PathSemicolon = p.oneOf(n, PathSemicolonReject, PathSemicolonKeep)
		}},
	{"WARDEN_HEADERS_WITH_UNDERSCORES", "drop", "header names with `_`, which CGI, WSGI, Rack and PHP merge with their `-` twin: `drop` (removed before policy and app), `reject` (400) or `allow`", BySidecar, "",
		func(p *parser, c *values, n string) {
			c.HeadersWithUnderscores = p.oneOf(n, UnderscoresDrop, UnderscoresReject, UnderscoresAllow)
		}},
	{"WARDEN_STRIP_HEADERS", "X-Original-URL,X-Rewrite-URL,X-Forwarded-Host,X-Forwarded-Prefix,Forwarded,X-Real-IP", "comma-separated request headers removed before policy and app (routing overrides apps and frameworks trust); empty (or `none`, the former way): strip nothing", BySidecar, "strip nothing",
		func(p *parser, c *values, n string) { c.StripHeaders = p.headerNames(n, StripNone) }},
	{"WARDEN_ALLOW_METHOD_OVERRIDE", "false", "`true` forwards `X-HTTP-Method-Override`, `X-HTTP-Method` and `X-Method-Override`; `false`: a request carrying one gets 400 (the app would run another method than the policy decided on)", BySidecar, "",
		func(p *parser, c *values, n string) { c.AllowMethodOverride = p.boolean(n) }},
	{"WARDEN_ALLOWED_METHODS", "GET,HEAD,POST,PUT,PATCH,DELETE,OPTIONS", "comma-separated request methods; any other gets 405 with `Allow`", BySidecar, "",
		func(p *parser, c *values, n string) { c.AllowedMethods = p.methods(n) }},
	{"WARDEN_MAX_HEADERS", "100", "most request header lines; more gets 431", BySidecar, "",
		func(p *parser, c *values, n string) { c.MaxHeaders = p.positiveInt(n) }},
	{"WARDEN_JSON_PROTECTION", "on", "`on`: a JSON body (`application/json`, `*+json`, or no `Content-Type` and a body starting with `{` or `[`) that is not one valid JSON value within the WARDEN_JSON_MAX_* limits, with no duplicate key and only UTF-8, gets 400 `invalid_body`; `off`: not checked", BySidecar, "",
		func(p *parser, c *values, n string) {
			c.JSONProtection = p.oneOf(n, ProtectionOn, ProtectionOff) == ProtectionOn
		}},
	{"WARDEN_JSON_MAX_DEPTH", "32", "deepest nesting of objects and arrays in a JSON body", BySidecar, "",
		func(p *parser, c *values, n string) { c.JSON.MaxDepth = p.positiveInt(n) }},
	{"WARDEN_JSON_MAX_KEYS", "1000", "most members of one JSON object", BySidecar, "",
		func(p *parser, c *values, n string) { c.JSON.MaxKeys = p.positiveInt(n) }},
	{"WARDEN_JSON_MAX_ARRAY", "10000", "most elements of one JSON array", BySidecar, "",
		func(p *parser, c *values, n string) { c.JSON.MaxArray = p.positiveInt(n) }},
	{"WARDEN_JSON_MAX_STRING", "65536", "longest JSON string (a value or a member name), in bytes", BySidecar, "",
		func(p *parser, c *values, n string) { c.JSON.MaxString = p.positiveInt(n) }},
	{"WARDEN_JSON_MAX_NUMBER", "64", "longest JSON number, in characters", BySidecar, "",
		func(p *parser, c *values, n string) { c.JSON.MaxNumber = p.positiveInt(n) }},
	{"WARDEN_XML_PROTECTION", "on", "`on`: an XML body (`application/xml`, `text/xml`, `*+xml`) with a DTD (so any entity), not well-formed, or over the WARDEN_XML_MAX_* limits gets 400 `invalid_body`; `off`: not checked", BySidecar, "",
		func(p *parser, c *values, n string) {
			c.XMLProtection = p.oneOf(n, ProtectionOn, ProtectionOff) == ProtectionOn
		}},
	{"WARDEN_XML_MAX_DEPTH", "32", "deepest nesting of XML elements", BySidecar, "",
		func(p *parser, c *values, n string) { c.XML.MaxDepth = p.positiveInt(n) }},
	{"WARDEN_XML_MAX_ATTRIBUTES", "64", "most attributes of one XML element", BySidecar, "",
		func(p *parser, c *values, n string) { c.XML.MaxAttributes = p.positiveInt(n) }},
	{"WARDEN_XML_MAX_ELEMENTS", "100000", "most elements in one XML body", BySidecar, "",
		func(p *parser, c *values, n string) { c.XML.MaxElements = p.positiveInt(n) }},
	{"WARDEN_XML_MAX_TEXT", "65536", "longest XML text node (character data or CDATA), in bytes", BySidecar, "",
		func(p *parser, c *values, n string) { c.XML.MaxText = p.positiveInt(n) }},
	{"WARDEN_OPENAPI_SPEC", "", "an OpenAPI 3.0 or 3.1 document (YAML or JSON file): a request no operation describes gets 404 `not_found`, one whose parameters or JSON body break their schemas 400 `invalid_request`, and the policy gets `input.operation`; empty: no OpenAPI validation", BySidecar, "",
		func(p *parser, c *values, n string) { c.OpenAPISpec = p.file(n) }},
	{"WARDEN_OPENAPI_POLL_INTERVAL", "10s", "how often WARDEN_OPENAPI_SPEC is checked for changes; a changed spec that fails to load leaves the one before in force", BySidecar, "",
		func(p *parser, c *values, n string) { c.OpenAPIPoll = p.duration(n) }},
	{"WARDEN_POLICY_BODY", "off", "`json`: a JSON body of at most WARDEN_POLICY_BODY_MAX_BYTES is given to the policy as `input.parsed_body` (a larger one gets 413); `off`: the policy never sees bodies", BySidecar, "",
		func(p *parser, c *values, n string) { c.PolicyBody = p.oneOf(n, PolicyBodyOff, PolicyBodyJSON) }},
	{"WARDEN_POLICY_BODY_MAX_BYTES", "65536", "largest JSON body given to the policy with WARDEN_POLICY_BODY=json", BySidecar, "",
		func(p *parser, c *values, n string) { c.PolicyBodyMaxBytes = p.positiveInt(n) }},
	{"WARDEN_POLICY_BUNDLE", "", "policy bundle: a directory, a `.tar.gz` file or an `http(s)://` bundle URL; empty: the default bundle embedded from `bundle/default/`", BySidecar, "",
		func(p *parser, c *values, n string) { c.PolicyBundle = p.bundleSource(n) }},
	{"WARDEN_POLICY_POLL_INTERVAL", "30s", "how often the bundle source is checked for a new revision (URLs with `If-None-Match`; files and directories for changes)", BySidecar, "",
		func(p *parser, c *values, n string) { c.PolicyPollInterval = p.duration(n) }},
	{"WARDEN_POLICY_VERIFICATION_KEY", "", "PEM public key (or HS256 shared-secret file) that bundles must be signed with; empty: signatures are not required", BySidecar, "",
		func(p *parser, c *values, n string) { c.PolicyVerificationKey = p.file(n) }},
	{"WARDEN_POLICY_VERIFICATION_ALG", "", "signing algorithm of the key (`RS256`, `ES256`, `HS256`, ...); empty: inferred from the key", BySidecar, "",
		func(p *parser, c *values, n string) { c.PolicyVerificationAlg = p.str(n) }},
	{"WARDEN_POLICY_DECISION", "warden/authz/allow", "the rule that decides, as a path under `data`", BySidecar, "",
		func(p *parser, c *values, n string) { c.PolicyDecision = p.rulePath(n) }},
	{"WARDEN_POLICY_CACHE_SIZE", "10000", "decisions cached per bundle revision; 0 turns the cache off", BySidecar, "",
		func(p *parser, c *values, n string) { c.PolicyCacheSize = p.nonNegativeInt(n) }},
	{"WARDEN_POLICY_CACHE_TTL", "60s", "how long a decision without its own `cache_ttl_seconds` stays cached", BySidecar, "",
		func(p *parser, c *values, n string) { c.PolicyCacheTTL = p.duration(n) }},
	{"WARDEN_POLICY_CACHE_BYTES", "33554432", "bytes the decision cache may hold per bundle revision (keys and decisions); least recently used decisions go first", BySidecar, "",
		func(p *parser, c *values, n string) { c.PolicyCacheBytes = int64(p.nonNegativeInt(n)) }},
	{"WARDEN_POLICY_ALLOW_NETWORK", "false", "`true` lets policies call builtins that do network I/O (`http.send`, `net.lookup_ip_addr`); `false`: a bundle using them is rejected", BySidecar, "",
		func(p *parser, c *values, n string) { c.PolicyAllowNetwork = p.boolean(n) }},
	{"WARDEN_POLICY_EVAL_TIMEOUT", "100ms", "longest policy evaluation; a request whose evaluation takes longer is denied (403): `policy_denied` with `reason` `policy_timeout`", BySidecar, "",
		func(p *parser, c *values, n string) { c.PolicyEvalTimeout = p.duration(n) }},
	{"WARDEN_DECISION_LOG", "stderr", "where decision log lines go: `stderr`, `stdout` or a file path (appended)", BySidecar, "",
		func(p *parser, c *values, n string) { c.DecisionLog = p.str(n) }},
	{"WARDEN_DECISION_LOG_SAMPLE", "1", "share of allowed decisions served from the decision cache that are logged, from `0` to `1` (`0.1`: one in ten); such lines carry `sample_rate`; denials, errors and decisions the policy computed are always logged", BySidecar, "",
		func(p *parser, c *values, n string) { c.DecisionLogSample = p.ratio(n) }},
	{"WARDEN_ACCESS_LOG", "combined", "how each inbound request is accounted for in the logs: `combined`, one line per request (a request the policy decided is its decision log line, with `status`, `duration_s`, `bytes_in`, `bytes_out` and `client_ip` under `warden`; any other, refused before the policy or a cached decision sampling left out, gets an `access` line); `separate`, an `access` line for every request beside its decision line (two lines and two writes per decided request); `off`, no `access` line. `on`, the issue's name for keeping the separate access line, is read as `separate`", BySidecar, "",
		func(p *parser, c *values, n string) {
			if c.AccessLog = p.oneOf(n, "combined", "separate", "on", "off"); c.AccessLog == "on" {
				c.AccessLog = "separate"
			}
		}},
	{"WARDEN_SECURITY_LOG", "stderr", "where security events go (docs/security-events.md): `stderr` (with the log), `stdout`, a file path (appended), `syslog://host:port` (RFC 5424 over UDP) or `syslog+tcp://host:port` (RFC 5424 over TCP, octet counting); written off the request path, dropped and counted when the destination falls behind", BySidecar, "",
		func(p *parser, c *values, n string) { c.SecurityLog = p.securityLog(n) }},
	{"WARDEN_OTLP_ENDPOINT", "", "OpenTelemetry collector for request spans: `http://host:port` (plaintext) or `https://host:port`; empty: no tracing, and no cost", BySidecar, "",
		func(p *parser, c *values, n string) { c.OTLPEndpoint = p.otlpEndpoint(n) }},
	{"WARDEN_OTLP_PROTOCOL", "grpc", "`grpc` (OTLP/gRPC, port 4317 by convention) or `http/protobuf` (OTLP/HTTP, port 4318; `/v1/traces` when the URL has no path)", BySidecar, "",
		func(p *parser, c *values, n string) { c.OTLPProtocol = p.oneOf(n, "grpc", "http/protobuf") }},
	{"WARDEN_TRACE_SAMPLE", "1", "ratio (0 to 1) of the traces that start at warden which are exported; a client's own sampling decision (its `traceparent`) is always kept", BySidecar, "",
		func(p *parser, c *values, n string) { c.TraceSample = p.ratio(n) }},
	{"WARDEN_JWT_JWKS", "", "keys to verify request tokens (JWTs) with: a JWKS file, an `http(s)://` JWKS URL, or `spiffe` for the Workload API's JWT bundles (JWT-SVIDs; workloadapi mode only); empty: tokens are not verified", BySidecar, "",
		func(p *parser, c *values, n string) { c.JWTJWKS = p.jwks(n) }},
	{"WARDEN_JWT_JWKS_REFRESH", "5m", "how often a JWKS file or URL is loaded again; a token naming an unknown `kid` also triggers a load, at most once per 30s", BySidecar, "",
		func(p *parser, c *values, n string) { c.JWTJWKSRefresh = p.duration(n) }},
	{"WARDEN_JWT_ISSUERS", "", "comma-separated accepted `iss` values; required with a JWKS file or URL; with `spiffe`, optional (empty: `iss` is not checked)", BySidecar, "",
		func(p *parser, c *values, n string) { c.JWTIssuers = p.list(n) }},
	{"WARDEN_JWT_AUDIENCES", "", "comma-separated accepted `aud` values, of which a token must name one; required when WARDEN_JWT_JWKS is set", BySidecar, "",
		func(p *parser, c *values, n string) { c.JWTAudiences = p.list(n) }},
	{"WARDEN_JWT_ALGORITHMS", "RS256,ES256,EdDSA,PS256", "accepted signature algorithms (RS*, PS*, ES*, EdDSA); `none` and HMAC (`HS*`) are refused", BySidecar, "",
		func(p *parser, c *values, n string) { c.JWTAlgorithms = p.algorithms(n) }},
	{"WARDEN_JWT_CLOCK_SKEW", "30s", "tolerance on a token's `exp`, `nbf` and `iat`", BySidecar, "",
		func(p *parser, c *values, n string) { c.JWTClockSkew = p.nonNegativeDuration(n) }},
	{"WARDEN_JWT_REQUIRED", "true", "`true`: a request without a token gets 401; `false`: it reaches the policy without `input.token` (an invalid token still gets 401)", BySidecar, "",
		func(p *parser, c *values, n string) { c.JWTRequired = p.boolean(n) }},
	{"WARDEN_JWT_HEADER", "Authorization", "the request header carrying the token (`Bearer ` prefix; optional in another header); never the query string", BySidecar, "",
		func(p *parser, c *values, n string) { c.JWTHeader = p.tokenHeader(n) }},
	{"WARDEN_SIGNATURE_KEYS", "", "keys allowed to sign requests (RFC 9421 HTTP Message Signatures): a JWKS file (its `oct` keys are shared secrets for `hmac-sha256`) or an `http(s)://` JWKS URL (public keys only), refreshed like WARDEN_JWT_JWKS; empty: signatures are not checked", BySidecar, "",
		func(p *parser, c *values, n string) { c.SignatureKeys = p.keySource(n, "") }},
	{"WARDEN_SIGNATURE_REQUIRED", "true", "with WARDEN_SIGNATURE_KEYS: `true` refuses unsigned requests (401 `invalid_signature`); `false` verifies signed ones and passes unsigned ones to the policy without `input.signature`", BySidecar, "",
		func(p *parser, c *values, n string) { c.SignatureRequired = p.boolean(n) }},
	{"WARDEN_SIGNATURE_COMPONENTS", "@method,@target-uri,@authority,content-digest,authorization", "components a signature must cover (`content-digest` only for requests with a body, a header only when the request has it)", BySidecar, "",
		func(p *parser, c *values, n string) { c.SignatureComponents = p.signatureComponents(n) }},
	{"WARDEN_SIGNATURE_MAX_AGE", "60s", "oldest `created` accepted (plus WARDEN_JWT_CLOCK_SKEW); also how long a signature is remembered to refuse its replay", BySidecar, "",
		func(p *parser, c *values, n string) { c.SignatureMaxAge = p.duration(n) }},
	{"WARDEN_OUTBOUND_SIGNING_KEY", "", "signs the requests of the outbound listener (RFC 9421, the WARDEN_SIGNATURE_COMPONENTS): a PEM private key file (Ed25519, ECDSA P-256 or RSA; `keyid` is its JWK thumbprint) or `svid` (warden's SVID key, `keyid` its SPIFFE ID); empty: not signed", BySidecar, "",
		func(p *parser, c *values, n string) { c.OutboundSigningKey = p.signingKey(n) }},
	{"WARDEN_RATE_LIMIT_MODE", "auto", "`auto` (eBPF when a conn or packet rate is set and it loads, else the userspace limiter), `ebpf` (startup fails with the kernel's error if it can't load), `userspace` or `off`", BySidecar, "",
		func(p *parser, c *values, n string) {
			c.RateLimitMode = p.oneOf(n, RateLimitAuto, RateLimitEBPF, RateLimitUserspace, RateLimitOff)
		}},
	{"WARDEN_BPF_INTERFACE", "", "interface the eBPF program attaches to; empty: the one that carries the route to the inbound address (`eth0` in a pod)", BySidecar, "",
		func(p *parser, c *values, n string) { c.BPFInterface = p.iface(n) }},
	{"WARDEN_BPF_ATTACH", "xdp", "`xdp` (native where the driver supports it, else generic) or `tc` (TCX ingress)", BySidecar, "",
		func(p *parser, c *values, n string) { c.BPFAttach = p.oneOf(n, "xdp", "tc") }},
	{"WARDEN_CONN_RATE_LIMIT", "0", "new connections (SYNs) per second per source IP to the inbound port; 0: unlimited", BySidecar, "",
		func(p *parser, c *values, n string) { c.ConnRateLimit = p.rate(n) }},
	{"WARDEN_CONN_BURST", "0", "token bucket size for WARDEN_CONN_RATE_LIMIT; 0: equal to the rate", BySidecar, "",
		func(p *parser, c *values, n string) { c.ConnBurst = p.rate(n) }},
	{"WARDEN_PACKET_RATE_LIMIT", "0", "packets per second per connection (5-tuple) to the inbound port; the userspace limiter counts HTTP requests instead and answers 429; 0: unlimited", BySidecar, "",
		func(p *parser, c *values, n string) { c.PacketRateLimit = p.rate(n) }},
	{"WARDEN_PACKET_BURST", "0", "token bucket size for WARDEN_PACKET_RATE_LIMIT; 0: equal to the rate", BySidecar, "",
		func(p *parser, c *values, n string) { c.PacketBurst = p.rate(n) }},
	{"WARDEN_PEER_RATE_LIMIT", "0", "requests per second per peer SPIFFE ID, across all its connections, for requests the policy allowed without a `rate_limit` of its own (which replaces it); beyond it 429 `rate_limited` with `Retry-After`; 0: unlimited", BySidecar, "",
		func(p *parser, c *values, n string) { c.PeerRateLimit = p.rate(n) }},
	{"WARDEN_PEER_BURST", "0", "token bucket size for WARDEN_PEER_RATE_LIMIT; 0: equal to the rate", BySidecar, "",
		func(p *parser, c *values, n string) { c.PeerBurst = p.rate(n) }},
	{"WARDEN_RATE_LIMIT_KEYS", "100000", "buckets kept for the policy's `rate_limit` keys and WARDEN_PEER_RATE_LIMIT's peers together; beyond it the least recently used key is forgotten (counted as overflow in `/ratelimit` and `warden_ratelimit_key_overflows_total`)", BySidecar, "",
		func(p *parser, c *values, n string) { c.RateLimitKeys = p.positiveInt(n) }},
	{"WARDEN_BPF_MAX_SOURCES", "65536", "entries in the per-source LRU map (least recently seen sources are forgotten first)", BySidecar, "",
		func(p *parser, c *values, n string) { c.BPFMaxSources = p.positiveInt(n) }},
	{"WARDEN_BPF_MAX_CONNS", "262144", "entries in the per-connection LRU map", BySidecar, "",
		func(p *parser, c *values, n string) { c.BPFMaxConns = p.positiveInt(n) }},
	{"WARDEN_FAST_PATH", "auto", "`auto` (the sockmap fast path between warden and the app when the kernel, cgroup v2 and privileges allow it, else plain TCP with one `fast_path_off` info line saying why), `sockmap` (startup fails if it can't attach) or `off`; see Fast path", BySidecar, "",
		func(p *parser, c *values, n string) {
			c.FastPath = p.oneOf(n, FastPathAuto, FastPathSockmap, FastPathOff)
		}},
	{"WARDEN_FAST_PATH_CGROUP", "", "cgroup v2 directory the fast path attaches to, holding warden and the app (e.g. `/sys/fs/cgroup/system.slice`); `pod`: the pod's cgroup, found by WARDEN_POD_UID in the node's cgroup tree mounted at WARDEN_FAST_PATH_HOST_CGROUP (what the injector sets with `warden.io/fast-path: \"sockmap\"`); empty: warden's own cgroup, which auto refuses when it is the root cgroup or a container's cgroup namespace root", BySidecar, "",
		func(p *parser, c *values, n string) { c.FastPathCgroup = p.fastPathCgroup(n) }},
	{"WARDEN_FAST_PATH_HOST_CGROUP", "/run/warden/host-cgroup", "with WARDEN_FAST_PATH_CGROUP=pod: where the node's `/sys/fs/cgroup` is mounted (read-only) in warden's container; the cgroup v2 hierarchy is that directory or, on a hybrid node, its `unified` subdirectory", BySidecar, "",
		func(p *parser, c *values, n string) { c.FastPathHostCgroup = p.absPath(n) }},
	{"WARDEN_POD_UID", "", "the pod's UID (`metadata.uid`, which the injector passes through the downward API); needed by WARDEN_FAST_PATH_CGROUP=pod", BySidecar, "",
		func(p *parser, c *values, n string) { c.PodUID = p.podUID(n) }},
	{"WARDEN_HONEYPOT_PATHS", "", "comma-separated decoy paths: exact paths, or prefixes ending in `/*` (`/actuator/*` matches `/actuator` and below), matched on the normalized path; a request to one gets the 404 of an unknown route, never reaches the app, emits `honeypot_hit` and blocks its source (see Active defense)", BySidecar, "",
		func(p *parser, c *values, n string) { c.HoneypotPaths = p.honeypotPaths(n) }},
	{"WARDEN_HONEYPOT_BLOCK_FOR", "10m", "how long a source that requested a decoy is blocked (at most 24h); `0`: decoys answer 404 and emit `honeypot_hit` but block nobody", BySidecar, "",
		func(p *parser, c *values, n string) { c.HoneypotBlockFor = p.blockDuration(n) }},
	{"WARDEN_MAX_BLOCK_FOR", "24h", "cap on a policy decision's `block_for_seconds` (at most 24h); `0`: the policy blocks nobody", BySidecar, "",
		func(p *parser, c *values, n string) { c.MaxBlockFor = p.blockDuration(n) }},
	{"WARDEN_BLOCK_EXEMPT", "", "comma-separated CIDRs (or single addresses) never blocked by a decoy or a policy, e.g. the node's health checker or a shared NAT address", BySidecar, "",
		func(p *parser, c *values, n string) { c.BlockExempt = p.cidrs(n) }},
	{"WARDEN_IPV6_PREFIX", "64", "IPv6 sources are blocked per prefix of this length (one host owns a whole /64); 128: per address", BySidecar, "",
		func(p *parser, c *values, n string) { c.IPv6Prefix = p.ipv6Prefix(n) }},
	{"WARDEN_ADMIN_PPROF", "false", "`true` serves Go's profiler under `/debug/pprof/` on the admin address", BySidecar, "",
		func(p *parser, c *values, n string) { c.AdminPprof = p.boolean(n) }},
	{"WARDEN_APP_PROBES", "", "the app's HTTP and gRPC probes that the webhook rewrote to `/app-health/<container>/<probe>` on the admin address (probe: `liveness`, `readiness` or `startup`), as JSON keyed `<container>/<probe>` with Kubernetes' field names (`httpGet` with `path`, `port`, `scheme`, `httpHeaders`; `grpc` with `port`, `service`; `timeoutSeconds`); warden probes the app on 127.0.0.1 the same way; set by the webhook only; empty: `/app-health/` answers 404", BySidecar, "",
		func(p *parser, c *values, n string) { c.AppProbes = p.appProbes(n) }},
	{"WARDEN_LOG_LEVEL", "info", "`debug`, `info`, `warn` or `error`", BySidecar | ByWebhook, "",
		func(p *parser, c *values, n string) { c.LogLevel = p.oneOf(n, "debug", "info", "warn", "error") }},
	{"WARDEN_LOG_FORMAT", "json", "`json` or `console`", BySidecar | ByWebhook, "",
		func(p *parser, c *values, n string) { c.LogFormat = p.oneOf(n, "json", "console") }},
	{"WARDEN_REDIRECT_PORTS", "", "`warden init`: comma-separated TCP ports of the app whose inbound traffic is redirected to warden's inbound port, or `*` for every TCP port but warden's inbound and admin ports (which a list must not name); empty: the app's port (WARDEN_UPSTREAM_PORT, else the port of WARDEN_UPSTREAM_ADDR)", BySidecar | ByInit, "",
		func(p *parser, c *values, n string) { c.RedirectPorts, c.RedirectAll = p.redirectPorts(n, c.Config) }},
	{"WARDEN_PROXY_UID", "1337", "`warden init`: the user ID warden runs as, not 0; connections this user makes to the pod's own address are not redirected (no loop), everyone else's are", ByInit, "",
		func(p *parser, c *values, n string) { c.proxyUID = p.uid(n) }},
	{"WARDEN_WEBHOOK_ADDR", ":9443", "`warden webhook`: HTTPS listener of the admission webhook (`POST /mutate`, `POST /mutate/opt-in`, `GET /healthz`)", ByWebhook, "",
		func(p *parser, c *values, n string) { c.webhook.Addr = p.addr(n) }},
	{"WARDEN_WEBHOOK_CERT", "/etc/warden/webhook/tls.crt", "`warden webhook`: PEM serving certificate (with its chain); read again when the file changes, so a rotated certificate (cert-manager) needs no restart", ByWebhook, "",
		func(p *parser, c *values, n string) { c.webhook.CertFile = p.str(n) }},
	{"WARDEN_WEBHOOK_KEY", "/etc/warden/webhook/tls.key", "`warden webhook`: PEM private key of WARDEN_WEBHOOK_CERT, read again with it", ByWebhook, "",
		func(p *parser, c *values, n string) { c.webhook.KeyFile = p.str(n) }},
	{"WARDEN_SIDECAR_IMAGE", "", "`warden webhook`: image of the injected `warden` and `warden-init` containers, e.g. `ghcr.io/warden-sidecar/warden:v0.1.0`; required", ByWebhook, "",
		func(p *parser, c *values, n string) { c.webhook.SidecarImage = p.image(n) }},
	{"WARDEN_SIDECAR_CPU_REQUEST", "", "`warden webhook`: the injected `warden` container's CPU request, a Kubernetes quantity (`100m`); empty: sidecar.yaml's (`50m`); a pod's `warden.io/cpu-request` replaces it", ByWebhook, "",
		func(p *parser, c *values, n string) { c.webhook.CPURequest = p.quantity(n) }},
	{"WARDEN_SIDECAR_CPU_LIMIT", "", "`warden webhook`: the injected `warden` container's CPU limit; empty: sidecar.yaml's (none); `warden.io/cpu-limit` replaces it", ByWebhook, "",
		func(p *parser, c *values, n string) { c.webhook.CPULimit = p.quantity(n) }},
	{"WARDEN_SIDECAR_MEMORY_REQUEST", "", "`warden webhook`: the injected `warden` container's memory request (`64Mi`); empty: sidecar.yaml's (`64Mi`); `warden.io/memory-request` replaces it", ByWebhook, "",
		func(p *parser, c *values, n string) { c.webhook.MemoryRequest = p.quantity(n) }},
	{"WARDEN_SIDECAR_MEMORY_LIMIT", "", "`warden webhook`: the injected `warden` container's memory limit; empty: sidecar.yaml's (`256Mi`); `warden.io/memory-limit` replaces it", ByWebhook, "",
		func(p *parser, c *values, n string) { c.webhook.MemoryLimit = p.quantity(n) }},
	{"WARDEN_SIDECAR_RATE_LIMIT_MODE", "", "`warden webhook`: WARDEN_RATE_LIMIT_MODE of injected sidecars whose pod does not annotate `warden.io/rate-limit-mode` (`auto`, `ebpf`, `userspace` or `off`); empty: warden's default", ByWebhook, "",
		func(p *parser, c *values, n string) {
			if p.raw(n) != "" {
				c.webhook.RateLimitMode = p.oneOf(n, RateLimitAuto, RateLimitEBPF, RateLimitUserspace, RateLimitOff)
			}
		}},
}

// WebhookVars are the variables only `warden webhook` reads (it reads
// WARDEN_LOG_LEVEL and WARDEN_LOG_FORMAT too).
var WebhookVars = readOnlyBy(ByWebhook)

func readOnlyBy(r Reader) []Var {
	var out []Var
	for _, v := range Vars {
		if v.Readers == r {
			out = append(out, v)
		}
	}
	return out
}

// Lookup finds a variable of the table by name.
func Lookup(name string) (Var, bool) {
	if v, ok := byName[name]; ok {
		return *v, true
	}
	return Var{}, false
}

// Default is the default value of a variable of the table.
func Default(name string) string {
	v, ok := byName[name]
	if !ok {
		panic("config: no variable " + name)
	}
	return v.Default
}

// parse runs the setters of the variables that r reads, in table order.
func (p *parser) parse(c *values, r Reader) {
	for _, v := range Vars {
		if v.Readers&r != 0 {
			v.set(p, c, v.Name)
		}
	}
}

// byName indexes Vars. It is filled in init, not by its initializer: the
// setters in Vars read it (parser.raw gets defaults from it), so an
// initializer reading Vars would be a cycle.
var byName map[string]*Var

func init() {
	byName = make(map[string]*Var, len(Vars))
	for i := range Vars {
		byName[Vars[i].Name] = &Vars[i]
	}
}
