package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/warden-sidecar/warden/agent"
	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/spiffe"
)

// quickstart is `make run`: the demo app, warden on the development
// identity, one client SVID that is allowed and one that is not, and the curl
// commands that show both. Any WARDEN_* variable the user set still wins.
func quickstart(ctx context.Context, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	base, err := config.FromEnv(withDefaults(lookup, map[string]string{"WARDEN_IDENTITY": config.IdentityDev}))
	if err != nil {
		return err
	}
	td := base.SPIFFEID.TrustDomain()
	client := spiffeid.RequireFromPath(td, "/ns/default/sa/client")
	intruder := spiffeid.RequireFromPath(td, "/ns/other/sa/intruder")
	env := withDefaults(lookup, map[string]string{
		"WARDEN_IDENTITY":      config.IdentityDev,
		"WARDEN_LOG_FORMAT":    "console",
		"WARDEN_ALLOWED_PEERS": client.String(),
		// A demo on a laptop: reachable from this machine only.
		"WARDEN_INBOUND_ADDR": "127.0.0.1:15443",
	})
	cfg, err := config.FromEnv(env)
	if err != nil {
		return err
	}

	ca, err := spiffe.LoadOrCreateDevCA(cfg.DevDir, td)
	if err != nil {
		return err
	}
	clientDir, intruderDir := filepath.Join(cfg.DevDir, "client"), filepath.Join(cfg.DevDir, "intruder")
	if err := issueTo(ca, client, 24*time.Hour, clientDir); err != nil {
		return err
	}
	if err := issueTo(ca, intruder, 24*time.Hour, intruderDir); err != nil {
		return err
	}

	appLn, err := net.Listen("tcp", cfg.UpstreamAddr)
	if err != nil {
		return fmt.Errorf("quickstart: demo app on WARDEN_UPSTREAM_ADDR=%s: %w (is something else listening there?)", cfg.UpstreamAddr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = serveDemoOn(ctx, appLn, stderr) }()

	out := agent.NewBatchWriter(stderr, 0)
	defer out.Close()
	log := agent.NewLogger(out, cfg.LogLevel, cfg.LogFormat)
	a := agent.New(cfg, log, agent.WithLogWriter(out))
	addrs, err := a.Start(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	printInstructions(stdout, addrs.Inbound, addrs.Admin, cfg.DevDir, clientDir, intruderDir, client, intruder)
	return a.Wait(ctx)
}

func printInstructions(w io.Writer, inbound, adm net.Addr, devDir, clientDir, intruderDir string, client, intruder spiffeid.ID) {
	port := inbound.(*net.TCPAddr).Port
	url := fmt.Sprintf("https://127.0.0.1:%d/hello", port)
	curl := func(dir string) string {
		return fmt.Sprintf("curl --cert %s --key %s --cacert %s %s",
			filepath.Join(dir, "svid.pem"), filepath.Join(dir, "svid_key.pem"), filepath.Join(dir, "bundle.pem"), url)
	}
	fmt.Fprintf(w, `
warden is running on the development identity (trust bundle: %s).

Allowed (%s), answered by the demo app:
  %s

Refused with 403 (%s is not in WARDEN_ALLOWED_PEERS):
  %s

Refused in the TLS handshake (no client certificate):
  curl --cacert %s %s

Admin: curl http://%s/readyz   ·   curl http://%s/identity
Stop with Ctrl-C.

`, filepath.Join(devDir, spiffe.DevCACertFile), client, curl(clientDir), intruder, curl(intruderDir),
		filepath.Join(devDir, spiffe.DevCACertFile), url, adm, adm)
}

// withDefaults returns a lookup that gives the demo's defaults for the
// names the user left unset or blank; every other name reads as it is.
func withDefaults(lookup func(string) (string, bool), defaults map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := lookup(name)
		if d, has := defaults[name]; has && strings.TrimSpace(v) == "" {
			return d, true
		}
		return v, ok
	}
}
