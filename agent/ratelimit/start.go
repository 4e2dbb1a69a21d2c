package ratelimit

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/bpf"
)

// Settings configure Start.
type Settings struct {
	Mode       string     // WARDEN_RATE_LIMIT_MODE: config.RateLimitAuto, ...
	Port       int        // the inbound port, as bound
	ExtraPorts []uint16   // eBPF: ports redirected to Port by netfilter, which XDP sees unredirected
	InboundIP  netip.Addr // the inbound listener's IP; unspecified: the default route's interface
	Interface  string     // "" = the interface that carries the route to InboundIP
	Attach     string     // "xdp" or "tc"
	Limits     Limits
	MaxSources int
	MaxConns   int
	// IPv6Prefix is the length of the prefix an IPv6 block covers
	// (WARDEN_IPV6_PREFIX; 0: 128, per address).
	IPv6Prefix int
	// Features are kernel features asked for besides the limits, which
	// ask for their own (see KernelFeatures): a later feature that needs
	// the program adds its Feature here.
	Features []Feature
}

// Feature is something the eBPF program enforces that is worth loading it,
// and holding CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON until it is attached,
// for. In auto mode the program is loaded only when at least one is asked
// for; Block alone is not one (the userspace limiter blocks as well).
type Feature string

// The kernel features of the limits.
const (
	FeatureConnRate   Feature = "conn_rate"   // Limits.ConnRate > 0
	FeaturePacketRate Feature = "packet_rate" // Limits.PacketRate > 0
	// FeatureBlocklist: something blocks sources on its own (decoys), so
	// that their packets are best dropped before the stack sees them.
	FeatureBlocklist Feature = "blocklist"
)

// KernelFeatures are the kernel features s asks for: those of the limits,
// then s.Features, without repeats.
func (s Settings) KernelFeatures() []Feature {
	var fs []Feature
	if s.Limits.ConnRate > 0 {
		fs = append(fs, FeatureConnRate)
	}
	if s.Limits.PacketRate > 0 {
		fs = append(fs, FeaturePacketRate)
	}
	for _, f := range s.Features {
		if !slices.Contains(fs, f) {
			fs = append(fs, f)
		}
	}
	return fs
}

// ErrNothingToEnforce is Running.Fallback in auto mode when no kernel
// feature is asked for: the eBPF program is not loaded and nothing is
// attached; the userspace limiter runs, which costs nothing without limits
// and keeps Block working.
var ErrNothingToEnforce = errors.New("ratelimit: nothing to enforce in the kernel (no WARDEN_CONN_RATE_LIMIT or WARDEN_PACKET_RATE_LIMIT): eBPF not loaded; the userspace limiter serves Block")

// Running is the enforcer Start chose.
type Running struct {
	Enforcer
	// Userspace is the userspace limiter when it runs: the proxy calls it
	// at accept and per request. nil with eBPF or off.
	Userspace *Userspace
	// Fallback is why eBPF is not running in auto mode (nil otherwise):
	// ErrNothingToEnforce, or the error that stopped it.
	Fallback error
	// CapabilitiesKept is why the process still holds CAP_BPF,
	// CAP_NET_ADMIN or CAP_PERFMON after Start; nil when it holds none.
	CapabilitiesKept error

	requested string
	features  []Feature

	// The blocks made through Running, with their cause: the enforcers
	// keep only an expiry per key. Bounded like the enforcers' blocklists.
	v6Prefix  int
	maxBlocks int
	blockMu   sync.Mutex
	blocks    map[netip.Addr]blockRecord // by blockKey
	overflows atomic.Uint64
}

type blockRecord struct {
	cause   Cause
	expires time.Time // with its monotonic reading
}

// Status adds the requested mode, the kernel features asked for, the
// fallback reason and the capabilities kept.
func (r *Running) Status() Status {
	st := r.Enforcer.Status()
	r.blockMu.Lock()
	for i := range st.Blocklist {
		b := &st.Blocklist[i]
		ip, err := netip.ParseAddr(b.IP)
		if err != nil {
			continue
		}
		b.Cause = CauseManual
		if rec, ok := r.blocks[ip]; ok {
			b.Cause = rec.cause
		}
		if ip.Is6() && r.v6Prefix < 128 {
			b.Prefix = netip.PrefixFrom(ip, r.v6Prefix).String()
		}
	}
	r.blockMu.Unlock()
	st.BlockOverflows = r.overflows.Load()
	st.RequestedMode = r.requested
	st.KernelFeatures = append([]Feature{}, r.features...)
	if r.Fallback != nil {
		st.FallbackReason = r.Fallback.Error()
	}
	if r.CapabilitiesKept != nil {
		st.CapabilitiesKept = r.CapabilitiesKept.Error()
	}
	return st
}

// Start starts what s.Mode asks for: in ebpf mode the program is loaded
// and attached, and a failure is the error (with the kernel's words); in
// auto mode it is loaded only when a kernel feature is asked for, and a
// failure is not an error: the userspace limiter takes over and
// Running.Fallback says why. Whatever it started, Start then gives up
// CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON for good (bpf.DropCapabilities):
// the attached program's maps and link need none of them, and nothing
// else does; Running.CapabilitiesKept says why when it can't.
func Start(s Settings) (*Running, error) {
	if s.IPv6Prefix == 0 {
		s.IPv6Prefix = 128
	}
	r := &Running{requested: s.Mode, features: s.KernelFeatures(), v6Prefix: s.IPv6Prefix,
		maxBlocks: max(1, s.MaxSources), blocks: make(map[netip.Addr]blockRecord)}
	var k *kernel
	switch s.Mode {
	case config.RateLimitOff:
		r.Enforcer = off{port: s.Port, limits: s.Limits}
	case config.RateLimitUserspace:
		r.startUserspace(s)
	case config.RateLimitEBPF, config.RateLimitAuto:
		if s.Mode == config.RateLimitAuto && len(r.features) == 0 {
			r.Fallback = ErrNothingToEnforce
			r.startUserspace(s)
			break
		}
		var err error
		if k, err = startKernel(s); err != nil {
			if s.Mode == config.RateLimitEBPF {
				return nil, err
			}
			r.Fallback = err
			r.startUserspace(s)
			break
		}
		r.Enforcer = k
	default:
		return nil, fmt.Errorf("ratelimit: unknown mode %q", s.Mode)
	}
	if k != nil {
		r.CapabilitiesKept = k.l.DropCapabilities()
	} else {
		r.CapabilitiesKept = bpf.DropCapabilities()
	}
	return r, nil
}

func (r *Running) startUserspace(s Settings) {
	r.Userspace = NewUserspace(s.Port, s.Limits, s.MaxSources)
	r.Userspace.setIPv6Prefix(s.IPv6Prefix)
	r.Enforcer = r.Userspace
}

// off is WARDEN_RATE_LIMIT_MODE=off: nothing is limited or blocked.
type off struct {
	port   int
	limits Limits
}

func (off) Block(netip.Addr, time.Duration) error { return ErrOff }
func (off) Unblock(netip.Addr) error              { return ErrOff }
func (off) Close() error                          { return nil }
func (off) Totals() (Totals, error)               { return Totals{Mode: config.RateLimitOff}, nil }

func (o off) Status() Status {
	return Status{Mode: config.RateLimitOff, Port: o.port, Limits: o.limits, TopSources: []SourceDrops{}, Blocklist: []BlockEntry{}}
}

// Totals adds the blocks refused for a full blocklist.
func (r *Running) Totals() (Totals, error) {
	t, err := r.Enforcer.Totals()
	t.BlockOverflows = r.overflows.Load()
	return t, err
}

// Blocked is what BlockFor did.
type Blocked struct {
	// Prefix is what is blocked: the address (a /32 or /128), or for IPv6
	// its prefix of Settings.IPv6Prefix.
	Prefix netip.Prefix
	// Renewed: the prefix was blocked already; its expiry moved to now+d
	// (or stayed, when later), and its cause stayed.
	Renewed bool
}

// BlockFor blocks ip (for IPv6, its prefix) for d, for cause, in the
// enforcer at once: with eBPF the kernel's map is written before it
// returns, so the source's next packet is dropped. A block in force is
// never shortened. Past the bound of the blocklist it fails with
// ErrBlocklistFull (counted as Status.BlockOverflows).
func (r *Running) BlockFor(ip netip.Addr, d time.Duration, cause Cause) (Blocked, error) {
	if err := checkBlock(ip, d); err != nil {
		return Blocked{}, err
	}
	key := blockKey(ip, r.v6Prefix)
	b := Blocked{Prefix: r.prefixOf(key)}
	now := time.Now()
	r.blockMu.Lock()
	defer r.blockMu.Unlock()
	rec, ok := r.blocks[key]
	if ok && rec.expires.After(now) {
		b.Renewed = true
		if !rec.expires.Before(now.Add(d)) {
			return b, nil
		}
		cause = rec.cause
	}
	if !ok && len(r.blocks) >= r.maxBlocks {
		r.dropExpiredLocked(now)
		if len(r.blocks) >= r.maxBlocks {
			r.overflows.Add(1)
			return b, ErrBlocklistFull
		}
	}
	if err := r.Enforcer.Block(key, d); err != nil {
		if errors.Is(err, ErrBlocklistFull) {
			r.overflows.Add(1)
		}
		return b, err
	}
	r.blocks[key] = blockRecord{cause: cause, expires: now.Add(d)}
	return b, nil
}

// Block implements Enforcer: a block of cause manual.
func (r *Running) Block(ip netip.Addr, d time.Duration) error {
	_, err := r.BlockFor(ip, d, CauseManual)
	return err
}

// Unblock implements Enforcer.
func (r *Running) Unblock(ip netip.Addr) error {
	_, _, err := r.Lift(ip)
	return err
}

// Lift is Unblock, saying which block in force it lifted (ok false: none
// was).
func (r *Running) Lift(ip netip.Addr) (lifted Ended, ok bool, err error) {
	key := blockKey(ip, r.v6Prefix)
	r.blockMu.Lock()
	defer r.blockMu.Unlock()
	if err := r.Enforcer.Unblock(key); err != nil {
		return Ended{}, false, err
	}
	rec, ok := r.blocks[key]
	delete(r.blocks, key)
	if !ok || !rec.expires.After(time.Now()) {
		return Ended{}, false, nil
	}
	return Ended{Prefix: r.prefixOf(key), Cause: rec.cause}, true, nil
}

// prefixOf is what a block keyed key covers.
func (r *Running) prefixOf(key netip.Addr) netip.Prefix {
	if key.Is6() {
		return netip.PrefixFrom(key, r.v6Prefix)
	}
	return netip.PrefixFrom(key, key.BitLen())
}

// Ended is a block that ended.
type Ended struct {
	Prefix netip.Prefix
	Cause  Cause
}

// Sweep removes the blocks that expired by now, from the enforcer too
// (the kernel's map entry is freed), and returns them, for the
// source_unblocked events. The enforcers stop enforcing at the expiry
// whenever Sweep runs; it only tidies and reports.
func (r *Running) Sweep(now time.Time) []Ended {
	r.blockMu.Lock()
	defer r.blockMu.Unlock()
	return r.dropExpiredLocked(now)
}

func (r *Running) dropExpiredLocked(now time.Time) []Ended {
	var ended []Ended
	for key, rec := range r.blocks {
		if rec.expires.After(now) {
			continue
		}
		// An expired entry blocks nothing: failing to free it only costs
		// room until the enforcer's own sweep.
		_ = r.Enforcer.Unblock(key)
		delete(r.blocks, key)
		ended = append(ended, Ended{Prefix: r.prefixOf(key), Cause: rec.cause})
	}
	return ended
}
