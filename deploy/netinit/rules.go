package netinit

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/warden-sidecar/warden/agent/config"
)

// The chains warden owns in the nat table. Their names are part of the
// interface: operators see them in iptables-save, and a later run of
// `warden init` finds the jumps of an earlier one by them.
const (
	ChainInbound = "WARDEN_INBOUND"
	ChainOutput  = "WARDEN_OUTPUT"
)

// Family is one IP version: its tools and its loopback range.
type Family struct {
	Name     string // "IPv4" or "IPv6"
	Save     string // iptables-save or ip6tables-save
	Restore  string // iptables-restore or ip6tables-restore
	Loopback string // never redirected: warden reaches the app there
}

var (
	IPv4 = Family{Name: "IPv4", Save: "iptables-save", Restore: "iptables-restore", Loopback: "127.0.0.0/8"}
	IPv6 = Family{Name: "IPv6", Save: "ip6tables-save", Restore: "ip6tables-restore", Loopback: "::1/128"}
)

// Families are the families `warden init` installs rules for, in order.
var Families = []Family{IPv4, IPv6}

// restoreArgs keeps every table and chain of other tools: without
// --noflush, iptables-restore would empty the whole nat table.
var restoreArgs = []string{"--noflush"}

// Rules returns the iptables-restore input for f: the rules Apply installs
// in a namespace that has none of warden's yet. The rules are written as
// iptables-save prints them (-m tcp included), so that the two compare.
func Rules(c config.Init, f Family) string {
	return render(c, f, nil)
}

// render writes the restore input, with the lines that delete an earlier
// run's jumps (stale, in -D form) between the chain declarations and the
// new jumps: all in one transaction.
func render(c config.Init, f Family, stale []string) string {
	var b strings.Builder
	line := func(s ...string) {
		b.WriteString(strings.Join(s, " "))
		b.WriteByte('\n')
	}
	inbound, admin := strconv.Itoa(c.InboundPort), strconv.Itoa(c.AdminPort)
	line("*nat")
	// With --noflush, declaring a chain creates it or empties it.
	line(":" + ChainInbound + " - [0:0]")
	line(":" + ChainOutput + " - [0:0]")
	for _, s := range stale {
		line(s)
	}
	line("-I PREROUTING 1 -p tcp -j", ChainInbound)
	line("-I OUTPUT 1 -p tcp -j", ChainOutput)

	line("-A", ChainInbound, "-p tcp -m tcp --dport", inbound, "-j RETURN")
	line("-A", ChainInbound, "-p tcp -m tcp --dport", admin, "-j RETURN")
	if c.AllPorts {
		line("-A", ChainInbound, "-p tcp -j REDIRECT --to-ports", inbound)
	}
	for _, p := range c.RedirectPorts {
		line("-A", ChainInbound, "-p tcp -m tcp --dport", strconv.Itoa(p), "-j REDIRECT --to-ports", inbound)
	}

	line("-A", ChainOutput, "! -o lo -j RETURN")
	line("-A", ChainOutput, "-d", f.Loopback, "-j RETURN")
	line("-A", ChainOutput, "-m owner --uid-owner", strconv.Itoa(c.ProxyUID), "-j RETURN")
	line("-A", ChainOutput, "-j", ChainInbound)
	line("COMMIT")
	return b.String()
}

// DryRun writes what Apply would feed iptables-restore and
// ip6tables-restore, each under a comment naming the command. It needs
// neither root nor iptables.
func DryRun(w io.Writer, c config.Init) error {
	ports := "every TCP port but " + strconv.Itoa(c.InboundPort) + " and " + strconv.Itoa(c.AdminPort)
	if !c.AllPorts {
		ps := make([]string, len(c.RedirectPorts))
		for i, p := range c.RedirectPorts {
			ps[i] = strconv.Itoa(p)
		}
		ports = "TCP port " + strings.Join(ps, ",")
		if len(ps) > 1 {
			ports = "TCP ports " + strings.Join(ps, ",")
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# warden init: redirect %s to warden's inbound port %d (from outside the pod, and from inside it to the pod's own address)\n",
		ports, c.InboundPort)
	fmt.Fprintf(&b, "# never redirected: ports %d and %d, loopback, connections uid %d makes inside the pod\n",
		c.InboundPort, c.AdminPort, c.ProxyUID)
	fmt.Fprintf(&b, "# where warden's jumps exist already, -D lines for them come before the -I lines\n")
	for _, f := range Families {
		fmt.Fprintf(&b, "\n# %s: %s %s\n", f.Name, f.Restore, strings.Join(restoreArgs, " "))
		b.WriteString(Rules(c, f))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
