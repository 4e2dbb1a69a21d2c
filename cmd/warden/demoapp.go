package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"

	"github.com/valyala/fasthttp"
)

// demoHeaders are the request headers the demo app echoes: the ones warden
// sets, so a quickstart user sees what the app learns about the caller.
var demoHeaders = []string{"X-Forwarded-Client-Cert", "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id"}

// serveDemoApp is the quickstart's upstream: it answers every request with a
// JSON echo of the method, path and warden's headers.
func serveDemoApp(ctx context.Context, addr string, stderr io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("demo-app: listen on %s: %w", addr, err)
	}
	return serveDemoOn(ctx, ln, stderr)
}

func serveDemoOn(ctx context.Context, ln net.Listener, stderr io.Writer) error {
	srv := &fasthttp.Server{Handler: demoHandler, Name: "warden-demo-app"}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown()
	}()
	fmt.Fprintf(stderr, "demo-app: listening on %s\n", ln.Addr())
	return srv.Serve(ln)
}

func demoHandler(ctx *fasthttp.RequestCtx) {
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
