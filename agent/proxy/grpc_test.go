package proxy

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestGRPCContentType(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "application/grpc+json": true,
		"application/grpc;charset=utf-8": true, "Application/GRPC": true,
		"application/grpc-web": false, "application/grpcx": false, "application/json": false, "": false,
	} {
		if got := isGRPC(ct); got != want {
			t.Errorf("isGRPC(%q) = %v, want %v", ct, got, want)
		}
	}
}

func TestGRPCPath(t *testing.T) {
	tests := []struct {
		path, service, method string
		ok                    bool
	}{
		{"/pkg.Service/Method", "pkg.Service", "Method", true},
		{"/Svc/M", "Svc", "M", true},
		{"/pkg.Service", "", "", false},
		{"/pkg.Service/", "", "", false},
		{"//Method", "", "", false},
		{"/a/b/c", "", "", false},
		{"/", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		svc, m, ok := grpcPath([]byte(tt.path))
		if ok != tt.ok || string(svc) != tt.service || string(m) != tt.method {
			t.Errorf("grpcPath(%q) = %q %q %v, want %q %q %v", tt.path, svc, m, ok, tt.service, tt.method, tt.ok)
		}
	}
}

func TestGRPCTimeout(t *testing.T) {
	tests := []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"300m", 300 * time.Millisecond, true},
		{"1S", time.Second, true},
		{"2M", 2 * time.Minute, true},
		{"1H", time.Hour, true},
		{"99999999u", 99999999 * time.Microsecond, true},
		{"5n", 5, true},
		{"99999999H", 1 << 62, true},
		{"100", 0, false},        // no unit
		{"123456789S", 0, false}, // nine digits
		{"-1S", 0, false},        // sign
		{"1s", 0, false},         // unknown unit
		{"", 0, false},
	}
	for _, tt := range tests {
		d, ok := grpcTimeout(tt.v)
		if d != tt.want || ok != tt.ok {
			t.Errorf("grpcTimeout(%q) = %v %v, want %v %v", tt.v, d, ok, tt.want, tt.ok)
		}
	}
}

func TestGRPCStatusOfRefusals(t *testing.T) {
	for status, want := range map[int]int{
		403: 7, 401: 16, 429: 8, 400: 3, 404: 3, 405: 3, 413: 3, 415: 3, 431: 3,
		502: 14, 503: 14, 504: 4, 500: 13, 501: 12, 418: 2,
	} {
		if got := GRPCStatus(status); got != want {
			t.Errorf("HTTP %d is gRPC %d, want %d", status, got, want)
		}
	}
}

// FuzzGRPCRequest: grpcPath and grpcTimeout read what clients send; they
// never panic, and a path they accept has exactly two non-empty segments.
func FuzzGRPCRequest(f *testing.F) {
	for _, s := range []string{"/pkg.Svc/Get", "//", "/a/b/c", "300m", "99999999H", "1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if svc, m, ok := grpcPath([]byte(s)); ok && ("/"+string(svc)+"/"+string(m) != s || len(svc) == 0 || len(m) == 0) {
			t.Errorf("grpcPath(%q) = %q, %q", s, svc, m)
		}
		if d, ok := grpcTimeout(s); ok && d < 0 {
			t.Errorf("grpcTimeout(%q) = %v", s, d)
		}
	})
}

// A stream the app resets once the deadline has passed (a gRPC server does
// when the grpc-timeout warden forwarded runs out) is the deadline's
// failure, even when it reaches warden before warden's own timer fires.
func TestTransportErrorAtTheDeadlineIsATimeout(t *testing.T) {
	reset := errors.New("stream error: stream ID 3; CANCEL; received from peer")
	past, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	defer cancel()
	if status, code := transportError(past, reset); status != http.StatusGatewayTimeout || code != "upstream_timeout" {
		t.Errorf("a reset after the deadline: %d %s, want 504 upstream_timeout", status, code)
	}
	future, cancel2 := context.WithTimeout(context.Background(), time.Hour)
	defer cancel2()
	if status, code := transportError(future, reset); status != http.StatusBadGateway || code != "upstream_unavailable" {
		t.Errorf("a reset before the deadline: %d %s, want 502 upstream_unavailable", status, code)
	}
}
