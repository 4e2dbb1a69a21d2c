package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/warden-sidecar/warden/bench/loadgen/load"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// headers collects repeated -H flags.
type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func run(args []string, stdout, stderr io.Writer) error {
	cfg := load.DefaultConfig()
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.URL, "url", "", "target `URL`, http:// or https://; the host must be 127.0.0.0/8, ::1 or localhost")
	fs.StringVar(&cfg.CertFile, "cert", "", "client certificate chain `file` (PEM), with -key")
	fs.StringVar(&cfg.KeyFile, "key", "", "client private key `file` (PEM), with -cert")
	fs.StringVar(&cfg.CAFile, "cacert", "", "CA bundle `file` (PEM) to verify the server (default: system roots)")
	fs.StringVar(&cfg.ServerName, "server-name", "", "TLS server `name` for SNI and verification (default: the URL host)")
	fs.IntVar(&cfg.Connections, "c", cfg.Connections, fmt.Sprintf("connections, one worker each (max %d)", load.MaxConnections))
	fs.DurationVar(&cfg.Duration, "d", cfg.Duration, fmt.Sprintf("measured duration (max %s)", load.MaxDuration))
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, fmt.Sprintf("warmup before measuring, not recorded (max %s)", load.MaxWarmup))
	fs.Int64Var(&cfg.MaxRequests, "n", 0, "stop after this many measured requests (0: no limit)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open loop: total requests/s at fixed intended times, latency measured from them (0: closed loop)")
	fs.BoolVar(&cfg.NewConn, "newconn", false, "new connection (and TLS handshake) per request instead of keep-alive")
	fs.StringVar(&cfg.Method, "method", cfg.Method, "HTTP method")
	fs.IntVar(&cfg.BodySize, "body-size", 0, "request body size in `bytes`")
	fs.Var((*headers)(&cfg.Headers), "H", "request `header` 'Name: value' (repeatable)")
	fs.IntVar(&cfg.ExpectStatus, "expect-status", 0, "the only status `code` counted as success (0: any 2xx)")
	fs.StringVar(&cfg.GRPCMethod, "grpc", "", "unary gRPC calls to this full `method` (/package.Service/Method) instead of HTTP/1.1 requests: "+
		"http:// is h2c, https:// TLS with ALPN h2; -H is request metadata, -body-size the request message (google.protobuf.BytesValue)")
	fs.IntVar(&cfg.ExpectGRPCCode, "expect-grpc-code", 0, "with -grpc, the only gRPC status `code` counted as success (0: OK)")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "per-request timeout, dial and handshake included")
	asJSON := fs.Bool("json", false, "print one JSON object instead of the summary")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.URL == "" {
		return errors.New("-url is required")
	}

	// SIGINT stops the run early; the requests measured so far are printed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := load.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	return res.WriteText(stdout, cfg)
}
