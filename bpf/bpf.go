package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Config is what the kernel enforces. Rates are per second; a rate of 0
// means unlimited, and a burst of 0 means a bucket as large as the rate.
type Config struct {
	// Port is the inbound TCP port: only traffic to it is limited.
	Port uint16
	// Ports are further TCP ports limited exactly like Port. XDP and TC
	// see packets before netfilter, so when `warden init` redirects the
	// app's ports to warden, the packets still carry the app's port here:
	// list those ports. One rate budget per source and per connection,
	// whatever the port.
	Ports []uint16

	ConnRate, ConnBurst     uint32 // SYNs per second per source IP
	PacketRate, PacketBurst uint32 // packets per second per connection (5-tuple)

	// Sizes of the per-source and per-connection LRU maps, fixed at Load
	// (0: DefaultMaxSources, DefaultMaxConns). The blocklist holds up to
	// MaxSources entries too.
	MaxSources, MaxConns uint32

	// IPv6Prefix is the length of the prefix an IPv6 block covers (0:
	// 128, per address): Block blocks the prefix of the address it is
	// given, and the programs look sources up masked alike. IPv4 sources
	// are blocked per address. Fixed at Load.
	IPv6Prefix int
}

// Default map sizes. In kernel memory (charged to warden's cgroup) the
// defaults cost about 6 MiB for sources and 28 MiB for connections,
// allocated at Load.
const (
	DefaultMaxSources = 65536
	DefaultMaxConns   = 262144
)

// AttachMode is the hook the program is attached to.
type AttachMode string

const (
	// AttachXDP attaches at XDP: native where the driver supports it,
	// generic (after the skb is allocated, still before the stack) where
	// not.
	AttachXDP AttachMode = "xdp"
	// AttachTC attaches at TCX ingress (Linux 6.6).
	AttachTC AttachMode = "tc"
)

// Attachment kinds reported by Limiter.Attachment.
const (
	KindXDPNative  = "xdp-native"
	KindXDPGeneric = "xdp-generic"
	KindTCX        = "tcx"
)

// BlockEntry is a blocked source and when its block ends.
type BlockEntry struct {
	Addr    netip.Addr
	Expires time.Time
}

// Counters are packets to a limited port since Load, summed over CPUs.
type Counters struct {
	Passed            uint64
	DroppedBlocked    uint64
	DroppedConnRate   uint64
	DroppedPacketRate uint64
	// Unparsed are IP packets passed without a look at their TCP header,
	// because the program could not find it (IPv4 and IPv6 non-first
	// fragments, IPv6 packets with ESP or more than 6 extension headers,
	// truncated headers), whatever their port. Non-zero values on a pod's
	// interface deserve a look: such packets bypass the limits.
	Unparsed uint64
}

// SourceStat is a source and how many of its packets were dropped, for
// any reason.
type SourceStat struct {
	Addr    netip.Addr
	Dropped uint64
}

var (
	// ErrClosed is returned by a Limiter's methods after Close.
	ErrClosed = errors.New("bpf: limiter is closed")
	// ErrNotSupported is returned by Load where warden has no BPF object
	// (other operating systems, big-endian machines).
	ErrNotSupported = errors.New("bpf: not supported on this platform")
)

// normalized fills in the defaults and checks cfg.
func (c Config) normalized() (Config, error) {
	if c.MaxSources == 0 {
		c.MaxSources = DefaultMaxSources
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.Port == 0 && len(c.Ports) == 0 {
		return c, errors.New("bpf: no port to limit (Port is 0 and Ports is empty)")
	}
	if c.IPv6Prefix == 0 {
		c.IPv6Prefix = 128
	}
	if c.IPv6Prefix < 0 || c.IPv6Prefix > 128 {
		return c, fmt.Errorf("bpf: IPv6Prefix %d is not a prefix length", c.IPv6Prefix)
	}
	for _, p := range c.Ports {
		if p == 0 {
			return c, errors.New("bpf: Ports: port 0")
		}
	}
	return c, nil
}
