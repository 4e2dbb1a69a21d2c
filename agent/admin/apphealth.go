package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/warden-sidecar/warden/internal/appprobe"
)

// The app's probes, rewritten by the webhook: the kubelet asks warden's
// admin port (never redirected) at /app-health/<container>/<probe>, and
// warden asks the app on loopback the way the original probe would have,
// as Istio's pilot-agent does for rewriteAppHTTPProbers. Without this, a
// probe of a redirected port would reach warden's mTLS listener and fail.

// Bounds of the forwarding: the app's answer is passed to the kubelet up to
// maxProbeBody bytes, and at most maxProbesInFlight probes run at once
// (the kubelet runs one of each at a time; more come from someone else
// who reached the admin port, and must not multiply into the app).
const (
	maxProbeBody      = 4 << 10
	maxProbesInFlight = 16
	maxProbeRedirects = 10 // the kubelet's limit
)

// ProbeResult is what the admin server tells its owner about one app
// probe it forwarded, for the log: Outcome is the code the kubelet got
// ("ok", "app_unhealthy", "app_timeout", "app_unreachable",
// "app_probe_busy"), Status the app's HTTP status (0 for gRPC or none),
// Err the cause of a failure (no URL, no header).
type ProbeResult struct {
	Container, Probe string
	Outcome          string
	Status           int
	Err              error
	Duration         time.Duration
}

// appProbes serves /app-health/ for the configured probes only.
type appProbes struct {
	probes   map[string]appprobe.Probe
	client   *http.Client
	inFlight chan struct{}
	observe  func(ProbeResult)
}

// HandleAppProbes serves GET /app-health/<container>/<probe> for the
// probes of set (WARDEN_APP_PROBES); any other name answers 404. observe
// gets every result (it may be nil).
func (s *Server) HandleAppProbes(set appprobe.Set, observe func(ProbeResult)) {
	if observe == nil {
		observe = func(ProbeResult) {}
	}
	h := &appProbes{probes: set, client: probeClient(), inFlight: make(chan struct{}, maxProbesInFlight), observe: observe}
	s.mux.HandleFunc("GET "+appprobe.PathPrefix+"{container}/{probe}", h.serve)
	// Anything else under the prefix (more or fewer segments) is unknown
	// too, and answers in JSON like the rest of the admin server.
	s.mux.HandleFunc(appprobe.PathPrefix, func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusNotFound, errorBody{"not_found"})
	})
}

type errorBody struct {
	Error string `json:"error"`
}

// probeClient is the kubelet's HTTP prober on loopback: no proxy from the
// environment, no connection reuse, TLS without verification for HTTPS
// probes (the kubelet does not verify either: the app's certificate names
// a service, not 127.0.0.1), redirects followed only on the same host and
// port, and a dialer that refuses anything but loopback, whatever the URL.
func probeClient() *http.Client {
	dialer := &net.Dialer{}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as the kubelet probes HTTPS
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, _, err := net.SplitHostPort(addr)
				if err != nil || host != "127.0.0.1" {
					return nil, fmt.Errorf("app probe to %q: only 127.0.0.1 is probed", addr)
				}
				return dialer.DialContext(ctx, network, addr)
			},
			MaxResponseHeaderBytes: 16 << 10,
		},
		// The kubelet follows redirects on the probed host and takes a
		// redirect elsewhere as success without following it.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host != via[0].URL.Host {
				return http.ErrUseLastResponse
			}
			if len(via) >= maxProbeRedirects {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		},
	}
}

func (h *appProbes) serve(w http.ResponseWriter, r *http.Request) {
	container, probe := r.PathValue("container"), r.PathValue("probe")
	p, ok := h.probes[appprobe.Key(container, probe)]
	if !ok {
		WriteJSON(w, http.StatusNotFound, errorBody{"not_found"})
		return
	}
	res := ProbeResult{Container: container, Probe: probe}
	if r.ContentLength != 0 {
		WriteJSON(w, http.StatusBadRequest, errorBody{"body_not_allowed"})
		return
	}
	select {
	case h.inFlight <- struct{}{}:
		defer func() { <-h.inFlight }()
	default:
		res.Outcome = "app_probe_busy"
		h.observe(res)
		WriteJSON(w, http.StatusServiceUnavailable, errorBody{res.Outcome})
		return
	}
	timeout := p.Timeout()
	// The admin server's write timeout is shorter than the longest probe.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + 5*time.Second))
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	start := time.Now()
	if p.GRPC != nil {
		h.grpc(ctx, w, r, p.GRPC, &res)
	} else {
		h.http(ctx, w, r, p.HTTPGet, &res)
	}
	res.Duration = time.Since(start)
	h.observe(res)
}

func (h *appProbes) http(ctx context.Context, w http.ResponseWriter, in *http.Request, p *appprobe.HTTPGet, res *ProbeResult) {
	u, err := p.URL()
	if err != nil { // Parse checked the path
		res.Outcome, res.Err = "app_unreachable", err
		WriteJSON(w, http.StatusServiceUnavailable, errorBody{res.Outcome})
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		res.Outcome, res.Err = "app_unreachable", err
		WriteJSON(w, http.StatusServiceUnavailable, errorBody{res.Outcome})
		return
	}
	// The kubelet's own headers, then the probe's (which may replace them).
	ua := in.Header.Get("User-Agent")
	if !strings.HasPrefix(ua, "kube-probe/") {
		ua = "kube-probe/warden"
	}
	req.Header.Set("User-Agent", ua)
	req.Header.Set("Accept", "*/*")
	for _, hd := range p.HTTPHeaders {
		if strings.EqualFold(hd.Name, "Host") {
			req.Host = hd.Value
			continue
		}
		req.Header.Set(hd.Name, hd.Value)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		res.Outcome, res.Err = failure(ctx, err)
		WriteJSON(w, http.StatusServiceUnavailable, errorBody{res.Outcome})
		return
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	if err != nil && ctx.Err() != nil {
		res.Outcome, res.Err = "app_timeout", ctx.Err()
		WriteJSON(w, http.StatusServiceUnavailable, errorBody{res.Outcome})
		return
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		res.Outcome = "app_unhealthy"
		WriteJSON(w, http.StatusServiceUnavailable, errorBody{res.Outcome})
		return
	}
	// Success: the app's status and the start of its body. No header of
	// the app's but its Content-Type: a Location would send the kubelet
	// to a path of warden's.
	res.Outcome = "ok"
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

func (h *appProbes) grpc(ctx context.Context, w http.ResponseWriter, in *http.Request, p *appprobe.GRPC, res *ProbeResult) {
	ua := in.Header.Get("User-Agent")
	if !strings.HasPrefix(ua, "kube-probe/") {
		ua = "kube-probe/warden"
	}
	// passthrough: no resolver, the address is the literal loopback one.
	conn, err := grpc.NewClient("passthrough:///127.0.0.1:"+strconv.Itoa(p.Port),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithNoProxy(), grpc.WithUserAgent(ua))
	if err != nil {
		res.Outcome, res.Err = "app_unreachable", err
		WriteJSON(w, http.StatusServiceUnavailable, errorBody{res.Outcome})
		return
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: p.Service})
	if err != nil {
		switch code := status.Code(err); {
		case code == codes.DeadlineExceeded || ctx.Err() != nil:
			res.Outcome = "app_timeout"
		case code == codes.Unavailable:
			res.Outcome = "app_unreachable"
		default: // NotFound for an unknown service, Unimplemented without health
			res.Outcome = "app_unhealthy"
		}
		res.Err = err
		WriteJSON(w, http.StatusServiceUnavailable, errorBody{res.Outcome})
		return
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		res.Outcome, res.Err = "app_unhealthy", fmt.Errorf("grpc health status %s", resp.GetStatus())
		WriteJSON(w, http.StatusServiceUnavailable, errorBody{res.Outcome})
		return
	}
	res.Outcome = "ok"
	WriteJSON(w, http.StatusOK, map[string]string{"status": "serving"})
}

// failure names a failed request to the app: its deadline, or anything
// else. The error is net/http's without the URL (a probe's query may carry
// a credential).
func failure(ctx context.Context, err error) (string, error) {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if ctx.Err() != nil {
		return "app_timeout", err
	}
	return "app_unreachable", err
}
