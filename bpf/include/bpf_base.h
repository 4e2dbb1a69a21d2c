/* SPDX-License-Identifier: (MIT OR GPL-2.0-only) */

/*
 * The few kernel ABI definitions warden's BPF programs need, written out
 * here instead of included from the system (linux-libc-dev, libbpf-dev):
 * ratelimit.c is compiled with -nostdinc, so the object bpf2go produces
 * depends on this repository and the compiler only. It is then the same
 * on every machine and architecture that generates it, which is what lets
 * CI compare the committed object byte for byte.
 *
 * Every value below is fixed kernel ABI (uapi): helper numbers, context
 * field offsets, map types, action codes and on-the-wire header layouts.
 */

#pragma once

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef __u16 __be16;
typedef __u32 __be32;

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))

/* BTF-defined maps, as libbpf and cilium/ebpf read them. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

/* Byte order: BPF objects here are little-endian (bpfel) only. */
#define bpf_htons(x) ((__be16)__builtin_bswap16(x))
#define bpf_ntohs(x) ((__u16)__builtin_bswap16(x))

enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_SOCKHASH = 18,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

/* Map creation flag: allocate elements on update instead of up front. */
#define BPF_F_NO_PREALLOC (1U << 0)

enum {
	XDP_ABORTED = 0,
	XDP_DROP = 1,
	XDP_PASS = 2,
};

enum {
	/* For TCX this is TCX_NEXT: let the next program on the hook decide. */
	TC_ACT_UNSPEC = -1,
	TC_ACT_OK = 0,
	TC_ACT_SHOT = 2,
};

/* Contexts: only the leading fields are declared; offsets are uapi. */
struct xdp_md {
	__u32 data;
	__u32 data_end;
};

struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
};

/* sk_msg verdicts, and the redirect flag that queues to the peer's receive side. */
enum {
	SK_DROP = 0,
	SK_PASS = 1,
};
#define BPF_F_INGRESS (1ULL << 0)

/* sock_ops callbacks (enum bpf_sock_ops_op: always invoked, no flag needed). */
enum {
	BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB = 4,
	BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB = 5,
};

#define AF_INET 2
#define AF_INET6 10

/*
 * The socket contexts, leading fields only. Addresses are in network byte
 * order; remote_port holds the network-order port in its upper 16 bits
 * on little-endian machines (the kernel shifts it there), local_port is
 * the port in host order.
 */
struct bpf_sock_ops {
	__u32 op;
	__u32 args[4]; /* a union with reply and replylong[4] in uapi */
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
};

struct sk_msg_md {
	__u64 data;     /* void *, 8-byte aligned in uapi */
	__u64 data_end; /* void * */
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 size; /* bytes in this message */
};

/* Helpers, by their fixed numbers in enum bpf_func_id. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_skb_pull_data)(struct __sk_buff *skb, __u32 len) = (void *)39;
static long (*bpf_sock_hash_update)(struct bpf_sock_ops *skops, void *map, void *key, __u64 flags) = (void *)70;
static long (*bpf_msg_redirect_hash)(struct sk_msg_md *msg, void *map, void *key, __u64 flags) = (void *)71;
static __u64 (*bpf_get_netns_cookie)(void *ctx) = (void *)122;

/* Wire formats. */
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

#define IPPROTO_HOPOPTS 0
#define IPPROTO_TCP 6
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_ESP 50
#define IPPROTO_AH 51
#define IPPROTO_DSTOPTS 60
#define IPPROTO_MH 135 /* Mobility */
#define IPPROTO_HIP 139
#define IPPROTO_SHIM6 140

struct ethhdr {
	__u8 h_dest[6];
	__u8 h_source[6];
	__be16 h_proto;
};

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct iphdr {
	__u8 ihl_version; /* ihl in the low nibble (little-endian bitfield order) */
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off; /* flags (3 bits) and offset in 8-byte units (13 bits) */
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

#define IP_OFFSET_MASK 0x1FFF

struct ipv6hdr {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__be32 saddr[4];
	__be32 daddr[4];
};

/* The generic shape of hop-by-hop, routing and destination options. */
struct ipv6_opt_hdr {
	__u8 nexthdr;
	__u8 hdrlen; /* in 8-byte units, not counting the first 8 */
};

struct frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset in the high 13 bits, M flag in bit 0 */
	__be32 identification;
};

#define IP6_OFFSET_MASK 0xFFF8

struct tcphdr {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff_res;
	__u8 flags;
	__be16 window;
	__u16 check;
	__u16 urg_ptr;
};

#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10
