package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/internal/grpctest"
)

func startHello(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("hello") }}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.ShutdownWithContext(ctx)
		<-served
	})
	return "http://" + ln.Addr().String() + "/"
}

func TestJSONOutputHasTheDocumentedKeys(t *testing.T) {
	url := startHello(t)
	var out, errOut bytes.Buffer
	if err := run([]string{"-url", url, "-c", "2", "-d", "200ms", "-warmup", "50ms", "-json"}, &out, &errOut); err != nil {
		t.Fatalf("run: %v (stderr %s)", err, errOut.String())
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out.String())
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range got {
			if !yield(k) {
				return
			}
		}
	})
	want := []string{"conns_opened", "dropped", "duration_s", "errors", "errors_by_kind", "max_ms", "mean_ms",
		"p50_ms", "p90_ms", "p999_ms", "p99_ms", "requests", "rps", "sent"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys %v\nwant %v", keys, want)
	}
	if got["requests"].(float64) <= 0 || got["errors"].(float64) != 0 || got["p50_ms"].(float64) <= 0 {
		t.Errorf("implausible run: %s", out.String())
	}
}

func TestTextOutputShowsCountsAndLatency(t *testing.T) {
	url := startHello(t)
	var out bytes.Buffer
	if err := run([]string{"-url", url, "-c", "1", "-d", "100ms", "-warmup", "0s", "-expect-status", "201"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"closed loop, 1 connections, keep-alive", "requests ", "errors       status_200 ", "latency ms   none: no successful request"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestGRPCTextOutputNamesTheMethodAndStatus(t *testing.T) {
	app := grpctest.Start(t)
	var out bytes.Buffer
	if err := run([]string{"-url", "http://" + app.Addr + "/", "-grpc", grpctest.Method("Unary"), "-c", "1", "-n", "5",
		"-warmup", "0s", "-expect-grpc-code", "7"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"target       gRPC /warden.test.Echo/Unary at http://", "closed loop, 1 connections, gRPC unary",
		"requests     5 ", "errors       grpc_status_0 5", "latency ms   none: no successful request"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBadInvocationsAreRefused(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no URL", nil, "-url is required"},
		{"non-loopback URL", []string{"-url", "https://10.0.0.1/"},
			`load: -url "https://10.0.0.1/": host "10.0.0.1": not a loopback address (want 127.0.0.0/8, ::1 or localhost)`},
		{"duration above 5m", []string{"-url", "http://127.0.0.1:1/", "-d", "6m"}, "load: -d 6m0s: want more than 0 and at most 5m0s"},
		{"missing client certificate file", []string{"-url", "https://127.0.0.1:1/", "-cert", "/nonexistent/c.pem", "-key", "/nonexistent/k.pem"},
			"load: -cert: open /nonexistent/c.pem: no such file or directory"},
		{"stray argument", []string{"-url", "http://127.0.0.1:1/", "extra"}, `unexpected arguments ["extra"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(tt.args, &out, &out)
			if err == nil || err.Error() != tt.want {
				t.Errorf("run error\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-h"}, &out, &out); err != nil {
		t.Fatalf("-h: %v", err)
	}
	for _, f := range []string{"-url", "-cert", "-key", "-cacert", "-server-name", "-c ", "-d ", "-warmup", "-n ", "-rate",
		"-newconn", "-method", "-body-size", "-H ", "-expect-status", "-timeout", "-json", "-grpc", "-expect-grpc-code"} {
		if !strings.Contains(out.String(), "  "+f) {
			t.Errorf("usage lacks %s", f)
		}
	}
}
