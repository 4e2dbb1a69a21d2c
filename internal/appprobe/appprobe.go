package appprobe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/warden-sidecar/warden/internal/redact"
)

// The probes of a container, as the last segment of
// /app-health/<container>/<probe>: the names of the Kubernetes fields
// (livenessProbe, readinessProbe, startupProbe) without "Probe".
const (
	Liveness  = "liveness"
	Readiness = "readiness"
	Startup   = "startup"
)

// PathPrefix starts every path warden's admin server serves app probes on.
const PathPrefix = "/app-health/"

// Path is where the kubelet probes a container's probe on warden's admin
// port.
func Path(container, probe string) string {
	return PathPrefix + container + "/" + probe
}

// Probe is one original probe of the app: an HTTP GET or a gRPC health
// check, and its timeout. The JSON field names are Kubernetes' own
// (corev1.Probe), so that WARDEN_APP_PROBES reads like the pod spec it
// came from; the host is deliberately absent: warden probes loopback.
type Probe struct {
	HTTPGet        *HTTPGet `json:"httpGet,omitempty"`
	GRPC           *GRPC    `json:"grpc,omitempty"`
	TimeoutSeconds int32    `json:"timeoutSeconds,omitempty"` // 0: 1, Kubernetes' default
}

// HTTPGet is corev1.HTTPGetAction without host, with the port resolved to
// a number.
type HTTPGet struct {
	Path        string   `json:"path,omitempty"`   // "" is "/"
	Port        int      `json:"port"`             // 1 to 65535
	Scheme      string   `json:"scheme,omitempty"` // SchemeHTTP (""), SchemeHTTPS
	HTTPHeaders []Header `json:"httpHeaders,omitempty"`
}

// Header is one header the probe sends (Host included).
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// GRPC is corev1.GRPCAction: the gRPC health protocol (grpc.health.v1).
type GRPC struct {
	Port    int    `json:"port"`              // 1 to 65535
	Service string `json:"service,omitempty"` // "" is the server as a whole
}

// Schemes of HTTPGet, spelt as Kubernetes spells them.
const (
	SchemeHTTP  = "HTTP"
	SchemeHTTPS = "HTTPS"
)

// Timeout is how long warden waits for the app, as the kubelet would.
func (p Probe) Timeout() time.Duration {
	if p.TimeoutSeconds <= 0 {
		return time.Second
	}
	return time.Duration(p.TimeoutSeconds) * time.Second
}

// MaxTimeout bounds TimeoutSeconds: a probe that waits longer keeps one of
// the admin server's connections for nothing.
const MaxTimeout = 10 * time.Minute

// Set is the probes of a pod by key, Key(container, probe).
type Set map[string]Probe

// Key is the key of a container's probe in a Set, the part of the path
// after PathPrefix.
func Key(container, probe string) string { return container + "/" + probe }

// Encode is the value of WARDEN_APP_PROBES: JSON with sorted keys, so that
// the same probes give the same value (and the same golden files).
func (s Set) Encode() (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return "", fmt.Errorf("appprobe: encode: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// containerName is an RFC 1123 label, as Kubernetes requires of container
// names.
var containerName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Parse reads WARDEN_APP_PROBES. Unknown fields, a probe that is neither or
// both of httpGet and grpc, and values the kubelet would refuse are errors
// that name the probe.
func Parse(s string) (Set, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	var set Set
	if err := dec.Decode(&set); err != nil {
		return nil, fmt.Errorf("appprobe: %w", err)
	}
	if dec.More() {
		return nil, errors.New("appprobe: data after the JSON object")
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := check(k, set[k]); err != nil {
			return nil, fmt.Errorf("appprobe: probe %q: %w", k, err)
		}
	}
	return set, nil
}

func check(key string, p Probe) error {
	container, probe, ok := strings.Cut(key, "/")
	if !ok || !containerName.MatchString(container) {
		return errors.New("expected the key <container>/<probe>, with a container name of lower-case letters, digits and '-'")
	}
	if probe != Liveness && probe != Readiness && probe != Startup {
		return fmt.Errorf("expected the probe %s, %s or %s", Liveness, Readiness, Startup)
	}
	if p.TimeoutSeconds < 0 || time.Duration(p.TimeoutSeconds)*time.Second > MaxTimeout {
		return fmt.Errorf("timeoutSeconds %d: expected 0 (1 second) to %d", p.TimeoutSeconds, int(MaxTimeout/time.Second))
	}
	switch {
	case p.HTTPGet != nil && p.GRPC != nil:
		return errors.New("expected one of httpGet and grpc, not both")
	case p.HTTPGet != nil:
		h := p.HTTPGet
		if h.Port < 1 || h.Port > 65535 {
			return fmt.Errorf("httpGet.port %d: expected 1 to 65535", h.Port)
		}
		if h.Scheme != "" && h.Scheme != SchemeHTTP && h.Scheme != SchemeHTTPS {
			return fmt.Errorf("httpGet.scheme %q: expected %s or %s", h.Scheme, SchemeHTTP, SchemeHTTPS)
		}
		if _, err := url.Parse(h.Path); err != nil {
			return fmt.Errorf("httpGet.path: %w", err)
		}
		for _, hd := range h.HTTPHeaders {
			if !validName(hd.Name) {
				return fmt.Errorf("httpGet.httpHeaders: name %q: expected an HTTP header name (letters, digits and !#$%%&'*+-.^_`|~)", hd.Name)
			}
			if strings.ContainsAny(hd.Value, "\r\n\x00") {
				return fmt.Errorf("httpGet.httpHeaders: %s: expected a value without CR, LF or NUL", hd.Name)
			}
		}
	case p.GRPC != nil:
		if p.GRPC.Port < 1 || p.GRPC.Port > 65535 {
			return fmt.Errorf("grpc.port %d: expected 1 to 65535", p.GRPC.Port)
		}
	default:
		return errors.New("expected httpGet or grpc (tcpSocket and exec probes are not rewritten)")
	}
	return nil
}

// validName says whether s is an HTTP token (RFC 9110 field-name).
func validName(s string) bool {
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

// URL is the URL warden requests for an HTTP probe: the probe's path (and
// query) on 127.0.0.1 at its port, as the kubelet builds it (url.Parse of
// the path, then scheme and host set over whatever it held), so that a path
// such as "//elsewhere/x" or "http://elsewhere/" stays on loopback.
func (h *HTTPGet) URL() (*url.URL, error) {
	path := h.Path
	if path == "" {
		path = "/"
	}
	u, err := url.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("appprobe: path: %w", err)
	}
	u.Scheme = "http"
	if h.Scheme == SchemeHTTPS {
		u.Scheme = "https"
	}
	u.User, u.Opaque, u.Fragment, u.RawFragment = nil, "", "", ""
	u.Host = fmt.Sprintf("127.0.0.1:%d", h.Port)
	if u.Path == "" {
		u.Path, u.RawPath = "/", ""
	}
	return u, nil
}

// Redacted is s with what may be a credential replaced, for the startup
// log and error messages: the values of headers named like credentials
// (Authorization, X-Api-Key, Cookie, ...) and the query's secret
// parameters. A value that does not parse is replaced whole.
func Redacted(s string) string {
	set, err := Parse(s)
	if err != nil {
		return "[unparsable WARDEN_APP_PROBES]"
	}
	for k, p := range set {
		if p.HTTPGet != nil {
			h := *p.HTTPGet
			if path, q, ok := strings.Cut(h.Path, "?"); ok {
				h.Path = path + "?" + redact.Query(q)
			}
			h.HTTPHeaders = append([]Header(nil), h.HTTPHeaders...)
			for i, hd := range h.HTTPHeaders {
				if redact.IsCredentialName(hd.Name) {
					h.HTTPHeaders[i].Value = "REDACTED"
				}
			}
			p.HTTPGet = &h
			set[k] = p
		}
	}
	out, _ := set.Encode()
	return out
}
