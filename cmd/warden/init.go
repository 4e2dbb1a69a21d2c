package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/warden-sidecar/warden/agent"
	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/deploy/netinit"
)

// runInit installs the rules that redirect the app's inbound traffic to
// warden (the pod's init container), or with --dry-run prints them.
func runInit(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	const usage = "usage: warden init [--dry-run]"
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors go out in one line, with the usage
	dryRun := fs.Bool("dry-run", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, usage+"\n  --dry-run  print the rules (iptables-restore input, IPv4 and IPv6) instead of installing them; needs neither root nor iptables")
			return nil
		}
		return fmt.Errorf("init: %w; %s", err, usage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("init: unexpected argument %q; %s", fs.Arg(0), usage)
	}
	c, err := config.InitFromEnv(lookup)
	if err != nil {
		return err
	}
	if *dryRun {
		return netinit.DryRun(stdout, c)
	}
	log := agent.NewLogger(stderr, "info", "json")
	results, err := netinit.Apply(ctx, c)
	if err != nil {
		return err
	}
	ports := "*"
	if !c.AllPorts {
		ps := make([]string, len(c.RedirectPorts))
		for i, p := range c.RedirectPorts {
			ps[i] = strconv.Itoa(p)
		}
		ports = strings.Join(ps, ",")
	}
	for _, r := range results {
		if r.Skipped != "" {
			log.Warn().Str("event", "redirect_skipped").Str("family", r.Family).Str("reason", r.Skipped).Send()
			continue
		}
		log.Info().Str("event", "redirect_installed").Str("family", r.Family).Str("ports", ports).
			Int("inbound_port", c.InboundPort).Int("admin_port", c.AdminPort).Int("proxy_uid", c.ProxyUID).
			Int("replaced_jumps", r.Replaced).Send()
	}
	return nil
}
