//go:build ignore

/* SPDX-License-Identifier: (MIT OR GPL-2.0-only) */

/*
 * warden's fast path between the proxy and the app on the same host.
 *
 * Two programs share one sockhash:
 *
 *   warden_sockops (sock_ops, attached to a cgroup v2): when a TCP
 *   connection of a process in the cgroup is established, inserts the
 *   socket into socks if the connection is on loopback (both addresses)
 *   and goes to one of the app's ports: the connecting side (warden's
 *   upstream connection, ACTIVE_ESTABLISHED) when the remote port is an
 *   app port, the accepting side (the app's, PASSIVE_ESTABLISHED) when
 *   the local port is. Nothing else is inserted: not warden's inbound
 *   mTLS connections, not the app's other connections.
 *
 *   warden_sk_msg (sk_msg, attached to socks): runs on every send of a
 *   socket in socks and redirects the message to the receive queue of the
 *   peer socket (the same connection's other end, looked up by the
 *   reversed key) with bpf_msg_redirect_hash(..., BPF_F_INGRESS), so the
 *   bytes skip the loopback TCP stack (no skb, no netfilter, no tcpdump on
 *   lo). When the peer is not in socks (it was established before the
 *   program was attached, or in another cgroup, or the insert failed) the
 *   message goes through TCP as usual and counts as a fallback.
 *
 * A socket leaves socks by itself when it closes. Keys include the network
 * namespace cookie, so that pods sharing a node (and their 127.0.0.1) never
 * see each other's sockets.
 *
 * Needs Linux 5.15 (bpf_get_netns_cookie in sock_ops and sk_msg).
 */

#include "bpf_base.h"

char __license[] SEC("license") = "Dual MIT/GPL";

/*
 * app_ports: bitmap of the app's TCP ports (bit p set = port p), set by
 * the loader before load (a read-only global: no map lookup per
 * connection).
 */
volatile const __u64 app_ports[1024];

/*
 * One end of a connection as seen from its own socket. Addresses are
 * IPv6, or IPv4 as IPv4-mapped IPv6, in network byte order: a warden
 * socket of family AF_INET and an app socket of family AF_INET6 (an app
 * listening on [::]) then name the connection alike. Ports in host order.
 */
struct sock_key {
	__u64 netns; /* bpf_get_netns_cookie */
	__u32 local_ip[4];
	__u32 remote_ip[4];
	__u32 local_port;
	__u32 remote_port;
};

/*
 * socks: sockhash, sock_key -> socket. Written by warden_sockops (insert)
 * and the kernel (removal at close); read by warden_sk_msg (the peer
 * lookup) and by the loader (the count of sockets). max_entries is set at
 * load.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct sock_key);
	__type(value, __u64);
} socks SEC(".maps");

/* What the programs did, since load: one u64 per event. */
struct fastpath_counts {
	__u64 msgs_redirected;  /* sends redirected to the peer socket */
	__u64 bytes_redirected; /* their bytes */
	__u64 fallbacks;        /* sends of a socket in socks whose peer is not: passed to TCP */
	__u64 socks_added;      /* sockets inserted into socks */
	__u64 add_failures;     /* sockets that matched but could not be inserted (map full) */
};

/*
 * counters: per-CPU array with one entry (key 0), struct fastpath_counts.
 * Written by both programs; the loader sums over CPUs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fastpath_counts);
} counters SEC(".maps");

#define V4_MAPPED_PREFIX 0xffff0000 /* ::ffff:0:0/96's third word, bpf_htonl(0x0000ffff) read little-endian */
#define barrier() asm volatile("" ::: "memory")
#define V6_LOOPBACK_WORD 0x01000000 /* ::1's fourth word, bpf_htonl(1) read little-endian */

static __always_inline int is_app_port(__u32 port)
{
	return (app_ports[(port >> 6) & 1023] >> (port & 63)) & 1;
}

/* 127.0.0.0/8, ::ffff:127.0.0.0/104 or ::1. */
static __always_inline int is_loopback(const __u32 ip[4])
{
	if (ip[0] != 0 || ip[1] != 0)
		return 0;
	if (ip[2] == V4_MAPPED_PREFIX)
		return (ip[3] & 0xff) == 127;
	return ip[2] == 0 && ip[3] == V6_LOOPBACK_WORD;
}

/*
 * The context's addresses in the shape of sock_key. Every field is read,
 * whatever the family, with 32-bit loads at fixed offsets: clang would
 * otherwise narrow some loads or share one pointer between the branches,
 * and the verifier allows neither on a context.
 */
#define FILL_KEY(ctx, key)                                                  \
	({                                                                  \
		__u32 family = (ctx)->family;                               \
		__u32 l4 = (ctx)->local_ip4, r4 = (ctx)->remote_ip4;        \
		__u32 l6_0 = (ctx)->local_ip6[0], l6_1 = (ctx)->local_ip6[1]; \
		__u32 l6_2 = (ctx)->local_ip6[2], l6_3 = (ctx)->local_ip6[3]; \
		__u32 r6_0 = (ctx)->remote_ip6[0], r6_1 = (ctx)->remote_ip6[1]; \
		__u32 r6_2 = (ctx)->remote_ip6[2], r6_3 = (ctx)->remote_ip6[3]; \
		__u32 lport = (ctx)->local_port, rport = (ctx)->remote_port; \
		barrier();                                                  \
		if (family == AF_INET) {                                    \
			(key)->local_ip[2] = V4_MAPPED_PREFIX;              \
			(key)->local_ip[3] = l4;                            \
			(key)->remote_ip[2] = V4_MAPPED_PREFIX;             \
			(key)->remote_ip[3] = r4;                           \
		} else {                                                    \
			(key)->local_ip[0] = l6_0;                          \
			(key)->local_ip[1] = l6_1;                          \
			(key)->local_ip[2] = l6_2;                          \
			(key)->local_ip[3] = l6_3;                          \
			(key)->remote_ip[0] = r6_0;                         \
			(key)->remote_ip[1] = r6_1;                         \
			(key)->remote_ip[2] = r6_2;                         \
			(key)->remote_ip[3] = r6_3;                         \
		}                                                           \
		(key)->local_port = lport;                                  \
		(key)->remote_port = bpf_ntohs((__u16)(rport >> 16));       \
		family == AF_INET || family == AF_INET6;                    \
	})

static __always_inline struct fastpath_counts *counts(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&counters, &zero);
}

SEC("sockops")
int warden_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;

	struct sock_key key = {};
	if (!FILL_KEY(skops, &key))
		return 1;
	__u32 port = op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB ? key.remote_port : key.local_port;
	if (!is_app_port(port) || !is_loopback(key.local_ip) || !is_loopback(key.remote_ip))
		return 1;
	key.netns = bpf_get_netns_cookie(skops);

	long err = bpf_sock_hash_update(skops, &socks, &key, BPF_ANY);
	struct fastpath_counts *c = counts();
	if (c) {
		if (err == 0)
			c->socks_added++;
		else
			c->add_failures++;
	}
	return 1;
}

SEC("sk_msg")
int warden_sk_msg(struct sk_msg_md *msg)
{
	struct sock_key own = {};
	if (!FILL_KEY(msg, &own))
		return SK_PASS;

	/* The peer socket's key: the same connection seen from the other end. */
	struct sock_key peer = {
		.netns = bpf_get_netns_cookie(msg),
		.local_port = own.remote_port,
		.remote_port = own.local_port,
	};
	for (int i = 0; i < 4; i++) {
		peer.local_ip[i] = own.remote_ip[i];
		peer.remote_ip[i] = own.local_ip[i];
	}

	__u32 size = msg->size;
	long verdict = bpf_msg_redirect_hash(msg, &socks, &peer, BPF_F_INGRESS);
	struct fastpath_counts *c = counts();
	if (verdict == SK_PASS) {
		if (c) {
			c->msgs_redirected++;
			c->bytes_redirected += size;
		}
		return SK_PASS;
	}
	/* No peer: no redirect was set up, and SK_PASS sends through TCP. */
	if (c)
		c->fallbacks++;
	return SK_PASS;
}
