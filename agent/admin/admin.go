package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// ReadinessFunc reports whether warden can take traffic and, if not, why.
type ReadinessFunc func() (ready bool, reason string)

// Server is the admin HTTP server.
type Server struct {
	mux   *http.ServeMux
	srv   *http.Server
	ready ReadinessFunc
}

// New builds the admin server with /healthz and /readyz; Handle adds views.
func New(ready ReadinessFunc) *Server {
	s := &Server{mux: http.NewServeMux(), ready: ready}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.srv = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	return s
}

// HandleJSON serves GET path with the value view returns.
func (s *Server) HandleJSON(path string, view func() any) {
	s.mux.HandleFunc("GET "+path, func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, view())
	})
}

// Handle serves GET path with h (the metrics, in their own format).
func (s *Server) Handle(path string, h http.Handler) {
	s.mux.Handle("GET "+path, h)
}

type readiness struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if ok, reason := s.ready(); !ok {
		WriteJSON(w, http.StatusServiceUnavailable, readiness{Status: "not_ready", Reason: reason})
		return
	}
	WriteJSON(w, http.StatusOK, readiness{Status: "ready"})
}

// EnablePprof adds Go's profiler under /debug/pprof/: for measuring warden
// under load, on an admin address that only the pod can reach.
func (s *Server) EnablePprof() {
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	// Profiles run for their ?seconds= and must not hit WriteTimeout.
	s.srv.WriteTimeout = 0
}

// Serve serves on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the server.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}

// WriteJSON writes v as the JSON body with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}
