package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/warden-sidecar/warden/internal/redact"
)

// Timeouts bound the stages of a fetch. In WithTimeouts, a zero field keeps
// the value it had (DefaultTimeouts unless an earlier option changed it).
type Timeouts struct {
	// Dial bounds a TCP connection to the server or the proxy.
	Dial time.Duration
	// TLSHandshake bounds a TLS handshake, once connected.
	TLSHandshake time.Duration
	// ResponseHeader bounds the wait for a response's header once the
	// request is written: a server that accepts and never answers.
	ResponseHeader time.Duration
	// Total bounds the whole fetch: connections, redirects and the body.
	Total time.Duration
}

// DefaultTimeouts are the timeouts of a Fetcher New builds without
// WithTimeouts. A server that takes longer to connect, shake hands or start
// answering is taken as down: callers poll again later.
var DefaultTimeouts = Timeouts{
	Dial:           5 * time.Second,
	TLSHandshake:   5 * time.Second,
	ResponseHeader: 10 * time.Second,
	Total:          30 * time.Second,
}

const (
	// DefaultMaxBytes is the size limit without WithMaxBytes.
	DefaultMaxBytes = 1 << 20
	// maxRedirects is how many redirects a fetch follows: enough for a
	// moved document or a signed-URL hop, not for a loop.
	maxRedirects = 5
	// maxHeaderBytes bounds a response's header: the documents fetched
	// need a few short headers.
	maxHeaderBytes = 64 << 10
)

// An Option configures a Fetcher.
type Option func(*config)

type config struct {
	timeouts   Timeouts
	maxBytes   int64
	accept     string
	proxy      func(*http.Request) (*url.URL, error)
	roots      *x509.CertPool
	clientCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
}

// WithTimeouts sets the non-zero fields of t.
func WithTimeouts(t Timeouts) Option {
	return func(c *config) {
		c.timeouts.Dial = orDefault(t.Dial, c.timeouts.Dial)
		c.timeouts.TLSHandshake = orDefault(t.TLSHandshake, c.timeouts.TLSHandshake)
		c.timeouts.ResponseHeader = orDefault(t.ResponseHeader, c.timeouts.ResponseHeader)
		c.timeouts.Total = orDefault(t.Total, c.timeouts.Total)
	}
}

func orDefault(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// WithMaxBytes sets the size limit of a document's body: a larger one is
// an error (*TooLargeError), and no more than n+1 bytes of it are read.
// n <= 0 keeps the limit as it was.
func WithMaxBytes(n int64) Option {
	return func(c *config) {
		if n > 0 {
			c.maxBytes = n
		}
	}
}

// WithAccept sets the Accept header of requests ("application/json").
func WithAccept(mediaTypes string) Option {
	return func(c *config) { c.accept = mediaTypes }
}

// WithProxy sets how a request's proxy is chosen, as http.Transport.Proxy
// does; nil connects directly.
//
// Without it, a Fetcher uses http.ProxyFromEnvironment: HTTPS_PROXY,
// HTTP_PROXY and NO_PROXY, read once by net/http. warden's rule is that
// agent/config alone reads the environment; these variables are the
// exception, deliberately: they are not warden's settings but the proxy
// convention of the platform, which every Go program (and curl, and the
// app beside warden) honours, so that an operator who sets them for the
// pod gets what they expect. net/http never sends loopback traffic through
// them. A caller that must decide otherwise (a proxy from warden's own
// configuration, or none) passes WithProxy.
func WithProxy(proxy func(*http.Request) (*url.URL, error)) Option {
	return func(c *config) { c.proxy = proxy }
}

// WithRootCAs sets the certificate authorities that servers' certificates
// are checked against; without it, the system's.
func WithRootCAs(roots *x509.CertPool) Option {
	return func(c *config) { c.roots = roots }
}

// WithClientCertificate presents the certificate get returns to a server
// that asks for one (mTLS). It is called at each handshake, so a rotated
// certificate (warden's X.509-SVID) is used from the next connection on.
// The signature is crypto/tls's GetClientCertificate, which go-spiffe's
// tlsconfig.GetClientCertificate(svidSource) returns: an SVID source needs
// no adapter.
func WithClientCertificate(get func(*tls.CertificateRequestInfo) (*tls.Certificate, error)) Option {
	return func(c *config) { c.clientCert = get }
}

// A Fetcher gets documents. It is safe for concurrent use; its connections
// are reused between fetches.
type Fetcher struct {
	transport http.RoundTripper
	total     time.Duration
	maxBytes  int64
	accept    string
}

// New builds a Fetcher.
func New(opts ...Option) *Fetcher {
	c := config{timeouts: DefaultTimeouts, maxBytes: DefaultMaxBytes, proxy: http.ProxyFromEnvironment}
	for _, o := range opts {
		o(&c)
	}
	t := &http.Transport{
		DialContext:            (&net.Dialer{Timeout: c.timeouts.Dial, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.roots, GetClientCertificate: c.clientCert},
		TLSHandshakeTimeout:    c.timeouts.TLSHandshake,
		ResponseHeaderTimeout:  c.timeouts.ResponseHeader,
		MaxResponseHeaderBytes: maxHeaderBytes,
		IdleConnTimeout:        90 * time.Second,
		MaxIdleConns:           2,
		ForceAttemptHTTP2:      true,
	}
	if c.proxy != nil {
		t.Proxy = hideProxyError(c.proxy)
	}
	return &Fetcher{transport: locationGuard{t}, total: c.timeouts.Total, maxBytes: c.maxBytes, accept: c.accept}
}

// errProxy replaces a proxy function's error: http.ProxyFromEnvironment's
// quotes the proxy setting, which may hold the proxy's credentials.
var errProxy = errors.New("the proxy setting is not a valid proxy URL")

func hideProxyError(proxy func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	return func(r *http.Request) (*url.URL, error) {
		u, err := proxy(r)
		if err != nil {
			return nil, errProxy
		}
		return u, nil
	}
}

// locationGuard refuses a redirect whose Location is not a URL before the
// client follows it: net/http's error would quote the Location whole, and
// it may be a signed URL.
type locationGuard struct{ http.RoundTripper }

func (g locationGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := g.RoundTripper.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		if loc := resp.Header.Get("Location"); loc != "" {
			if _, err := req.URL.Parse(loc); err != nil {
				resp.Body.Close()
				return nil, errors.New("refusing a redirect to a Location that is not a valid URL")
			}
		}
	}
	return resp, nil
}

// checkRedirect allows maxRedirects hops, none to http once a hop was https:
// what TLS protected must not be fetched again in the clear.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects { // via holds the first request too
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if req.URL.Scheme != "https" {
		for _, prev := range via {
			if prev.URL.Scheme == "https" {
				return errors.New("refusing a redirect from https to http")
			}
		}
	}
	return nil
}

// Document is what a fetch got.
type Document struct {
	// Body is the response's body; nil when NotModified.
	Body []byte
	// ETag is the response's ETag ("" when it has none), or when
	// NotModified the one asked with: what to send next time.
	ETag string
	// NotModified reports that the server answered 304 to If-None-Match.
	NotModified bool
}

// Fetch gets rawURL with GET. With a non-empty etag it asks If-None-Match
// and reports a 304 as NotModified; a 304 to a request without one is an
// error, as is any status but 200 and 304. The body is read whole, within
// the size limit. Errors are *Error.
func (f *Fetcher) Fetch(ctx context.Context, rawURL, etag string) (Document, error) {
	timedOut := fmt.Errorf("no complete response within %s", f.total)
	ctx, cancel := context.WithTimeoutCause(ctx, f.total, timedOut)
	defer cancel()
	// The URLs requested, the redirects' included: what errors must not show.
	var asked []*url.URL
	fail := func(err error) (Document, error) {
		if ctx.Err() != nil && context.Cause(ctx) == timedOut {
			err = fmt.Errorf("%w: %w", timedOut, err)
		}
		return Document{}, newError(http.MethodGet, rawURL, asked, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fail(err)
	}
	asked = append(asked, req.URL)
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" || req.URL.Host == "" {
		return fail(errors.New("want an http:// or https:// URL with a host"))
	}
	req.Header.Set("User-Agent", "warden")
	if f.accept != "" {
		req.Header.Set("Accept", f.accept)
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	client := http.Client{Transport: f.transport, CheckRedirect: func(next *http.Request, via []*http.Request) error {
		asked = append(asked, next.URL)
		return checkRedirect(next, via)
	}}
	resp, err := client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		if etag == "" {
			return fail(errors.New("304 Not Modified to a request without If-None-Match"))
		}
		return Document{ETag: etag, NotModified: true}, nil
	default:
		return fail(errors.New(statusText(resp.StatusCode)))
	}
	if resp.ContentLength > f.maxBytes {
		return fail(&TooLargeError{Limit: f.maxBytes})
	}
	body, err := ReadAll(resp.Body, f.maxBytes)
	if err != nil {
		return fail(err)
	}
	return Document{Body: body, ETag: resp.Header.Get("ETag")}, nil
}

// statusText names a status by its code and standard text, not the
// server's reason phrase, which may say anything.
func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return strconv.Itoa(code) + " " + t
	}
	return strconv.Itoa(code)
}

// ReadAll reads r to its end, at most limit bytes: it reads limit+1 to tell
// a document of exactly limit bytes from a larger one, which is an error
// (*TooLargeError). Files get the same limit as downloads through it.
func ReadAll(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("read: %w", err)
	case int64(len(b)) > limit:
		return nil, &TooLargeError{Limit: limit}
	}
	return b, nil
}

// TooLargeError is a document over the size limit.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	switch {
	case e.Limit%(1<<20) == 0:
		return fmt.Sprintf("larger than %d MiB", e.Limit>>20)
	case e.Limit%(1<<10) == 0:
		return fmt.Sprintf("larger than %d KiB", e.Limit>>10)
	}
	return fmt.Sprintf("larger than %d bytes", e.Limit)
}

// Error is a failed fetch.
//
// Its text is the operation and the reason ("GET: 404 Not Found"), without
// the URL: warden's callers name their source, redacted, in their own
// prefix ("token: JWKS https://idp.example/jwks: GET: ..."), and the URL
// would show twice. URL holds it for a caller that does not.
type Error struct {
	Op  string // the HTTP method
	URL string // the URL asked for, as redact.URL shows it; never a redirect's target
	// Err is the reason. It is never a *url.Error: net/http's quote the
	// whole URL they were fetching, query and user name included, and after
	// a redirect its target's.
	Err error
}

func (e *Error) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// newError makes err safe to show. The *url.Errors net/http wraps its
// errors in are replaced by what they wrap. Should the text left still
// quote a URL asked for with a secret part (an error net/http does not
// wrap, a future one), that part is replaced, at the cost of the error's
// chain.
func newError(op, rawURL string, asked []*url.URL, err error) *Error {
	for {
		var ue *url.Error
		if !errors.As(err, &ue) {
			break
		}
		err = ue.Err
	}
	var quoted []string
	for _, u := range asked {
		quoted = append(quoted, secretsOf(u)...)
	}
	msg := err.Error()
	if clean := strings.NewReplacer(quoted...).Replace(msg); clean != msg {
		err = errors.New(clean)
	}
	return &Error{Op: op, URL: redact.URL(rawURL), Err: err}
}

// secretsOf lists the parts of u that redact.URL leaves out, as they read
// where u is quoted, each followed by its replacement: the user name after
// "//" (also when the password is masked, as url.URL.Redacted does), the
// password between ":" and "@", the query after "?" (a signed URL's
// signature), the fragment after "#". Looking for them in their place, not
// alone, spares ordinary words: a user "u" is in "404 Not Found".
func secretsOf(u *url.URL) []string {
	var s []string
	if u.User != nil {
		name, pass, hasPass := strings.Cut(u.User.String(), ":") // escaped as quoted
		if name != "" {
			s = append(s, "//"+name, "//REDACTED")
		}
		if hasPass && pass != "" {
			s = append(s, ":"+pass+"@", ":REDACTED@")
		}
	}
	if u.RawQuery != "" {
		s = append(s, "?"+u.RawQuery, "?REDACTED")
	}
	if f := u.EscapedFragment(); f != "" {
		s = append(s, "#"+f, "#REDACTED")
	}
	return s
}
