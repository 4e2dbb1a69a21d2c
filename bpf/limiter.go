// The platforms the generated little-endian object is built for.
//go:build (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm) && linux

package bpf

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/warden-sidecar/warden/internal/gcra"
)

// Limiter owns the loaded programs, their maps and at most one attachment.
// Its methods are safe for concurrent use.
type Limiter struct {
	objs       ratelimitObjects
	maxSources uint32
	maxConns   uint32
	v6Prefix   int // the blocklist's IPv6 keys are prefixes of this length

	mu     sync.Mutex // guards the fields below and serializes blocklist writes
	closed bool
	link   link.Link
	ifname string
	kind   string
}

// Load loads the programs and maps into the kernel and writes cfg. Nothing
// is attached yet. An error from the verifier or the kernel is wrapped: for
// the verifier's whole log, format the *ebpf.VerifierError found with
// errors.As with %+v.
func Load(cfg Config) (*Limiter, error) {
	cfg, err := cfg.normalized()
	if err != nil {
		return nil, err
	}
	spec, err := loadRatelimit()
	if err != nil {
		return nil, fmt.Errorf("bpf: %w", err)
	}
	spec.Maps[ratelimitMapSources].MaxEntries = cfg.MaxSources
	spec.Maps[ratelimitMapConns].MaxEntries = cfg.MaxConns
	spec.Maps[ratelimitMapBlocklist].MaxEntries = cfg.MaxSources

	l := &Limiter{maxSources: cfg.MaxSources, maxConns: cfg.MaxConns, v6Prefix: cfg.IPv6Prefix}
	if err := spec.LoadAndAssign(&l.objs, nil); err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("bpf: load (needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON): %w", err)
		}
		return nil, fmt.Errorf("bpf: load: %w", err)
	}
	if err := l.writeLimits(cfg); err != nil {
		l.objs.Close()
		return nil, err
	}
	return l, nil
}

// SetLimits changes the ports, rates and bursts the kernel enforces, at
// once. Buckets keep their state. The map sizes are fixed at Load:
// MaxSources and MaxConns must be 0 or what Load was given.
func (l *Limiter) SetLimits(cfg Config) error {
	if (cfg.MaxSources != 0 && cfg.MaxSources != l.maxSources) || (cfg.MaxConns != 0 && cfg.MaxConns != l.maxConns) {
		return fmt.Errorf("bpf: map sizes are fixed at load (MaxSources %d, MaxConns %d); got %d, %d",
			l.maxSources, l.maxConns, cfg.MaxSources, cfg.MaxConns)
	}
	cfg, err := cfg.normalized()
	if err != nil {
		return err
	}
	cfg.IPv6Prefix = l.v6Prefix
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	return l.writeLimits(cfg)
}

// writeLimits replaces the config map's entry. The kernel copies the value
// in without a lock, so a packet that races the update may see a mix of
// the old and new limits; later packets see the new ones.
func (l *Limiter) writeLimits(cfg Config) error {
	var v ratelimitLimits
	conn := gcra.New(int64(cfg.ConnRate), int64(cfg.ConnBurst))
	pkt := gcra.New(int64(cfg.PacketRate), int64(cfg.PacketBurst))
	v.ConnIntervalNs, v.ConnLimitNs = conn.Interval, conn.Tolerance
	v.PktIntervalNs, v.PktLimitNs = pkt.Interval, pkt.Tolerance
	// The kernel ANDs the mask's memory with the address's: the bytes in
	// network order, read as the little-endian words of the bpfel object.
	var mask [16]byte
	for i := range cfg.IPv6Prefix {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	for i := range v.V6BlockMask {
		v.V6BlockMask[i] = binary.LittleEndian.Uint32(mask[4*i:])
	}
	for _, p := range append([]uint16{cfg.Port}, cfg.Ports...) {
		if p != 0 {
			v.Ports[p/64] |= 1 << (p % 64)
		}
	}
	if err := l.objs.Config.Update(uint32(0), &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: write limits: %w", err)
	}
	return nil
}

// Attach attaches the program to ifname's ingress, in the caller's network
// namespace: at XDP (native, or generic if the driver refuses native) or at
// TCX. A Limiter has at most one attachment, which Close removes. The
// attachment is a BPF link owned by this process: if the process dies, the
// kernel detaches the program.
func (l *Limiter) Attach(ifname string, mode AttachMode) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.link != nil {
		return fmt.Errorf("bpf: already attached to %s (%s)", l.ifname, l.kind)
	}
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("bpf: attach: %w", err)
	}
	// The program parses Ethernet frames: an L3 device (tun, wireguard)
	// would have it misread every packet.
	if len(iface.HardwareAddr) != 6 && iface.Flags&net.FlagLoopback == 0 {
		return fmt.Errorf("bpf: attach: %s is not an Ethernet interface", ifname)
	}

	var (
		lk   link.Link
		kind string
	)
	switch mode {
	case AttachXDP:
		kind = KindXDPNative
		lk, err = link.AttachXDP(link.XDPOptions{Program: l.objs.WardenXdp, Interface: iface.Index, Flags: link.XDPDriverMode})
		if err != nil {
			var gerr error
			kind = KindXDPGeneric
			lk, gerr = link.AttachXDP(link.XDPOptions{Program: l.objs.WardenXdp, Interface: iface.Index, Flags: link.XDPGenericMode})
			if gerr != nil {
				return fmt.Errorf("bpf: attach XDP to %s: native: %w; generic: %w", ifname, err, gerr)
			}
		}
	case AttachTC:
		kind = KindTCX
		// First in the chain: what warden drops costs the programs after
		// it nothing, and what it passes still reaches them (TCX_NEXT).
		lk, err = link.AttachTCX(link.TCXOptions{
			Program:   l.objs.WardenTc,
			Interface: iface.Index,
			Attach:    ebpf.AttachTCXIngress,
			Anchor:    link.Head(),
		})
		if err != nil {
			return fmt.Errorf("bpf: attach TCX ingress to %s (needs Linux 6.6): %w", ifname, err)
		}
	default:
		return fmt.Errorf("bpf: attach: unknown mode %q (want %q or %q)", mode, AttachXDP, AttachTC)
	}
	l.link, l.ifname, l.kind = lk, ifname, kind
	return nil
}

// Attachment reports where the program is attached: the interface and
// KindXDPNative, KindXDPGeneric or KindTCX; empty strings if it is not.
func (l *Limiter) Attachment() (ifname, kind string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ifname, l.kind
}

// Block drops every packet from ip to a limited port for d. Blocking a
// blocked source again sets its expiry to now+d.
func (l *Limiter) Block(ip netip.Addr, d time.Duration) error {
	if !ip.IsValid() {
		return errors.New("bpf: block: invalid address")
	}
	if d <= 0 {
		return fmt.Errorf("bpf: block %s: duration %v is not positive", ip, d)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	key := l.blockKey(ip)
	expires := monotonicNow() + uint64(d)
	if expires < uint64(d) { // overflow: block for as long as the clock runs
		expires = math.MaxUint64
	}
	err := l.objs.Blocklist.Update(&key, &expires, ebpf.UpdateAny)
	if errors.Is(err, unix.E2BIG) {
		// Full: make room by removing expired entries, then try once more.
		if _, serr := l.sweepLocked(); serr != nil {
			return fmt.Errorf("bpf: block %s: %w", ip, serr)
		}
		err = l.objs.Blocklist.Update(&key, &expires, ebpf.UpdateAny)
	}
	if err != nil {
		return fmt.Errorf("bpf: block %s (blocklist holds %d): %w", ip, l.maxSources, err)
	}
	return nil
}

// Unblock lifts ip's block. Unblocking a source that is not blocked is not
// an error.
func (l *Limiter) Unblock(ip netip.Addr) error {
	if !ip.IsValid() {
		return errors.New("bpf: unblock: invalid address")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	key := l.blockKey(ip)
	if err := l.objs.Blocklist.Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: unblock %s: %w", ip, err)
	}
	return nil
}

// Blocked lists the blocks in force, soonest expiry first, and removes
// expired entries from the map.
func (l *Limiter) Blocked() ([]BlockEntry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	return l.sweepLocked()
}

// sweepLocked deletes expired blocklist entries and returns the others.
// The programs never delete (see ratelimit.c), so deleting under l.mu
// cannot remove a block renewed meanwhile.
func (l *Limiter) sweepLocked() ([]BlockEntry, error) {
	var (
		key     ratelimitSourceKey
		expires uint64
		live    []BlockEntry
		expired []ratelimitSourceKey
	)
	mono, wall := monotonicNow(), time.Now()
	it := l.objs.Blocklist.Iterate()
	for it.Next(&key, &expires) {
		if expires <= mono {
			expired = append(expired, key)
			continue
		}
		d := time.Duration(min(expires-mono, math.MaxInt64))
		live = append(live, BlockEntry{Addr: keyAddr(key.Addr), Expires: wall.Add(d)})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("bpf: read blocklist: %w", err)
	}
	for i := range expired {
		if err := l.objs.Blocklist.Delete(&expired[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, fmt.Errorf("bpf: remove expired block: %w", err)
		}
	}
	slices.SortFunc(live, func(a, b BlockEntry) int {
		return cmp.Or(a.Expires.Compare(b.Expires), a.Addr.Compare(b.Addr))
	})
	return live, nil
}

// Counters returns the packet counters, summed over CPUs.
func (l *Limiter) Counters() (Counters, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return Counters{}, ErrClosed
	}
	var perCPU []ratelimitCounts
	if err := l.objs.Counters.Lookup(uint32(0), &perCPU); err != nil {
		return Counters{}, fmt.Errorf("bpf: read counters: %w", err)
	}
	var c Counters
	for _, v := range perCPU {
		c.Passed += v.Passed
		c.DroppedBlocked += v.DroppedBlocked
		c.DroppedConnRate += v.DroppedConnRate
		c.DroppedPacketRate += v.DroppedPacketRate
		c.Unparsed += v.Unparsed
	}
	return c, nil
}

// TopSources returns the n sources with the most dropped packets, most
// first (n <= 0: all of them); sources with none are left out. Sources
// the LRU map has forgotten are not counted.
func (l *Limiter) TopSources(n int) ([]SourceStat, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	var stats []SourceStat
	add := func(k ratelimitSourceKey, v ratelimitSourceState) {
		if v.Dropped > 0 {
			stats = append(stats, SourceStat{Addr: keyAddr(k.Addr), Dropped: v.Dropped})
		}
	}
	if err := l.readSources(add); err != nil {
		return nil, err
	}
	slices.SortFunc(stats, func(a, b SourceStat) int {
		return cmp.Or(cmp.Compare(b.Dropped, a.Dropped), a.Addr.Compare(b.Addr))
	})
	if n > 0 && len(stats) > n {
		stats = stats[:n]
	}
	return stats, nil
}

// readSources calls fn for each entry of the sources map, in batches (two
// system calls per entry would take a tenth of a second on a full map).
func (l *Limiter) readSources(fn func(ratelimitSourceKey, ratelimitSourceState)) error {
	const batch = 4096
	keys := make([]ratelimitSourceKey, batch)
	vals := make([]ratelimitSourceState, batch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := l.objs.Sources.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			fn(keys[i], vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("bpf: read sources: %w", err)
		}
	}
}

// Close detaches the program and frees the programs and maps. It is safe
// to call more than once.
func (l *Limiter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []error
	if l.link != nil {
		if err := l.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("bpf: detach from %s: %w", l.ifname, err))
		}
		l.link, l.ifname, l.kind = nil, "", ""
	}
	if err := l.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bpf: close: %w", err))
	}
	return errors.Join(errs...)
}

// sourceKey is the kernel's key for ip: 16 bytes, IPv4 as IPv4-mapped IPv6.
func sourceKey(ip netip.Addr) ratelimitSourceKey {
	return ratelimitSourceKey{Addr: ip.As16()}
}

// blockKey is the blocklist's key for ip: its own for IPv4, its prefix
// (masked) for IPv6, as the programs look it up.
func (l *Limiter) blockKey(ip netip.Addr) ratelimitSourceKey {
	if ip = ip.Unmap(); ip.Is6() {
		ip = netip.PrefixFrom(ip, l.v6Prefix).Masked().Addr()
	}
	return sourceKey(ip)
}

// keyAddr is the address in a kernel key, IPv4 unmapped.
func keyAddr(b [16]byte) netip.Addr {
	return netip.AddrFrom16(b).Unmap()
}

// monotonicNow is bpf_ktime_get_ns()'s clock: CLOCK_MONOTONIC, in ns.
func monotonicNow() uint64 {
	var ts unix.Timespec
	// Cannot fail with a valid clock and pointer.
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}
