package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/internal/grpctest"
	"github.com/warden-sidecar/warden/spiffe"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback)")
	size := flag.Int("body-size", 5, "response body bytes")
	mtls := flag.Bool("mtls", false, "terminate mTLS with an SVID from the dev CA in -dev-dir")
	devDir := flag.String("dev-dir", "./.warden-dev", "warden's WARDEN_DEV_DIR")
	id := flag.String("id", "spiffe://warden.local/ns/default/sa/app", "SPIFFE ID to serve as with -mtls")
	grpcMode := flag.Bool("grpc", false, "serve gRPC in plaintext HTTP/2 (h2c) instead: internal/grpctest's service, warden.test.Echo (its Unary echoes the request message)")
	flag.Parse()
	if *grpcMode && *mtls {
		return fmt.Errorf("-grpc and -mtls: the gRPC app serves h2c only")
	}

	host, _, err := net.SplitHostPort(*addr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		return fmt.Errorf("-addr %q: a loopback address is required", *addr)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	scheme := "http"
	if *mtls {
		sid, err := spiffeid.FromString(*id)
		if err != nil {
			return err
		}
		ca, err := spiffe.LoadOrCreateDevCA(*devDir, sid.TrustDomain())
		if err != nil {
			return err
		}
		src, err := spiffe.NewDevSource(ca, sid, nil)
		if err != nil {
			return err
		}
		scheme = "https"
		ln = tls.NewListener(ln, spiffe.ServerTLSConfig(src, src))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *grpcMode {
		app := grpctest.New()
		go func() { <-ctx.Done(); app.Stop() }()
		fmt.Printf("http://%s/ (gRPC, h2c)\n", ln.Addr())
		return app.Serve(ln)
	}
	body := []byte(strings.Repeat("x", *size))
	srv := &fasthttp.Server{
		Handler:               func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) },
		NoDefaultServerHeader: true,
	}
	go func() { <-ctx.Done(); _ = srv.Shutdown() }()
	fmt.Printf("%s://%s/\n", scheme, ln.Addr())
	return srv.Serve(ln)
}
