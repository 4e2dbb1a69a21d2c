package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// demoHeaders are the request headers the demo app echoes: the ones warden
// sets, so a quickstart user sees what the app learns about the caller.
var demoHeaders = []string{"X-Forwarded-Client-Cert", "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id"}

// serveDemoApp is the quickstart's upstream: it answers every request with a
// JSON echo of the method, path and warden's headers (after ?delay=, a Go
// duration up to 30s, when given). On SIGTERM it stops listening and
// finishes the requests it has (fasthttp's Shutdown).
func serveDemoApp(ctx context.Context, addr string, stderr io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("demo-app: listen on %s: %w", addr, err)
	}
	return serveDemoOn(ctx, ln, stderr)
}

func serveDemoOn(ctx context.Context, ln net.Listener, stderr io.Writer) error {
	srv := &fasthttp.Server{Handler: demoHandler, Name: "warden-demo-app"}
	stopped := make(chan struct{})
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown()
		close(stopped)
	}()
	fmt.Fprintf(stderr, "demo-app: listening on %s\n", ln.Addr())
	err := srv.Serve(ln)
	if ctx.Err() != nil {
		// Serve returns as soon as Shutdown closes the listener; the
		// requests in flight end when Shutdown returns.
		<-stopped
		return nil
	}
	return err
}

// maxDemoDelay bounds the demo app's ?delay=: enough for a request to be
// in flight while a pod is deleted (the cluster tests' drain), too little
// to hold a connection for long.
const maxDemoDelay = 30 * time.Second

func demoHandler(ctx *fasthttp.RequestCtx) {
	// ?delay=2s answers that much later: a slow request, to watch it
	// drain.
	if d := ctx.QueryArgs().Peek("delay"); len(d) > 0 {
		delay, err := time.ParseDuration(string(d))
		if err != nil || delay < 0 || delay > maxDemoDelay {
			ctx.Error(`{"error":"bad_delay"}`, fasthttp.StatusBadRequest)
			ctx.SetContentType("application/json")
			return
		}
		time.Sleep(delay)
	}
	headers := make(map[string]string, len(demoHeaders))
	for _, h := range demoHeaders {
		if v := ctx.Request.Header.Peek(h); len(v) > 0 {
			headers[h] = string(v)
		}
	}
	body, _ := json.MarshalIndent(map[string]any{
		"app":     "warden demo-app",
		"method":  string(ctx.Method()),
		"path":    string(ctx.Path()),
		"headers": headers,
	}, "", "  ")
	ctx.SetContentType("application/json")
	ctx.SetBody(append(body, '\n'))
}
