// Package ratelimit owns warden's connection and request limits and its
// blocklist, whichever way they are enforced: in the kernel by the eBPF
// programs of package bpf (per packet, before warden sees a syscall), or,
// where those can't load, by the userspace limiter here (per connection at
// accept, per request in the proxy). Both apply the same token buckets to
// the same keys, report the same Status, and accept the same blocks.
//
// Start picks the enforcer from WARDEN_RATE_LIMIT_MODE: in auto mode the
// kernel's only when a kernel feature is asked for (a connection or packet
// rate; a later feature adds its own Feature), since without one the
// program would cost privileges and a hook for nothing. Once the program is
// attached, or when it won't be, Start gives up CAP_BPF, CAP_NET_ADMIN and
// CAP_PERFMON for good. The package does not decide whom to block: callers
// (the agent, for decoy hits and policy decisions) do; it keeps each
// block's cause and bounds the blocklist.
package ratelimit
