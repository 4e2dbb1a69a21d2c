package admin

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/warden-sidecar/warden/internal/appprobe"
)

// startAdmin serves an admin server with the app probes set on 127.0.0.1
// and returns its base URL and the results it reported.
func startAdmin(t *testing.T, set appprobe.Set) (string, func() []ProbeResult) {
	t.Helper()
	var mu sync.Mutex
	var results []ProbeResult
	s := New(func() (bool, string) { return true, "" })
	s.HandleAppProbes(set, func(r ProbeResult) { mu.Lock(); results = append(results, r); mu.Unlock() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	return "http://" + ln.Addr().String(), func() []ProbeResult {
		mu.Lock()
		defer mu.Unlock()
		return append([]ProbeResult(nil), results...)
	}
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://"))
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// get asks the admin server as the kubelet does and returns the status,
// the body and the error code of a JSON error body.
func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	req.Header.Set("User-Agent", "kube-probe/1.37")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, string(b), e.Error
}

// seen is what the app received.
type seen struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (s *seen) add(r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Clone(r.Context()))
	s.mu.Unlock()
}
func (s *seen) all() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.reqs...)
}

func TestAppProbeHTTP(t *testing.T) {
	var app seen
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		app.add(r)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-App-Secret", "not for the kubelet")
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/sick", func(w http.ResponseWriter, r *http.Request) {
		app.add(r)
		http.Error(w, "database down", http.StatusInternalServerError)
	})
	mux.HandleFunc("/missing", func(w http.ResponseWriter, r *http.Request) { app.add(r); http.NotFound(w, r) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		app.add(r)
		select { // longer than the probe's timeout: until the probe gives up
		case <-r.Context().Done():
		case <-release:
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(strings.Repeat("x", 3*maxProbeBody)))
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ready", http.StatusFound) })
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://192.0.2.1/login", http.StatusFound)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { app.add(r); w.WriteHeader(http.StatusOK) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	port := portOf(t, srv.URL)

	tlsApp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	t.Cleanup(tlsApp.Close)

	closed := httptest.NewServer(http.NotFoundHandler())
	closedPort := portOf(t, closed.URL)
	closed.Close()

	httpGet := func(path string, headers ...appprobe.Header) appprobe.Probe {
		return appprobe.Probe{HTTPGet: &appprobe.HTTPGet{Path: path, Port: port, HTTPHeaders: headers}}
	}
	set := appprobe.Set{
		"app/readiness": httpGet("/ready?verbose=1",
			appprobe.Header{Name: "X-Probe", Value: "readiness"}, appprobe.Header{Name: "Host", Value: "app.internal"}),
		"app/liveness":  httpGet("/sick"),
		"app/startup":   httpGet("/missing"),
		"slow/liveness": {HTTPGet: &appprobe.HTTPGet{Path: "/slow", Port: port}, TimeoutSeconds: 1},
		"big/readiness": httpGet("/big"),
		"moved/startup": httpGet("/moved"),
		"away/startup":  httpGet("/elsewhere"),
		// A path that names another host stays on loopback, as with the
		// kubelet: only its path and query are used.
		"hijack/liveness":  httpGet("http://192.0.2.1:80/hijack?x=1"),
		"hijack2/liveness": httpGet("//192.0.2.1/hijack2"),
		"tls/readiness":    {HTTPGet: &appprobe.HTTPGet{Path: "/", Port: portOf(t, tlsApp.URL), Scheme: appprobe.SchemeHTTPS}},
		"down/readiness":   {HTTPGet: &appprobe.HTTPGet{Path: "/", Port: closedPort}},
	}
	admin, results := startAdmin(t, set)

	tests := []struct {
		name       string
		path       string
		wantStatus int
		wantError  string
	}{
		{"a 2xx of the app is passed to the kubelet", "/app-health/app/readiness", http.StatusNoContent, ""},
		{"a 500 of the app is 503", "/app-health/app/liveness", http.StatusServiceUnavailable, "app_unhealthy"},
		{"a 404 of the app is 503", "/app-health/app/startup", http.StatusServiceUnavailable, "app_unhealthy"},
		{"an app slower than timeoutSeconds is 503", "/app-health/slow/liveness", http.StatusServiceUnavailable, "app_timeout"},
		{"an app that does not listen is 503", "/app-health/down/readiness", http.StatusServiceUnavailable, "app_unreachable"},
		{"a redirect on the app's port is followed", "/app-health/moved/startup", http.StatusNoContent, ""},
		{"a redirect elsewhere is not followed and passes, as with the kubelet", "/app-health/away/startup", http.StatusFound, ""},
		{"an HTTPS probe reaches the app over TLS without verification", "/app-health/tls/readiness", http.StatusAccepted, ""},
		{"a path naming another host reaches the app on loopback", "/app-health/hijack/liveness", http.StatusOK, ""},
		{"a path naming another authority reaches the app on loopback", "/app-health/hijack2/liveness", http.StatusOK, ""},
		{"an unknown probe of a known container is 404", "/app-health/app/readyz", http.StatusNotFound, "not_found"},
		{"an unknown container is 404", "/app-health/other/readiness", http.StatusNotFound, "not_found"},
		{"a path with more segments is 404", "/app-health/app/readiness/x", http.StatusNotFound, "not_found"},
		{"the prefix alone is 404", "/app-health/", http.StatusNotFound, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, code := get(t, admin+tt.path)
			if status != tt.wantStatus || code != tt.wantError {
				t.Errorf("GET %s: %d %s, want %d with error %q", tt.path, status, body, tt.wantStatus, tt.wantError)
			}
			if tt.wantError != "" && body != `{`+"\n"+`  "error": "`+tt.wantError+`"`+"\n}\n" {
				t.Errorf("body %q: want only the error code", body)
			}
		})
	}

	t.Run("the original path, query, headers and Host reach the app", func(t *testing.T) {
		var got *http.Request
		for _, r := range app.all() {
			if r.URL.Path == "/ready" && got == nil {
				got = r // the first: later ones came by the redirect
			}
		}
		if got == nil {
			t.Fatal("the app saw no /ready")
		}
		if got.URL.RawQuery != "verbose=1" || got.Header.Get("X-Probe") != "readiness" || got.Host != "app.internal" ||
			got.Header.Get("User-Agent") != "kube-probe/1.37" || got.Method != http.MethodGet {
			t.Errorf("app got %s %s?%s Host %s headers %v", got.Method, got.URL.Path, got.URL.RawQuery, got.Host, got.Header)
		}
	})
	t.Run("only the app's status and content type reach the kubelet", func(t *testing.T) {
		resp, err := http.Get(admin + "/app-health/app/readiness")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-App-Secret") != "" || resp.Header.Get("Content-Type") != "text/plain" {
			t.Errorf("headers %v", resp.Header)
		}
		resp, err = http.Get(admin + "/app-health/away/startup")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); loc != "" {
			t.Errorf("the app's redirect reached the kubelet: Location %s", loc)
		}
	})
	t.Run("the app's body is truncated", func(t *testing.T) {
		status, body, _ := get(t, admin+"/app-health/big/readiness")
		if status != http.StatusOK || len(body) != maxProbeBody {
			t.Errorf("%d with %d bytes, want 200 with %d", status, len(body), maxProbeBody)
		}
	})
	t.Run("hijacking paths reached the app on loopback", func(t *testing.T) {
		var paths []string
		for _, r := range app.all() {
			paths = append(paths, r.URL.String()+" host="+r.Host)
		}
		joined := strings.Join(paths, "\n")
		if !strings.Contains(joined, "/hijack?x=1 host=127.0.0.1:") || !strings.Contains(joined, "/hijack2 host=127.0.0.1:") {
			t.Errorf("app saw:\n%s", joined)
		}
	})
	t.Run("a request with a body is refused and not forwarded", func(t *testing.T) {
		before := len(app.all())
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, admin+"/app-health/app/readiness", strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || len(app.all()) != before {
			t.Errorf("status %d, app requests %d → %d", resp.StatusCode, before, len(app.all()))
		}
	})
	t.Run("failures are reported with the app's status, without the URL", func(t *testing.T) {
		var sick, slow *ProbeResult
		for _, r := range results() {
			switch {
			case r.Container == "app" && r.Probe == "liveness":
				sick = &r
			case r.Container == "slow":
				slow = &r
			}
		}
		if sick == nil || sick.Outcome != "app_unhealthy" || sick.Status != http.StatusInternalServerError {
			t.Errorf("result of app/liveness %+v", sick)
		}
		if slow == nil || slow.Outcome != "app_timeout" || slow.Err == nil || strings.Contains(slow.Err.Error(), "/slow") {
			t.Errorf("result of slow/liveness %+v", slow)
		}
	})
}

func TestAppProbeGRPC(t *testing.T) {
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("orders", healthpb.HealthCheckResponse_NOT_SERVING)
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	port := ln.Addr().(*net.TCPAddr).Port

	plain := httptest.NewServer(http.NotFoundHandler()) // no gRPC there
	t.Cleanup(plain.Close)

	admin, _ := startAdmin(t, appprobe.Set{
		"app/liveness":    {GRPC: &appprobe.GRPC{Port: port}},
		"app/readiness":   {GRPC: &appprobe.GRPC{Port: port, Service: "orders"}},
		"app/startup":     {GRPC: &appprobe.GRPC{Port: port, Service: "unknown"}},
		"plain/readiness": {GRPC: &appprobe.GRPC{Port: portOf(t, plain.URL)}},
	})
	tests := []struct {
		name, path string
		status     int
		code       string
	}{
		{"SERVING is 200", "/app-health/app/liveness", http.StatusOK, ""},
		{"NOT_SERVING is 503", "/app-health/app/readiness", http.StatusServiceUnavailable, "app_unhealthy"},
		{"an unknown service is 503", "/app-health/app/startup", http.StatusServiceUnavailable, "app_unhealthy"},
		{"a port without gRPC is 503", "/app-health/plain/readiness", http.StatusServiceUnavailable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, code := get(t, admin+tt.path)
			if status != tt.status || (tt.code != "" && code != tt.code) {
				t.Errorf("%d %s, want %d %q", status, body, tt.status, tt.code)
			}
		})
	}
	hs.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)
	if status, body, _ := get(t, admin+"/app-health/app/readiness"); status != http.StatusOK {
		t.Errorf("after the service turned SERVING: %d %s", status, body)
	}
}

func TestAppProbesNoneConfigured(t *testing.T) {
	admin, _ := startAdmin(t, nil)
	if status, _, code := get(t, admin+"/app-health/app/readiness"); status != http.StatusNotFound || code != "not_found" {
		t.Errorf("%d %q", status, code)
	}
	if status, _, _ := get(t, admin+"/healthz"); status != http.StatusOK {
		t.Errorf("healthz %d", status)
	}
}
