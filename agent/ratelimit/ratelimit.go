package ratelimit

import (
	"errors"
	"net/netip"
	"slices"
	"time"
)

// Limits are the configured rates; 0 is unlimited, a burst of 0 is the rate.
type Limits struct {
	ConnRate    int `json:"conn_rate"`    // new connections per second per source IP
	ConnBurst   int `json:"conn_burst"`   // 0: the rate
	PacketRate  int `json:"packet_rate"`  // per connection: packets (ebpf) or requests (userspace) per second
	PacketBurst int `json:"packet_burst"` // 0: the rate
}

// Enforcer is a running limiter: the kernel's or the userspace one.
type Enforcer interface {
	// Block drops the source's traffic to the inbound port for d; a later
	// Block of the same source replaces the expiry.
	Block(ip netip.Addr, d time.Duration) error
	// Unblock lifts a block early.
	Unblock(ip netip.Addr) error
	// Status is the /ratelimit view.
	Status() Status
	// Totals are the counters and the number of blocked sources, for
	// metrics at each scrape: Status without the top sources, which walk
	// every source's state.
	Totals() (Totals, error)
	// Close stops enforcing; for eBPF it detaches the program.
	Close() error
}

// Status is what GET /ratelimit answers.
type Status struct {
	Mode           string `json:"mode"`                      // config.RateLimitEBPF, RateLimitUserspace or RateLimitOff
	RequestedMode  string `json:"requested_mode"`            // WARDEN_RATE_LIMIT_MODE
	FallbackReason string `json:"fallback_reason,omitempty"` // auto mode: why eBPF is not running
	Interface      string `json:"interface,omitempty"`       // ebpf: where the program is attached
	Attach         string `json:"attach,omitempty"`          // ebpf: xdp-native, xdp-generic or tcx
	Port           int    `json:"port"`                      // the inbound port the limits apply to
	// Unit is what the counters count: "packets" in the kernel;
	// "connections_and_requests" in userspace, where conn_rate drops are
	// connections closed at accept and packet_rate drops are requests
	// answered 429.
	Unit       string        `json:"unit,omitempty"`
	Limits     Limits        `json:"limits"`
	Counters   Counters      `json:"counters"`
	TopSources []SourceDrops `json:"top_sources"`
	Blocklist  []BlockEntry  `json:"blocklist"`
	// BlockOverflows counts blocks refused because the blocklist was full.
	BlockOverflows uint64 `json:"block_overflows"`
	Error          string `json:"error,omitempty"` // reading the kernel's maps failed
	// KernelFeatures are the kernel features the settings ask for; empty:
	// none, so auto mode loads no eBPF (fallback_reason says so).
	KernelFeatures []Feature `json:"kernel_features"`
	// CapabilitiesKept is why warden still holds CAP_BPF, CAP_NET_ADMIN
	// or CAP_PERFMON; absent when it holds none of them.
	CapabilitiesKept string `json:"capabilities_kept,omitempty"`
	// PolicyLimits are the layer-7 limits the pipeline applies whatever
	// the mode: the policy's rate_limit keys and the peers' default budget.
	PolicyLimits *KeyedStatus `json:"policy_limits,omitempty"`
}

// KeyedStatus is /ratelimit's view of the layer-7 limits. The keys
// themselves are not shown: a policy may build them from a credential.
type KeyedStatus struct {
	PeerRate  int    `json:"peer_rate"`  // WARDEN_PEER_RATE_LIMIT; 0: no default budget
	PeerBurst int    `json:"peer_burst"` // WARDEN_PEER_BURST
	Keys      int    `json:"keys"`       // buckets in use
	MaxKeys   int    `json:"max_keys"`   // WARDEN_RATE_LIMIT_KEYS (rounded down to a multiple of the shards)
	Overflow  uint64 `json:"overflow"`   // keys forgotten to make room for another since start
	Limited   uint64 `json:"limited"`    // requests answered 429 rate_limited since start
}

// Totals are what Enforcer.Totals reads.
type Totals struct {
	Mode     string // as Status.Mode
	Counters Counters
	Blocked  int // sources blocked now
	// BlockOverflows counts blocks refused because the blocklist was full
	// (Running's count; 0 from an Enforcer alone).
	BlockOverflows uint64
}

// Counters are totals since start.
type Counters struct {
	Passed  uint64       `json:"passed"`
	Dropped DropCounters `json:"dropped"`
	// Unparsed (eBPF only) are packets passed without a look at their TCP
	// header (non-first fragments, deep IPv6 extension headers): they
	// bypass the limits, so a growing number deserves a look.
	Unparsed uint64 `json:"unparsed"`
}

// DropCounters are drops by reason.
type DropCounters struct {
	Blocked    uint64 `json:"blocked"`
	ConnRate   uint64 `json:"conn_rate"`
	PacketRate uint64 `json:"packet_rate"`
}

// SourceDrops is one source's drops, for the top sources list.
type SourceDrops struct {
	IP      string `json:"ip"`
	Dropped uint64 `json:"dropped"`
}

// BlockEntry is one blocked source.
type BlockEntry struct {
	// IP is the blocked address; for IPv6, the prefix's first address
	// (Prefix says how long).
	IP               string    `json:"ip"`
	Prefix           string    `json:"prefix,omitempty"` // IPv6: the blocked prefix, e.g. 2001:db8::/64
	Cause            Cause     `json:"cause"`
	Expires          time.Time `json:"expires"`
	RemainingSeconds float64   `json:"remaining_seconds"`
}

// Cause is why a source is blocked. Its values are fixed: they label
// events and the /ratelimit view.
type Cause string

const (
	CauseHoneypot Cause = "honeypot" // it requested a decoy (WARDEN_HONEYPOT_PATHS)
	CausePolicy   Cause = "policy"   // a decision returned block_for_seconds
	CauseManual   Cause = "manual"   // Block was called by an operator or a test
)

// ErrBlocklistFull is Block's error when the blocklist holds its maximum of
// live blocks (WARDEN_BPF_MAX_SOURCES) and the source is not one of them.
var ErrBlocklistFull = errors.New("ratelimit: block: the blocklist is full (WARDEN_BPF_MAX_SOURCES live blocks)")

// TopSourcesLen is how many sources Status lists, most drops first.
const TopSourcesLen = 10

// ErrOff is returned by Block when rate limiting is off.
var ErrOff = errors.New("ratelimit: rate limiting is off (WARDEN_RATE_LIMIT_MODE=off)")

// MaxBlock bounds a block's duration: entries must expire by themselves.
const MaxBlock = 24 * time.Hour

func checkBlock(ip netip.Addr, d time.Duration) error {
	if !ip.IsValid() {
		return errors.New("ratelimit: block: invalid IP address")
	}
	if d <= 0 || d > MaxBlock {
		return errors.New("ratelimit: block: duration must be more than 0 and at most 24h")
	}
	return nil
}

// sortBlocks orders a blocklist by expiry, soonest first.
func sortBlocks(b []BlockEntry) {
	slices.SortFunc(b, func(x, y BlockEntry) int { return x.Expires.Compare(y.Expires) })
}

func blockEntry(ip netip.Addr, expires, now time.Time) BlockEntry {
	return BlockEntry{
		IP:               ip.String(),
		Expires:          expires.UTC().Truncate(time.Second),
		RemainingSeconds: float64(expires.Sub(now).Round(time.Millisecond)) / float64(time.Second),
	}
}
