package load

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// Limits. The duration and connection limits keep an accidental run bounded
// in time and memory (each worker owns a ~140 KB histogram); the timeout
// limit is the histogram's highest trackable value.
const (
	MaxDuration    = 5 * time.Minute
	MaxWarmup      = time.Minute
	MaxConnections = 1024
	MaxBodySize    = 16 << 20
	MaxTimeout     = 60 * time.Second
	MaxRate        = 10_000_000
)

// ErrNotLoopback is returned (wrapped) when the target is not on loopback.
var ErrNotLoopback = errors.New("not a loopback address")

// Config describes one run. Field comments name the loadgen flag that sets
// each field; validation errors name the flag too, because that is what the
// operator typed.
type Config struct {
	URL        string // -url: http:// or https:// on 127.0.0.0/8, ::1 or localhost
	CertFile   string // -cert: client certificate chain, PEM
	KeyFile    string // -key: client private key, PEM
	CAFile     string // -cacert: CA bundle to verify the server, PEM (system roots if empty)
	ServerName string // -server-name: SNI and verification name (default: the URL host)

	Connections int           // -c: workers, one keep-alive connection each
	Duration    time.Duration // -d: measured duration
	Warmup      time.Duration // -warmup: run before measuring, not recorded
	MaxRequests int64         // -n: stop after this many measured requests (0: no limit)
	Rate        float64       // -rate: open loop at this many requests/s in total (0: closed loop)
	NewConn     bool          // -newconn: a new connection and TLS handshake per request

	Method       string        // -method
	BodySize     int           // -body-size: request body bytes
	Headers      []string      // -H: "Name: value"
	ExpectStatus int           // -expect-status: the only status counted as success (0: any 2xx)
	Timeout      time.Duration // -timeout: per request, including dial and handshake

	// gRPC mode: unary calls instead of HTTP/1.1 requests, each worker on
	// its own gRPC client connection (one HTTP/2 connection, one call at a
	// time); http:// is h2c (prior knowledge), https:// TLS with ALPN h2.
	// -H headers become request metadata (Host: the :authority), -body-size
	// the size of the request message.
	GRPCMethod     string // -grpc: full method name, "/package.Service/Method"
	ExpectGRPCCode int    // -expect-grpc-code: the only gRPC status code counted as success (0: OK)
}

// DefaultConfig returns the defaults the loadgen flags start from.
func DefaultConfig() Config {
	return Config{
		Connections: 32,
		Duration:    4 * time.Second,
		Warmup:      time.Second,
		Method:      "GET",
		Timeout:     5 * time.Second,
	}
}

// target is a validated URL.
type target struct {
	url   string // normalized, as sent in the request line
	addr  string // host:port to dial
	host  string // host without port, for the default ServerName
	https bool
}

// Validate checks every field without touching the network or the files.
func (c Config) Validate() error {
	if _, err := parseTarget(c.URL); err != nil {
		return err
	}
	switch {
	case c.Connections < 1 || c.Connections > MaxConnections:
		return fmt.Errorf("load: -c %d: want 1..%d", c.Connections, MaxConnections)
	case c.Duration <= 0 || c.Duration > MaxDuration:
		return fmt.Errorf("load: -d %s: want more than 0 and at most %s", c.Duration, MaxDuration)
	case c.Warmup < 0 || c.Warmup > MaxWarmup:
		return fmt.Errorf("load: -warmup %s: want 0..%s", c.Warmup, MaxWarmup)
	case c.MaxRequests < 0:
		return fmt.Errorf("load: -n %d: want 0 (no limit) or more", c.MaxRequests)
	case math.IsNaN(c.Rate) || c.Rate < 0 || c.Rate > MaxRate:
		return fmt.Errorf("load: -rate %g: want 0 (closed loop) or up to %d requests/s", c.Rate, MaxRate)
	case c.Rate > 0 && 1e9/c.Rate < 1:
		return fmt.Errorf("load: -rate %g: interval below 1ns", c.Rate)
	case c.BodySize < 0 || c.BodySize > MaxBodySize:
		return fmt.Errorf("load: -body-size %d: want 0..%d", c.BodySize, MaxBodySize)
	case c.ExpectStatus != 0 && (c.ExpectStatus < 100 || c.ExpectStatus > 599):
		return fmt.Errorf("load: -expect-status %d: want 0 (any 2xx) or 100..599", c.ExpectStatus)
	case c.Timeout <= 0 || c.Timeout > MaxTimeout:
		return fmt.Errorf("load: -timeout %s: want more than 0 and at most %s", c.Timeout, MaxTimeout)
	case !isToken(c.Method):
		return fmt.Errorf("load: -method %q: not an HTTP method token", c.Method)
	case (c.CertFile == "") != (c.KeyFile == ""):
		return fmt.Errorf("load: -cert %q and -key %q: give both or neither", c.CertFile, c.KeyFile)
	}
	for _, h := range c.Headers {
		if _, _, err := splitHeader(h); err != nil {
			return err
		}
	}
	if err := c.validateGRPC(); err != nil {
		return err
	}
	t, _ := parseTarget(c.URL)
	if !t.https && (c.CertFile != "" || c.CAFile != "" || c.ServerName != "") {
		return fmt.Errorf("load: -url %q is plaintext http: -cert, -key, -cacert and -server-name need https", c.URL)
	}
	return nil
}

// validateGRPC checks the gRPC mode's fields, and refuses what the HTTP
// flags cannot mean in it.
func (c Config) validateGRPC() error {
	if c.GRPCMethod == "" {
		if c.ExpectGRPCCode != 0 {
			return fmt.Errorf("load: -expect-grpc-code %d: only with -grpc", c.ExpectGRPCCode)
		}
		return nil
	}
	svc, method, ok := strings.Cut(strings.TrimPrefix(c.GRPCMethod, "/"), "/")
	switch {
	case !strings.HasPrefix(c.GRPCMethod, "/") || !ok || svc == "" || method == "" || strings.ContainsAny(method, "/?#% ") || strings.ContainsAny(svc, "?#% "):
		return fmt.Errorf("load: -grpc %q: want a full method name /package.Service/Method", c.GRPCMethod)
	case c.ExpectGRPCCode < 0 || c.ExpectGRPCCode > maxGRPCCode:
		return fmt.Errorf("load: -expect-grpc-code %d: want 0 (OK) to %d", c.ExpectGRPCCode, maxGRPCCode)
	case c.NewConn:
		return fmt.Errorf("load: -newconn: not with -grpc (each worker keeps one gRPC connection)")
	case c.ExpectStatus != 0:
		return fmt.Errorf("load: -expect-status %d: not with -grpc, use -expect-grpc-code", c.ExpectStatus)
	case c.Method != "GET" && c.Method != "POST":
		return fmt.Errorf("load: -method %q: not with -grpc (gRPC calls are POST)", c.Method)
	}
	// Over TLS, gRPC sends the TLS server name as :authority and refuses
	// another one.
	if t, _ := parseTarget(c.URL); t.https {
		for _, h := range c.Headers {
			if name, _, _ := splitHeader(h); strings.EqualFold(name, "Host") {
				return fmt.Errorf("load: -H %q: not with -grpc over https, where the authority is the TLS server name (-server-name)", h)
			}
		}
	}
	return nil
}

func parseTarget(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("load: -url %q: %w", raw, err)
	}
	var t target
	switch u.Scheme {
	case "http":
	case "https":
		t.https = true
	default:
		return target{}, fmt.Errorf("load: -url %q: scheme %q: want http or https", raw, u.Scheme)
	}
	if u.User != nil {
		return target{}, fmt.Errorf("load: -url %q: user info is not supported", raw)
	}
	t.host = u.Hostname()
	if t.host == "" {
		return target{}, fmt.Errorf("load: -url %q: no host", raw)
	}
	if !isLoopbackHost(t.host) {
		return target{}, fmt.Errorf("load: -url %q: host %q: %w (want 127.0.0.0/8, ::1 or localhost)", raw, t.host, ErrNotLoopback)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if t.https {
			port = "443"
		}
	}
	t.addr = net.JoinHostPort(t.host, port)
	if u.Path == "" {
		u.Path = "/"
	}
	t.url = u.String()
	return t, nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackOnly is a net.Dialer Control function: it runs after the name is
// resolved and before connect(2), so a "localhost" that resolves elsewhere
// is refused without a packet leaving the host.
func loopbackOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("load: dial %s: %w", address, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("load: dial %s: %w", address, ErrNotLoopback)
	}
	return nil
}

func splitHeader(h string) (name, value string, err error) {
	name, value, ok := strings.Cut(h, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !ok || !isToken(name) {
		return "", "", fmt.Errorf("load: -H %q: want 'Name: value'", h)
	}
	if strings.ContainsAny(value, "\r\n") {
		return "", "", fmt.Errorf("load: -H %q: line break in value", h)
	}
	return name, value, nil
}

// isToken reports whether s is an RFC 9110 token (method or header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// clientTLS builds the client TLS configuration from the PEM files. There is
// deliberately no session cache: with -newconn every connection is a full
// handshake, which is what that mode measures.
func (c Config) clientTLS(t target) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: c.ServerName,
	}
	if cfg.ServerName == "" {
		cfg.ServerName = t.host
	}
	if c.CertFile != "" {
		certPEM, err := os.ReadFile(c.CertFile)
		if err != nil {
			return nil, fmt.Errorf("load: -cert: %w", err)
		}
		keyPEM, err := os.ReadFile(c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load: -key: %w", err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("load: -cert %s with -key %s: %w", c.CertFile, c.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if c.CAFile != "" {
		caPEM, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("load: -cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("load: -cacert %s: no PEM certificate found", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
