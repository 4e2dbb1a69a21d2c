// Package bpf drops abusive traffic to warden's inbound port in the kernel,
// before it costs warden a system call: per-source new-connection rates,
// per-connection packet rates and a blocklist, for IPv4 and IPv6. It also
// owns the fast path between warden and the app (sockmap.c, FastPath):
// see "The fast path" below.
//
// # What it owns
//
// The BPF program in ratelimit.c (one decision, two entry points:
// warden_xdp for XDP and warden_tc for TCX ingress), its bpf2go-generated
// Go bindings and object (ratelimit_bpfel.go, ratelimit_bpfel.o, committed,
// so building warden needs no clang), and a Limiter that loads the program
// and its maps, attaches it to one interface, and reads and writes the
// maps. Close detaches and frees everything. Attachments are BPF links held
// by the process and nothing is pinned, so when the process exits, however
// it exits, the kernel detaches the program.
//
// It must not: import agent or read the environment (the agent passes a
// Config), log (errors are returned), decide whom to block or what the
// limits are (the agent does), pin objects to bpffs, or change process-wide
// settings such as RLIMIT_MEMLOCK (kernels from 5.11 charge BPF memory to
// the cgroup instead).
//
// # What the kernel does with a packet
//
// Only TCP to a limited port (Config.Port and Config.Ports) is considered;
// everything else passes untouched and uncounted. For a considered packet:
// a source in the blocklist is dropped; a SYN without ACK over its source's
// new-connection rate is dropped; a packet over its connection's packet rate
// is dropped; the rest passes. Drops at XDP return XDP_DROP; at TCX,
// TC_ACT_SHOT, and a pass is TC_ACT_UNSPEC (TCX_NEXT), so programs attached
// after warden's still see the packet. warden's TCX program goes first in
// the chain.
//
// The parser reads Ethernet with at most one VLAN tag (802.1Q or 802.1ad),
// IPv4 with options, and IPv6 through up to 6 hop-by-hop, routing,
// destination-options, fragment and AH headers. Packets whose TCP header it
// cannot reach pass and are counted in Counters.Unparsed: IPv4 and IPv6
// non-first fragments (they carry no ports), IPv6 chains with more headers
// or with ESP, Mobility, HIP or Shim6 headers, truncated headers. A client
// could thus put its traffic beyond the limits by fragmenting it or adding
// extension headers; the counter makes that visible, and the stack's own
// defences (reassembly limits) still apply.
//
// XDP and TC run before netfilter, so they see a packet's original port: when
// `warden init` redirects the app's ports to warden, list those ports in
// Config.Ports.
//
// # Rate limiting
//
// Each bucket is GCRA (virtual scheduling): one 64-bit theoretical arrival
// time (TAT) in bpf_ktime_get_ns() time. A packet at now is admitted iff
// max(TAT, now) + interval - now <= burst * interval, and then TAT moves to
// max(TAT, now) + interval. This admits exactly what a token bucket of the
// same rate and size admits. A bucket being one word, the kernel updates it
// with a compare-and-swap in a bounded retry loop (8 attempts; each failure
// means another CPU took a token meanwhile): exact when several CPUs carry
// packets of the same source or connection, with no lock (bpf_spin_lock is
// not allowed in LRU maps) and no per-CPU approximation (per-CPU buckets
// would give a source spread over N CPUs N times its rate). The loader
// turns rates into interval and limit with internal/gcra, whose Next is
// the same step in Go, the one the userspace limiter takes:
// TestKernelStepIsGCRA holds the program to it.
//
// Buckets live in LRU maps sized at Load. A forgotten source or connection
// starts again with a full bucket: under a flood of new sources, the limits
// fail open for the sources evicted, never closed for anyone.
//
// # The maps: the contract between the kernel and this package
//
//	map        type           key                    value                         written by
//	config     array, 1       u32 0                  struct limits: GCRA interval  Limiter (Load, SetLimits)
//	                                                 and limit per bucket kind,
//	                                                 bitmap of limited ports,
//	                                                 IPv6 block mask
//	counters   per-CPU array  u32 0                  struct counts: passed,        the program (per CPU;
//	                                                 dropped_{blocked,conn_rate,   Limiter sums)
//	                                                 packet_rate}, unparsed
//	sources    LRU hash       struct source_key:     struct source_state: SYN      the program (atomic
//	                          16-byte address        TAT, packets dropped for any  updates); Limiter reads
//	                                                 reason
//	conns      LRU hash       struct conn_key: src,  u64 packet TAT                the program
//	                          dst, sport, dport
//	blocklist  hash           struct source_key      u64 expiry, CLOCK_MONOTONIC   Limiter only; the
//	                                                 ns (bpf_ktime_get_ns)         program ignores expired
//	                                                                               entries, never deletes
//
// Addresses are 16 bytes in network order, IPv4 as IPv4-mapped IPv6, so both
// families share every map; the Limiter unmaps them in what it returns. The
// blocklist's IPv6 keys are prefixes (Config.IPv6Prefix, a /64 in warden):
// the program masks an IPv6 source with config's mask before the lookup and
// Block masks the key alike, so that one entry blocks the host's whole
// prefix, at one hash lookup a packet (an LPM trie would cost a walk per
// packet for prefixes of one length). The
// blocklist is a plain hash so a flood cannot evict a block; the Limiter
// converts expiries to and from wall-clock time and removes expired entries
// (Blocked, and Block when the map is full). The Go twins of the C structs
// (ratelimitLimits, ratelimitCounts, ...) are generated with -type, so the
// layouts cannot drift.
//
// # Kernels
//
// XDP needs Linux 5.12 (BPF_ATOMIC compare-and-exchange, -mcpu=v3; BPF links
// for XDP are 5.9); TCX needs Linux 6.6. Verified on 6.18, where the
// verifier processes about 5,000 instructions for warden_xdp and 10,000 for
// warden_tc. Loading and attaching need root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON
// (without CAP_PERFMON the verifier refuses variable packet offsets).
// Nothing after that does: the maps and the link are used through file
// descriptors, and Limiter.DropCapabilities gives the three up for good,
// except before Linux 5.19 with kernel.unprivileged_bpf_disabled set, where
// every map access checks CAP_BPF and they are kept.
// The LRU maps are allocated whole at Load: at the default sizes, about 6 MiB
// for sources and 28 MiB for connections, charged to the process's cgroup;
// the blocklist grows with its entries (about 100 bytes each).
//
// # The fast path
//
// sockmap.c holds two programs sharing a sockhash (socks). warden_sockops,
// attached to a cgroup v2 (FastPath.AttachCgroup, a BPF link), inserts a
// socket when a TCP connection is established on loopback (both addresses
// in 127.0.0.0/8, ::ffff:127.0.0.0/104 or ::1) to one of the app's ports
// (FastPathConfig.Ports, a read-only global set before load): the
// connecting end at ACTIVE_ESTABLISHED when the remote port is an app port
// (warden's upstream connections), the accepted end at PASSIVE_ESTABLISHED
// when the local port is (the app's side). warden_sk_msg, attached to the
// sockhash, runs on every send of those sockets and redirects the message
// to the peer socket's receive queue (bpf_msg_redirect_hash with
// BPF_F_INGRESS): no skb, no loopback TCP, no netfilter, invisible to
// tcpdump on lo. A send whose peer is not in the map (established before
// attach, outside the cgroup, or the map was full) passes to TCP and is a
// fallback. Only connections established after attach are candidates.
//
//	map       type           key                        value                    written by
//	socks     sockhash       struct sock_key: netns     the socket               warden_sockops (insert),
//	                         cookie, local and remote                            the kernel (removal at
//	                         address (16 bytes), ports                           close)
//	                         (host order)
//	counters  per-CPU array  u32 0                      struct fastpath_counts:  both programs; FastPath
//	                                                    msgs and bytes           sums
//	                                                    redirected, fallbacks,
//	                                                    socks added, add failures
//
// The netns cookie in the key keeps pods that share a node, and their
// 127.0.0.1, apart. Loading and attaching need CAP_BPF and CAP_NET_ADMIN
// (root in the tests) and Linux 5.15 (bpf_get_netns_cookie in both program
// types); verified on 6.18.
//
// A receiver must read redirected bytes with read(2)/recvmsg(2): splice(2)
// from a socket reads the TCP receive queue only and never sees them (on
// 6.18 a Go io.Copy from one TCPConn to another, which splices, reads EOF
// where the bytes should be; TestFastPathRedirectsAppConnectionsInTheCgroup's
// echo reads and writes for that reason). warden reads its upstream
// connections with read(2); an app that splices from its accepted
// connections must run with the fast path off.
//
// # Regenerating
//
// `go generate ./bpf` (or `make generate`) needs clang-19 and llvm-strip-19
// (Debian: clang-19, llvm-19). ratelimit.c and sockmap.c include only include/bpf_base.h
// and are compiled with -nostdinc, so the objects depend on nothing on the
// machine but the compiler: regenerating gives the same bytes on any machine
// and architecture, which CI checks.
package bpf
