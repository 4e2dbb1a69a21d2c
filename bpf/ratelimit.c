//go:build ignore

/* SPDX-License-Identifier: (MIT OR GPL-2.0-only) */

/*
 * warden's in-kernel rate limiter and blocklist.
 *
 * One decision, two hooks: warden_xdp (XDP, native or generic) and
 * warden_tc (TCX ingress, or any cls_bpf ingress hook) parse the same way
 * and call the same decide(). Only TCP segments whose destination port is
 * in the configured set are considered; every other packet is passed
 * untouched and uncounted. For a considered packet, in order:
 *
 *   1. its source address is in the blocklist and not expired: drop (blocked);
 *   2. it is a SYN without ACK and its source is over its new-connection
 *      rate: drop (conn_rate);
 *   3. its connection (saddr, daddr, sport, dport) is over its packet rate:
 *      drop (packet_rate);
 *   4. pass.
 *
 * Rate limiting is GCRA (the generic cell rate algorithm, "virtual
 * scheduling"), which admits exactly what a token bucket of the same rate
 * and size admits, but keeps one 64-bit word per bucket: the theoretical
 * arrival time (TAT) of the next conforming packet, in bpf_ktime_get_ns()
 * time. A packet at time now is admitted iff
 *
 *     max(TAT, now) + interval - now <= burst * interval
 *
 * and then TAT becomes max(TAT, now) + interval; a refused packet leaves
 * TAT alone. One word means the update can be a single compare-and-swap:
 * exact under concurrency, with no lock (bpf_spin_lock is not allowed in
 * LRU hash values) and no per-CPU approximation (per-CPU buckets would let
 * a source that is spread over N CPUs by RSS have N times its rate).
 *
 * Counters are per-CPU (no shared cache line on the packet path; the loader
 * sums them). Per-source drop counts are shared words updated with an
 * atomic add, since one source's packets arrive on several CPUs.
 *
 * Needs BPF_ATOMIC compare-and-exchange (-mcpu=v3, Linux 5.12).
 */

#include "bpf_base.h"

char __license[] SEC("license") = "Dual MIT/GPL";

/* Extension headers skipped before an IPv6 packet counts as unparsed. */
#define MAX_IPV6_EXT_HDRS 6
/*
 * Compare-and-swap attempts on one bucket. Each failure means another CPU
 * moved TAT (it took a token) in between, so running out means the bucket
 * is being drained faster than eight packets per CAS window; the packet is
 * then refused as over the rate.
 */
#define GCRA_CAS_ATTEMPTS 8
/* What warden_tc pulls into the linear area when the headers are not. */
#define MAX_HDR_LEN 256

/*
 * config: an array with one entry (key 0) holding struct limits. Written
 * by the loader (Load, SetLimits), read by the programs for every packet.
 * An interval of 0 means that limit is off. A limit is burst * interval:
 * how far ahead of now a bucket's TAT may run.
 */
struct limits {
	__u64 conn_interval_ns; /* ns between SYNs at the steady rate, per source */
	__u64 conn_limit_ns;
	__u64 pkt_interval_ns; /* ns between packets at the steady rate, per connection */
	__u64 pkt_limit_ns;
	__u64 ports[1024]; /* bitmap: bit p set = TCP destination port p is limited */
	/*
	 * ANDed with an IPv6 source (not an IPv4-mapped one) before the
	 * blocklist lookup, so that one entry blocks a whole prefix (a /64 by
	 * default: one host owns it). Network byte order; all ones: per
	 * address. The loader writes the blocklist's IPv6 keys masked alike.
	 */
	__u32 v6_block_mask[4];
};

/*
 * What happened to packets to a limited port: one u64 per outcome, in the
 * order of enum counter, which indexes them.
 */
struct counts {
	__u64 passed;
	__u64 dropped_blocked;
	__u64 dropped_conn_rate;
	__u64 dropped_packet_rate;
	/*
	 * IPv4 or IPv6 packets whose TCP header could not be found, so whether
	 * they go to a limited port is unknown: non-first fragments, IPv6
	 * chains of more than MAX_IPV6_EXT_HDRS extension headers or with ESP,
	 * Mobility, HIP or Shim6 headers, truncated headers. Always passed.
	 */
	__u64 unparsed;
};

enum counter {
	COUNTER_PASSED,
	COUNTER_DROPPED_BLOCKED,
	COUNTER_DROPPED_CONN_RATE,
	COUNTER_DROPPED_PACKET_RATE,
	COUNTER_UNPARSED,
	COUNTER_MAX,
};

_Static_assert(sizeof(struct counts) == COUNTER_MAX * sizeof(__u64), "enum counter indexes struct counts");

/*
 * A source address: IPv6, or IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so
 * that both families share the maps. Network byte order.
 */
struct source_key {
	__u8 addr[16] __attribute__((aligned(4)));
};

/* A source's state in sources. */
struct source_state {
	__u64 tat_ns;  /* GCRA TAT of the source's SYNs; written by the programs */
	__u64 dropped; /* packets from this source dropped, for any reason */
};

/* A connection: ports in network byte order; the protocol is always TCP. */
struct conn_key {
	__u8 saddr[16] __attribute__((aligned(4)));
	__u8 daddr[16] __attribute__((aligned(4)));
	__be16 sport;
	__be16 dport;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct limits);
} config SEC(".maps");

/*
 * counters: per-CPU array with one entry (key 0), struct counts. Written
 * by the programs; the loader reads it and sums over CPUs. One entry with
 * every counter, rather than one entry per counter, so that the loader
 * reads them all in one system call.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counts);
} counters SEC(".maps");

/*
 * sources: LRU hash, source_key -> source_state. Created and written by the
 * programs (on a SYN when the connection rate is limited, and on any drop);
 * the loader only reads it (TopSources). max_entries is set at load.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct source_key);
	__type(value, struct source_state);
} sources SEC(".maps");

/*
 * conns: LRU hash, conn_key -> u64 GCRA TAT of the connection's packets.
 * Created and written by the programs when the packet rate is limited; a
 * reused 5-tuple finds a TAT in the past, which is a full bucket.
 * max_entries is set at load.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct conn_key);
	__type(value, __u64);
} conns SEC(".maps");

/*
 * blocklist: hash (not LRU: a flood of new sources must not evict a block),
 * source_key -> u64 expiry in bpf_ktime_get_ns() time (CLOCK_MONOTONIC).
 * IPv6 keys are prefixes: the address masked with limits.v6_block_mask.
 * Written only by the loader (Block, Unblock, and removal of expired
 * entries); the programs treat an expired entry as absent and never delete
 * it, so they cannot race a renewal. max_entries is set at load.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct source_key);
	__type(value, __u64);
} blocklist SEC(".maps");

enum parse {
	PARSE_SKIP,     /* not TCP to a limited port: pass, uncounted */
	PARSE_TCP,      /* TCP to a limited port: key and syn are set */
	PARSE_UNPARSED, /* IP, but the TCP header could not be found */
	PARSE_SHORT,    /* headers go past the end of the data */
};

static __always_inline int port_limited(const struct limits *cfg, __u16 port)
{
	return (cfg->ports[port >> 6] >> (port & 63)) & 1;
}

static __always_inline enum parse parse_tcp(void *cur, void *end, const struct limits *cfg,
					    struct conn_key *key, int *syn)
{
	struct tcphdr *tcp = cur;

	if ((void *)(tcp + 1) > end)
		return PARSE_SHORT;
	if (!port_limited(cfg, bpf_ntohs(tcp->dest)))
		return PARSE_SKIP;
	key->sport = tcp->source;
	key->dport = tcp->dest;
	*syn = (tcp->flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	return PARSE_TCP;
}

static __always_inline enum parse parse_ipv4(void *cur, void *end, const struct limits *cfg,
					     struct conn_key *key, int *syn)
{
	struct iphdr *ip = cur;
	__u32 ihl;

	if ((void *)(ip + 1) > end)
		return PARSE_SHORT;
	if (ip->protocol != IPPROTO_TCP)
		return PARSE_SKIP;
	/* Only the first fragment has the TCP header. */
	if (ip->frag_off & bpf_htons(IP_OFFSET_MASK))
		return PARSE_UNPARSED;
	ihl = ip->ihl_version & 0x0F;
	if (ihl < 5)
		return PARSE_UNPARSED;

	key->saddr[10] = 0xff;
	key->saddr[11] = 0xff;
	__builtin_memcpy(&key->saddr[12], &ip->saddr, 4);
	key->daddr[10] = 0xff;
	key->daddr[11] = 0xff;
	__builtin_memcpy(&key->daddr[12], &ip->daddr, 4);
	return parse_tcp(cur + ihl * 4, end, cfg, key, syn);
}

static __always_inline enum parse parse_ipv6(void *cur, void *end, const struct limits *cfg,
					     struct conn_key *key, int *syn)
{
	struct ipv6hdr *ip6 = cur;
	__u8 next;

	if ((void *)(ip6 + 1) > end)
		return PARSE_SHORT;
	__builtin_memcpy(key->saddr, ip6->saddr, 16);
	__builtin_memcpy(key->daddr, ip6->daddr, 16);
	next = ip6->nexthdr;
	cur = ip6 + 1;

#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT_HDRS; i++) {
		switch (next) {
		case IPPROTO_TCP:
			return parse_tcp(cur, end, cfg, key, syn);
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS: {
			struct ipv6_opt_hdr *opt = cur;

			if ((void *)(opt + 1) > end)
				return PARSE_SHORT;
			next = opt->nexthdr;
			cur += (opt->hdrlen + 1) * 8;
			break;
		}
		case IPPROTO_AH: {
			struct ipv6_opt_hdr *ah = cur;

			if ((void *)(ah + 1) > end)
				return PARSE_SHORT;
			next = ah->nexthdr;
			cur += (ah->hdrlen + 2) * 4;
			break;
		}
		case IPPROTO_FRAGMENT: {
			struct frag_hdr *frag = cur;

			if ((void *)(frag + 1) > end)
				return PARSE_SHORT;
			if (frag->frag_off & bpf_htons(IP6_OFFSET_MASK))
				return PARSE_UNPARSED;
			next = frag->nexthdr;
			cur = frag + 1;
			break;
		}
		case IPPROTO_ESP:
		case IPPROTO_MH:
		case IPPROTO_HIP:
		case IPPROTO_SHIM6:
			return PARSE_UNPARSED;
		default:
			/* Not TCP: UDP, ICMPv6, no next header, ... */
			return PARSE_SKIP;
		}
	}
	return next == IPPROTO_TCP ? parse_tcp(cur, end, cfg, key, syn) : PARSE_UNPARSED;
}

/* Parses an Ethernet frame with at most one VLAN tag. */
static __always_inline enum parse parse(void *data, void *end, const struct limits *cfg,
					struct conn_key *key, int *syn)
{
	struct ethhdr *eth = data;
	void *cur = eth + 1;
	__be16 proto;

	if (cur > end)
		return PARSE_SKIP;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vlan = cur;

		if ((void *)(vlan + 1) > end)
			return PARSE_SKIP;
		proto = vlan->encapsulated_proto;
		cur = vlan + 1;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(cur, end, cfg, key, syn);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(cur, end, cfg, key, syn);
	return PARSE_SKIP;
}

/* Takes one token from the bucket whose TAT is *tat; 0 if there is none. */
static __always_inline int gcra_take(__u64 *tat, __u64 now, __u64 interval, __u64 limit)
{
#pragma unroll
	for (int i = 0; i < GCRA_CAS_ATTEMPTS; i++) {
		__u64 old = *(volatile __u64 *)tat;
		__u64 next = (old > now ? old : now) + interval;

		if (next - now > limit)
			return 0;
		if (__sync_val_compare_and_swap(tat, old, next) == old)
			return 1;
	}
	return 0;
}

/* The source's state, created if absent; NULL only if the map refuses. */
static __always_inline struct source_state *source_state(const struct source_key *src)
{
	struct source_state *s = bpf_map_lookup_elem(&sources, src);

	if (s)
		return s;
	struct source_state fresh = {};
	/* BPF_NOEXIST: if another CPU created it meanwhile, keep that one. */
	bpf_map_update_elem(&sources, src, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&sources, src);
}

static __always_inline void source_dropped(const struct source_key *src, struct source_state *s)
{
	if (!s)
		s = source_state(src);
	if (s)
		__sync_fetch_and_add(&s->dropped, 1);
}

/*
 * The blocklist's key for src: src itself when IPv4 (IPv4-mapped), else
 * src masked into blk with the configured IPv6 prefix.
 */
static __always_inline const struct source_key *blocklist_key(const struct limits *cfg, const struct source_key *src,
							      struct source_key *blk)
{
	const __u32 *a = (const __u32 *)src->addr;
	__u32 *b = (__u32 *)blk->addr;

	if (a[0] == 0 && a[1] == 0 && a[2] == __builtin_bswap32(0xffff)) /* ::ffff:0:0/96, little-endian host */
		return src;
	b[0] = a[0] & cfg->v6_block_mask[0];
	b[1] = a[1] & cfg->v6_block_mask[1];
	b[2] = a[2] & cfg->v6_block_mask[2];
	b[3] = a[3] & cfg->v6_block_mask[3];
	return blk;
}

/* The counter for a TCP packet to a limited port, which is the verdict. */
static __always_inline enum counter decide(const struct limits *cfg, struct conn_key *key, int syn)
{
	struct source_key src, blk;
	__u64 now = 0;
	__u64 *expires;

	__builtin_memcpy(src.addr, key->saddr, 16);

	/* The clock is read only when needed: it is a good part of the cost. */
	expires = bpf_map_lookup_elem(&blocklist, blocklist_key(cfg, &src, &blk));
	if (expires) {
		now = bpf_ktime_get_ns();
		if (*expires > now) {
			source_dropped(&src, 0);
			return COUNTER_DROPPED_BLOCKED;
		}
	}
	if (!(syn && cfg->conn_interval_ns) && !cfg->pkt_interval_ns)
		return COUNTER_PASSED;
	if (!now)
		now = bpf_ktime_get_ns();

	if (syn && cfg->conn_interval_ns) {
		struct source_state *s = source_state(&src);

		/* If the LRU refuses an entry (it should not), fail open. */
		if (s && !gcra_take(&s->tat_ns, now, cfg->conn_interval_ns, cfg->conn_limit_ns)) {
			source_dropped(&src, s);
			return COUNTER_DROPPED_CONN_RATE;
		}
	}

	if (cfg->pkt_interval_ns) {
		__u64 *tat = bpf_map_lookup_elem(&conns, key);

		if (!tat) {
			__u64 fresh = 0;

			bpf_map_update_elem(&conns, key, &fresh, BPF_NOEXIST);
			tat = bpf_map_lookup_elem(&conns, key);
		}
		if (tat && !gcra_take(tat, now, cfg->pkt_interval_ns, cfg->pkt_limit_ns)) {
			source_dropped(&src, 0);
			return COUNTER_DROPPED_PACKET_RATE;
		}
	}
	return COUNTER_PASSED;
}

static __always_inline void count(enum counter idx)
{
	__u32 zero = 0;
	__u64 *c = bpf_map_lookup_elem(&counters, &zero);

	/*
	 * Per-CPU, and the programs run with bottom halves disabled, so one CPU
	 * runs one of them at a time: a plain increment loses nothing.
	 */
	if (c && idx < COUNTER_MAX)
		c[idx] += 1;
}

enum verdict {
	VERDICT_PASS,
	VERDICT_DROP,
	VERDICT_SHORT, /* the headers are not all in [data, end) */
};

static __always_inline enum verdict handle(void *data, void *end, int final)
{
	__u32 zero = 0;
	struct limits *cfg = bpf_map_lookup_elem(&config, &zero);
	struct conn_key key = {};
	int syn = 0;
	enum counter c;

	if (!cfg)
		return VERDICT_PASS;
	switch (parse(data, end, cfg, &key, &syn)) {
	case PARSE_TCP:
		break;
	case PARSE_SHORT:
		if (!final)
			return VERDICT_SHORT;
		/* fallthrough */
	case PARSE_UNPARSED:
		count(COUNTER_UNPARSED);
		return VERDICT_PASS;
	default:
		return VERDICT_PASS;
	}
	c = decide(cfg, &key, syn);
	count(c);
	return c == COUNTER_PASSED ? VERDICT_PASS : VERDICT_DROP;
}

/*
 * XDP sees the frame before the stack allocates anything for it. Without
 * the frags flag the program only gets frames whose data is in one buffer,
 * so the headers are always there: a short frame is truncated for real.
 */
SEC("xdp")
int warden_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	return handle(data, end, 1) == VERDICT_DROP ? XDP_DROP : XDP_PASS;
}

/*
 * For TC the headers may lie past the skb's linear area; they are pulled
 * in only then (pulling may copy the skb). A passed packet gets
 * TC_ACT_UNSPEC, which TCX calls TCX_NEXT: the programs attached after this
 * one still decide, as they would without warden.
 */
SEC("tc")
int warden_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	enum verdict v = handle(data, end, 0);

	if (v == VERDICT_SHORT) {
		__u32 len = skb->len < MAX_HDR_LEN ? skb->len : MAX_HDR_LEN;

		if (end - data < len) {
			/* Success or not, the call invalidates data and end. */
			bpf_skb_pull_data(skb, len);
			data = (void *)(long)skb->data;
			end = (void *)(long)skb->data_end;
		}
		v = handle(data, end, 1);
	}
	return v == VERDICT_DROP ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}
