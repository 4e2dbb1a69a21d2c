// Package netinit builds and installs the netfilter rules that send a pod's
// inbound TCP connections to warden: what `warden init` runs in the pod's
// init container, before the app and warden start. It owns two chains of
// the nat table, for IPv4 and IPv6 alike, and touches nothing else but the
// jumps into them; it never reads the environment (agent/config does) and
// never changes the rules of other tools.
//
// The rules, per family (see testdata/*.golden for every case):
//
//   - PREROUTING jumps to WARDEN_INBOUND for TCP: connections that arrive
//     from outside the pod. WARDEN_INBOUND returns for warden's inbound and
//     admin ports, then REDIRECTs the app's ports (or, with `*`, every other
//     port) to warden's inbound port.
//   - OUTPUT jumps to WARDEN_OUTPUT for TCP: connections made inside the
//     pod. Those leaving the pod (not through lo), those to loopback, and
//     those of warden's own user return; what is left, connections from
//     another container of the pod to the pod's own address, goes through
//     WARDEN_INBOUND like traffic from outside. So "the app's port on the
//     pod's address is warden" holds from anywhere but warden itself.
//
// Threat model: what the rules leave alone is a way around warden, and
// these are left alone on purpose:
//
//   - Loopback. Containers of a pod share one network namespace, so any of
//     them reaches the app on 127.0.0.1/::1 directly; warden itself reaches
//     the app there, and redirecting it would loop. The pod is one trust
//     unit: a container that must not reach the app belongs in another pod.
//   - Warden's user (WARDEN_PROXY_UID), for pod-local connections only; a
//     process of the app running as that user escapes nothing more than
//     loopback already gives it. Connections from outside the pod are
//     redirected whatever their sender, as no uid is known for them.
//   - Ports not listed in WARDEN_REDIRECT_PORTS, and the admin port always.
//     `*` closes the first gap; the admin server listens on loopback by
//     default and serves only health and state.
//   - Anything but TCP (UDP, SCTP, ICMP).
//   - A container with NET_ADMIN in the pod can delete the rules.
//
// Idempotence: Apply reads the nat table (iptables-save), then feeds
// iptables-restore --noflush one transaction that declares warden's chains
// (which empties them), deletes the jumps into them that an earlier run
// left, and inserts the jumps again first in PREROUTING and OUTPUT, ahead
// of rules of other tools that might accept a connection before warden's
// redirect sees it. Running it twice, or with new settings, leaves exactly
// one rule set: the newest.
package netinit
