package admission

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

// Handler decides one admission request. The server sets the response's
// UID; a nil response is answered as an error (the API server then applies
// the webhook's failurePolicy).
type Handler func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse

// Review is one request the server answered (or could not read), for the
// caller's access log.
type Review struct {
	Path      string
	Status    int // HTTP status: 200 for every review answered, allowed or not
	Error     string
	UID       string
	Kind      string
	Namespace string
	Name      string // the object's name, else its generateName
	Operation string
	DryRun    bool
	Allowed   bool
	Patched   bool
	Decision  string // the response's audit annotation "decision", if any
	Message   string // why a request was refused
	Warnings  int
	Duration  time.Duration
}

// Options configure a Server.
type Options struct {
	Addr     string             // host:port to listen on
	CertFile string             // PEM certificate (with its chain)
	KeyFile  string             // PEM private key
	Handlers map[string]Handler // by path, for POST

	OnReview      func(Review)            // each request to a Handler's path
	OnCertificate func(*x509.Certificate) // the certificate was loaded (at start and after each change)
	OnError       func(error)             // a certificate that failed to reload, a failed TLS handshake
}

// maxReview bounds a request body. The API server stores objects of up to
// 1.5 MiB and accepts requests of 3 MiB; a review carries one object (two
// for an update).
const maxReview = 8 << 20

// Server is the webhook's HTTPS server.
type Server struct {
	opts  Options
	ln    net.Listener
	srv   *http.Server
	certs *certReloader
}

// New loads the certificate and binds the address, so that both errors
// show before anything runs.
func New(opts Options) (*Server, error) {
	certs, err := newCertReloader(opts.CertFile, opts.KeyFile, opts.OnCertificate, opts.OnError)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, certs: certs}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	for path, h := range opts.Handlers {
		mux.Handle("POST "+path, s.review(path, h))
	}
	s.srv = &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: certs.getCertificate,
			NextProtos:     []string{"h2", "http/1.1"},
		},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(errorWriter(opts.OnError), "", 0),
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("admission: listen: %w", err)
	}
	s.ln = ln
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx is done, then lets requests in flight finish (up to
// 10 s).
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.ServeTLS(s.ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("admission: serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.srv.Shutdown(shutdown)
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	if err != nil {
		return fmt.Errorf("admission: shutdown: %w", err)
	}
	return nil
}

func (s *Server) review(path string, h Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rev := Review{Path: path, Status: http.StatusOK}
		defer func() {
			rev.Duration = time.Since(start)
			if s.opts.OnReview != nil {
				s.opts.OnReview(rev)
			}
		}()
		fail := func(status int, code string, err error) {
			rev.Status, rev.Error = status, err.Error()
			writeJSON(w, status, map[string]string{"error": code})
		}

		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			fail(http.StatusUnsupportedMediaType, "unsupported_media_type", fmt.Errorf("admission: content type %q: expected application/json", r.Header.Get("Content-Type")))
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReview))
		if err != nil {
			if errors.As(err, new(*http.MaxBytesError)) {
				fail(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Errorf("admission: review larger than %d bytes", maxReview))
				return
			}
			fail(http.StatusBadRequest, "bad_request", fmt.Errorf("admission: read review: %w", err))
			return
		}
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &review); err != nil {
			fail(http.StatusBadRequest, "bad_request", fmt.Errorf("admission: decode review: %w", err))
			return
		}
		if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" || review.Request == nil {
			fail(http.StatusBadRequest, "bad_request", fmt.Errorf("admission: got %s %s: expected an admission.k8s.io/v1 AdmissionReview with a request", review.APIVersion, review.Kind))
			return
		}
		req := review.Request
		rev.UID, rev.Kind, rev.Namespace, rev.Name, rev.Operation = string(req.UID), req.Kind.Kind, req.Namespace, req.Name, string(req.Operation)
		rev.DryRun = req.DryRun != nil && *req.DryRun
		if rev.Name == "" {
			var meta struct {
				Metadata struct {
					GenerateName string `json:"generateName"`
				} `json:"metadata"`
			}
			_ = json.Unmarshal(req.Object.Raw, &meta)
			rev.Name = meta.Metadata.GenerateName
		}

		resp := h(r.Context(), req)
		if resp == nil {
			fail(http.StatusInternalServerError, "internal_error", errors.New("admission: the handler gave no response"))
			return
		}
		resp.UID = req.UID
		rev.Allowed, rev.Patched, rev.Warnings = resp.Allowed, len(resp.Patch) > 0, len(resp.Warnings)
		rev.Decision = resp.AuditAnnotations["decision"]
		if resp.Result != nil {
			rev.Message = resp.Result.Message
		}
		writeJSON(w, http.StatusOK, admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal_error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// errorWriter turns net/http's log lines (failed TLS handshakes, mostly)
// into errors for the caller.
type errorWriter func(error)

func (f errorWriter) Write(p []byte) (int, error) {
	if f != nil {
		f(fmt.Errorf("admission: %s", strings.TrimSpace(string(p))))
	}
	return len(p), nil
}
