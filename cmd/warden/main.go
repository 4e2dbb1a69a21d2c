package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/warden-sidecar/warden/agent"
	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/agent/openapi"
	"github.com/warden-sidecar/warden/spiffe"
)

// version is set with -ldflags "-X main.version=..." by make build.
var version = "dev"

const usage = `warden: per-pod security sidecar

Usage:
  warden [run]                              start the sidecar (configured by WARDEN_* environment variables)
  warden dev issue --id SPIFFE_ID --out DIR [--ttl 24h] [--dns NAMES] [--ip IPS]
                                            issue an SVID from the development CA in WARDEN_DEV_DIR
  warden demo-app [--addr 127.0.0.1:8080]   a small upstream app that echoes what it received
  warden quickstart                         demo app + dev identity + sidecar, with curl commands (make run)
  warden webhook                            the mutating admission webhook that injects warden into pods
  warden init [--dry-run]                   install the rules that redirect the app's inbound traffic to warden (pod init container)
  warden policy eval --input FILE [--bundle PATH] [--decision RULE] [--explain fails|full|notes]
                                            decide a decision log line's input again, offline, and explain it
                                            (exit 0 allowed, 1 denied, 2 usage or input error)
  warden version
`

func main() {
	err := run(os.Args[1:], os.LookupEnv, os.Stdin, os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	code := 1
	var ec *exitCode
	if errors.As(err, &ec) {
		code = ec.code
	}
	if ec == nil || ec.err != nil {
		fmt.Fprintln(os.Stderr, "warden:", err)
	}
	os.Exit(code)
}

// exitCode is an error that sets the exit status other than 1; without err
// nothing is printed (warden policy eval's denial: its output said so).
type exitCode struct {
	code int
	err  error
}

func (e *exitCode) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitCode) Unwrap() error { return e.err }

func run(args []string, lookup func(string) (string, bool), stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch cmd {
	case "run":
		return runSidecar(ctx, lookup, stderr)
	case "dev":
		if len(args) == 0 || args[0] != "issue" {
			return errors.New("usage: warden dev issue --id SPIFFE_ID --out DIR [--ttl 24h]")
		}
		return devIssue(args[1:], lookup, stdout)
	case "demo-app":
		fs := flag.NewFlagSet("demo-app", flag.ContinueOnError)
		addr := fs.String("addr", "127.0.0.1:8080", "listen address")
		if err := fs.Parse(args); err != nil {
			return err
		}
		return serveDemoApp(ctx, *addr, stderr)
	case "quickstart":
		return quickstart(ctx, lookup, stdout, stderr)
	case "webhook":
		return runWebhook(ctx, args, lookup, stdout, stderr)
	case "init":
		return runInit(ctx, args, lookup, stdout, stderr)
	case "policy":
		return runPolicy(ctx, args, stdin, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "warden", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}

func runSidecar(ctx context.Context, lookup func(string) (string, bool), stderr io.Writer) error {
	cfg, err := config.FromEnv(lookup)
	if err != nil {
		return err
	}
	if cfg.OpenAPISpec != "" {
		// A spec that does not compile is a configuration error: one line,
		// before anything starts. The agent loads it again, and watches it.
		if _, err := openapi.Load(cfg.OpenAPISpec); err != nil {
			return fmt.Errorf("config: WARDEN_OPENAPI_SPEC=%s: %w", cfg.OpenAPISpec, err)
		}
	}
	out := agent.NewBatchWriter(stderr, 0)
	defer out.Close()
	log := agent.NewLogger(out, cfg.LogLevel, cfg.LogFormat)
	log.Info().Str("event", "starting").Str("version", version).
		Interface("settings", config.Overrides(lookup)).Send()
	return agent.New(cfg, log, agent.WithLogWriter(out)).Run(ctx)
}

func devIssue(args []string, lookup func(string) (string, bool), stdout io.Writer) error {
	fs := flag.NewFlagSet("dev issue", flag.ContinueOnError)
	idFlag := fs.String("id", "", "SPIFFE ID of the client, in the dev CA's trust domain")
	out := fs.String("out", "", "directory to write svid.pem, svid_key.pem and bundle.pem into")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime of the SVID")
	dns := fs.String("dns", "", "comma-separated DNS names to add as SANs (for servers checked by hostname)")
	ips := fs.String("ip", "", "comma-separated IP addresses to add as SANs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *idFlag == "" || *out == "" {
		return errors.New("dev issue: --id and --out are required")
	}
	id, err := spiffeid.FromString(*idFlag)
	if err != nil {
		return fmt.Errorf("dev issue: --id %q: %w", *idFlag, err)
	}
	dev, err := config.DevFromEnv(lookup)
	if err != nil {
		return err
	}
	ca, err := spiffe.LoadOrCreateDevCA(dev.DevDir, dev.SPIFFEID.TrustDomain())
	if err != nil {
		return err
	}
	opts := spiffe.IssueOptions{TTL: *ttl, DNSNames: splitList(*dns)}
	for _, s := range splitList(*ips) {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("dev issue: --ip %q: not an IP address", s)
		}
		opts.IPs = append(opts.IPs, ip)
	}
	svid, err := ca.Issue(id, opts)
	if err != nil {
		return err
	}
	if err := ca.WriteSVID(*out, svid); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "issued %s into %s (svid.pem, svid_key.pem, bundle.pem)\n", id, *out)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func issueTo(ca *spiffe.DevCA, id spiffeid.ID, ttl time.Duration, dir string) error {
	svid, err := ca.Issue(id, spiffe.IssueOptions{TTL: ttl})
	if err != nil {
		return err
	}
	return ca.WriteSVID(dir, svid)
}
