package admission

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/warden-sidecar/warden/deploy/kubetest"
)

// secretDir writes a key pair the way the kubelet fills a Secret volume:
// the files are symlinks through ..data to a timestamped directory, and an
// update swaps ..data atomically.
type secretDir struct {
	dir string
	n   int
}

func (s *secretDir) write(t *testing.T, cert, key []byte) {
	t.Helper()
	s.n++
	ts := fmt.Sprintf("..v%d", s.n)
	if err := os.Mkdir(filepath.Join(s.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"tls.crt": cert, "tls.key": key} {
		if err := os.WriteFile(filepath.Join(s.dir, ts, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if s.n == 1 {
			if err := os.Symlink(filepath.Join("..data", name), filepath.Join(s.dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(s.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

type events struct {
	mu      sync.Mutex
	reviews []Review
	loaded  []*x509.Certificate
	errs    []error
}

func (e *events) options(o Options) Options {
	o.OnReview = func(r Review) { e.mu.Lock(); e.reviews = append(e.reviews, r); e.mu.Unlock() }
	o.OnCertificate = func(c *x509.Certificate) { e.mu.Lock(); e.loaded = append(e.loaded, c); e.mu.Unlock() }
	o.OnError = func(err error) { e.mu.Lock(); e.errs = append(e.errs, err); e.mu.Unlock() }
	return o
}

func (e *events) snapshot() ([]Review, []*x509.Certificate, []error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Review(nil), e.reviews...), append([]*x509.Certificate(nil), e.loaded...), append([]error(nil), e.errs...)
}

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return srv
}

func client(ca *kubetest.CA) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
}

func review(req *admissionv1.AdmissionRequest) []byte {
	b, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	return b
}

func TestServerAnswersReviews(t *testing.T) {
	ca := kubetest.NewCA(t, "test CA")
	cert, key := ca.Issue(t, "webhook", nil, nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	sd := &secretDir{dir: t.TempDir()}
	sd.write(t, cert, key)
	var ev events
	srv := start(t, ev.options(Options{
		Addr: "127.0.0.1:0", CertFile: filepath.Join(sd.dir, "tls.crt"), KeyFile: filepath.Join(sd.dir, "tls.key"),
		Handlers: map[string]Handler{"/mutate": func(_ context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
			if req.Namespace == "nil" {
				return nil
			}
			pt := admissionv1.PatchTypeJSONPatch
			return &admissionv1.AdmissionResponse{Allowed: true, Patch: []byte(`[]`), PatchType: &pt, Warnings: []string{"w"},
				AuditAnnotations: map[string]string{"decision": "injected"}}
		}},
	}))
	c := client(ca)
	base := "https://" + srv.Addr().String()

	resp, err := c.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
		t.Errorf("healthz: %d %s", resp.StatusCode, body)
	}

	req := &admissionv1.AdmissionRequest{UID: "u-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Namespace: "shop", Operation: admissionv1.Create, Object: runtimeRaw(`{"metadata":{"generateName":"orders-"}}`)}
	resp, err = c.Post(base+"/mutate", "application/json", bytes.NewReader(review(req)))
	if err != nil {
		t.Fatal(err)
	}
	var out admissionv1.AdmissionReview
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != 200 || out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" ||
		out.Response == nil || out.Response.UID != "u-1" || !out.Response.Allowed {
		t.Fatalf("review: %d %+v", resp.StatusCode, out)
	}

	tests := []struct {
		name, method, path, ctype string
		body                      []byte
		want                      int
	}{
		{"not JSON", "POST", "/mutate", "text/plain", review(req), 415},
		{"garbage", "POST", "/mutate", "application/json", []byte("{"), 400},
		{"old version", "POST", "/mutate", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`), 400},
		{"no request", "POST", "/mutate", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), 400},
		{"too large", "POST", "/mutate", "application/json", bytes.Repeat([]byte(" "), maxReview+1), 413},
		{"no answer", "POST", "/mutate", "application/json", review(&admissionv1.AdmissionRequest{UID: "u-2", Namespace: "nil"}), 500},
		{"GET", "GET", "/mutate", "", nil, 405},
		{"unknown path", "POST", "/validate", "application/json", review(req), 404},
	}
	for _, tt := range tests {
		r, _ := http.NewRequest(tt.method, base+tt.path, bytes.NewReader(tt.body))
		if tt.ctype != "" {
			r.Header.Set("Content-Type", tt.ctype)
		}
		resp, err := c.Do(r)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}

	reviews, loaded, _ := ev.snapshot()
	if len(loaded) != 1 || loaded[0].Subject.CommonName != "webhook" {
		t.Errorf("certificates loaded: %v", loaded)
	}
	if len(reviews) != 7 {
		t.Fatalf("%d reviews logged, want 7 (one per POST to /mutate): %+v", len(reviews), reviews)
	}
	r := reviews[0]
	if r.Status != 200 || r.UID != "u-1" || r.Namespace != "shop" || r.Name != "orders-" || r.Kind != "Pod" || r.Operation != "CREATE" ||
		!r.Allowed || !r.Patched || r.Decision != "injected" || r.Warnings != 1 || r.Path != "/mutate" {
		t.Errorf("review logged as %+v", r)
	}
	if r := reviews[2]; r.Status != 400 || !strings.HasPrefix(r.Error, "admission: decode review:") {
		t.Errorf("garbage logged as %+v", r)
	}
}

func runtimeRaw(s string) runtime.RawExtension {
	return runtime.RawExtension{Raw: []byte(s)}
}

// The kubelet updates a Secret volume by swapping a symlink; the server
// serves the new pair from the next handshake on (within checkEvery), and
// keeps the old one while the files hold a pair that does not load.
func TestCertificateIsReloadedWhenTheFilesChange(t *testing.T) {
	ca := kubetest.NewCA(t, "test CA")
	ip := []net.IP{net.IPv4(127, 0, 0, 1)}
	certA, keyA := ca.Issue(t, "webhook-a", nil, nil, ip)
	certB, keyB := ca.Issue(t, "webhook-b", nil, nil, ip)
	certC, keyC := ca.Issue(t, "webhook-c", nil, nil, ip)
	sd := &secretDir{dir: t.TempDir()}
	sd.write(t, certA, keyA)
	var ev events
	srv := start(t, ev.options(Options{Addr: "127.0.0.1:0", CertFile: filepath.Join(sd.dir, "tls.crt"), KeyFile: filepath.Join(sd.dir, "tls.key")}))

	served := func() string {
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		conn, err := tls.Dial("tcp", srv.Addr().String(), &tls.Config{RootCAs: roots})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	waitServed := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * checkEvery)
		for served() != want {
			if time.Now().After(deadline) {
				t.Fatalf("still serving %s, want %s", served(), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if got := served(); got != "webhook-a" {
		t.Fatalf("serving %s", got)
	}

	sd.write(t, certB, keyB)
	waitServed("webhook-b")

	// A certificate with another's key: refused once, the old pair stays.
	sd.write(t, certC, keyB)
	deadline := time.Now().Add(10 * checkEvery)
	for {
		if _, _, errs := ev.snapshot(); len(errs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no error reported for a mismatched pair")
		}
		if got := served(); got != "webhook-b" {
			t.Fatalf("serving %s after a bad update", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, _, errs := ev.snapshot(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "admission: load certificate") ||
		!strings.Contains(errs[0].Error(), "(serving the previous certificate)") {
		t.Errorf("errors %v", errs)
	}

	sd.write(t, certC, keyC)
	waitServed("webhook-c")
	if _, loaded, _ := ev.snapshot(); len(loaded) != 3 {
		t.Errorf("%d loads reported, want 3", len(loaded))
	}
}

func TestNewFailsWithoutACertificate(t *testing.T) {
	_, err := New(Options{Addr: "127.0.0.1:0", CertFile: "/nonexistent/tls.crt", KeyFile: "/nonexistent/tls.key"})
	if err == nil || !strings.Contains(err.Error(), "admission: certificate file: stat /nonexistent/tls.crt: no such file or directory") {
		t.Errorf("%v", err)
	}
}

// A pair that fails to load is reported once, however many handshakes
// look at it, and again only after the files change.
func TestBadPairIsReportedOnce(t *testing.T) {
	ca := kubetest.NewCA(t, "test CA")
	certA, keyA := ca.Issue(t, "a", nil, nil, nil)
	certB, _ := ca.Issue(t, "b", nil, nil, nil)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func(name string, b []byte) {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(certFile, certA)
	write(keyFile, keyA)
	var errs []error
	l, err := newCertReloader(certFile, keyFile, nil, func(err error) { errs = append(errs, err) })
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	write(certFile, certB) // B's certificate with A's key
	for i := range 5 {
		l.maybeReload(now.Add(time.Duration(i+1) * 2 * checkEvery))
	}
	if len(errs) != 1 || l.cur.Load().cert.Leaf.Subject.CommonName != "a" {
		t.Fatalf("after 5 checks: %d errors %v, serving %s", len(errs), errs, l.cur.Load().cert.Leaf.Subject.CommonName)
	}
	write(certFile, append(certB, '\n')) // changed, still bad
	l.maybeReload(now.Add(20 * checkEvery))
	if len(errs) != 2 {
		t.Errorf("a changed bad pair: %d errors", len(errs))
	}
	// A check within checkEvery of the last one does not look.
	write(certFile, certA)
	l.maybeReload(now.Add(20*checkEvery + checkEvery/2))
	if l.cur.Load().cert.Leaf.Subject.CommonName != "a" || len(errs) != 2 {
		t.Errorf("early check: %v", errs)
	}
	os.Remove(keyFile)
	l.maybeReload(now.Add(30 * checkEvery))
	l.maybeReload(now.Add(40 * checkEvery))
	if len(errs) != 3 || !strings.Contains(errs[2].Error(), "no such file") {
		t.Errorf("missing key: %v", errs)
	}
}
