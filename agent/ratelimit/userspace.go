package ratelimit

import (
	"container/list"
	"hash/maphash"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/internal/gcra"
)

// Userspace is the limiter that runs where the eBPF programs can't: it
// applies WARDEN_CONN_RATE_LIMIT per source IP at accept (an excess
// connection is closed before its TLS handshake costs anything) and
// WARDEN_PACKET_RATE_LIMIT per connection to HTTP requests (an excess
// request gets 429 with Retry-After). Blocked sources' connections are
// closed at accept, and their requests on connections opened before the
// block are refused.
type Userspace struct {
	port        int
	limits      Limits
	conn        gcra.Params
	request     gcra.Params
	clock       func() time.Duration // monotonic; time.Since(start) outside tests
	maxPerShard int
	seed        maphash.Seed
	shards      [sourceShards]sourceShard

	blockMu   sync.Mutex               // serializes writers of blocked
	blocked   atomic.Pointer[blockSet] // copy on write: readers never lock
	maxBlocks int                      // bound of the blocklist: maxSources, as the kernel's map
	v6Prefix  int                      // IPv6 sources are blocked per prefix of this length

	passed, dropBlocked, dropConn, dropRequest atomic.Uint64
}

const sourceShards = 16

// sourceShard is a bounded LRU of per-source state.
type sourceShard struct {
	mu  sync.Mutex
	m   map[netip.Addr]*list.Element
	lru list.List // of *source, most recent first
}

type source struct {
	addr    netip.Addr
	tat     uint64
	dropped uint64
}

type blockSet struct {
	until map[netip.Addr]int64 // expiry on the monotonic clock
}

// NewUserspace builds the userspace limiter for the inbound port, keeping
// state for at most maxSources sources (the least recently seen are
// forgotten first).
func NewUserspace(port int, l Limits, maxSources int) *Userspace {
	u := &Userspace{
		port:        port,
		limits:      l,
		conn:        gcra.New(int64(l.ConnRate), int64(l.ConnBurst)),
		request:     gcra.New(int64(l.PacketRate), int64(l.PacketBurst)),
		maxPerShard: max(1, maxSources/sourceShards),
		seed:        maphash.MakeSeed(),
		maxBlocks:   max(1, maxSources),
		v6Prefix:    128,
	}
	start := time.Now()
	u.clock = func() time.Duration { return time.Since(start) }
	for i := range u.shards {
		u.shards[i].m = make(map[netip.Addr]*list.Element)
	}
	u.blocked.Store(&blockSet{})
	return u
}

func (u *Userspace) now() int64 { return int64(u.clock()) }

// blockedFor reports how much longer ip is blocked at now (0: it is not);
// it costs one atomic load while the blocklist is empty.
func (u *Userspace) blockedFor(ip netip.Addr, now int64) time.Duration {
	bs := u.blocked.Load()
	if len(bs.until) == 0 {
		return 0
	}
	if until, ok := bs.until[blockKey(ip, u.v6Prefix)]; ok && until > now {
		return time.Duration(until - now)
	}
	return 0
}

// AllowConn decides a new connection from ip, at accept.
func (u *Userspace) AllowConn(ip netip.Addr) bool {
	ip = ip.Unmap()
	if u.conn.Unlimited() && len(u.blocked.Load().until) == 0 {
		u.passed.Add(1)
		return true
	}
	now := u.now()
	if u.blockedFor(ip, now) > 0 {
		u.dropBlocked.Add(1)
		u.countDrop(ip)
		return false
	}
	if u.conn.Unlimited() {
		u.passed.Add(1)
		return true
	}
	sh := &u.shards[maphash.Comparable(u.seed, ip)%sourceShards]
	sh.mu.Lock()
	s := sh.get(ip, u.maxPerShard)
	ok, _ := u.conn.Take(&s.tat, uint64(now))
	if !ok {
		s.dropped++
	}
	sh.mu.Unlock()
	if !ok {
		u.dropConn.Add(1)
		return false
	}
	u.passed.Add(1)
	return true
}

// AllowRequest decides a request on a connection from ip. tat is the
// connection's request bucket, its GCRA theoretical arrival time, which the
// caller keeps per connection (zero for a new one) and leaves to this
// method: a word rather than a type of this package, so that the proxy
// holding it need not import this one. When it refuses, retryAfter says
// when the connection may send again (for a blocked source: when the block
// ends).
func (u *Userspace) AllowRequest(ip netip.Addr, tat *uint64) (ok bool, retryAfter time.Duration) {
	if u.request.Unlimited() && len(u.blocked.Load().until) == 0 {
		u.passed.Add(1)
		return true, 0
	}
	ip = ip.Unmap()
	now := u.now()
	if left := u.blockedFor(ip, now); left > 0 {
		u.dropBlocked.Add(1)
		u.countDrop(ip)
		return false, left
	}
	if !u.request.Unlimited() {
		if ok, wait := u.request.Take(tat, uint64(now)); !ok {
			u.dropRequest.Add(1)
			u.countDrop(ip)
			return false, wait
		}
	}
	u.passed.Add(1)
	return true, 0
}

// countDrop charges a drop to ip for the top sources list.
func (u *Userspace) countDrop(ip netip.Addr) {
	sh := &u.shards[maphash.Comparable(u.seed, ip)%sourceShards]
	sh.mu.Lock()
	sh.get(ip, u.maxPerShard).dropped++
	sh.mu.Unlock()
}

// get returns ip's state, creating it (and forgetting the least recently
// seen source when the shard is full). The caller holds sh.mu.
func (sh *sourceShard) get(ip netip.Addr, limit int) *source {
	if e, ok := sh.m[ip]; ok {
		sh.lru.MoveToFront(e)
		return e.Value.(*source)
	}
	if sh.lru.Len() >= limit {
		old := sh.lru.Back()
		delete(sh.m, old.Value.(*source).addr)
		sh.lru.Remove(old)
	}
	s := &source{addr: ip}
	sh.m[ip] = sh.lru.PushFront(s)
	return s
}

// setIPv6Prefix makes IPv6 blocks cover prefixes of bits (Start sets it
// before the limiter is used).
func (u *Userspace) setIPv6Prefix(bits int) { u.v6Prefix = bits }

// blockKey is the blocklist's key for ip: its own for IPv4, its prefix of
// v6bits (masked) for IPv6, as the kernel's blocklist keys it.
func blockKey(ip netip.Addr, v6bits int) netip.Addr {
	if ip = ip.Unmap(); ip.Is6() && v6bits < 128 {
		ip = netip.PrefixFrom(ip, v6bits).Masked().Addr()
	}
	return ip
}

// Block implements Enforcer. The blocklist holds at most as many sources
// as the limiter tracks (WARDEN_BPF_MAX_SOURCES, the kernel map's size):
// beyond that Block fails with ErrBlocklistFull.
func (u *Userspace) Block(ip netip.Addr, d time.Duration) error {
	if err := checkBlock(ip, d); err != nil {
		return err
	}
	key := blockKey(ip, u.v6Prefix)
	var err error
	u.updateBlocks(func(m map[netip.Addr]int64, now int64) {
		if _, ok := m[key]; !ok && len(m) >= u.maxBlocks {
			err = ErrBlocklistFull
			return
		}
		m[key] = now + int64(d)
	})
	return err
}

// Unblock implements Enforcer.
func (u *Userspace) Unblock(ip netip.Addr) error {
	key := blockKey(ip, u.v6Prefix)
	u.updateBlocks(func(m map[netip.Addr]int64, _ int64) { delete(m, key) })
	return nil
}

// updateBlocks copies the blocklist without its expired entries, applies
// fn and publishes the copy.
func (u *Userspace) updateBlocks(fn func(m map[netip.Addr]int64, now int64)) {
	u.blockMu.Lock()
	defer u.blockMu.Unlock()
	now := u.now()
	old := u.blocked.Load().until
	m := make(map[netip.Addr]int64, len(old)+1)
	for ip, until := range old {
		if until > now {
			m[ip] = until
		}
	}
	fn(m, now)
	u.blocked.Store(&blockSet{until: m})
}

// Status implements Enforcer.
func (u *Userspace) Status() Status {
	// Expired entries leave the map at the next Block; this keeps the map
	// from holding them forever when no more blocks come.
	u.updateBlocks(func(map[netip.Addr]int64, int64) {})
	st := Status{
		Mode:       config.RateLimitUserspace,
		Port:       u.port,
		Unit:       "connections_and_requests",
		Limits:     u.limits,
		Counters:   u.counters(),
		TopSources: []SourceDrops{},
		Blocklist:  []BlockEntry{},
	}
	wall, now := time.Now(), u.now()
	for ip, until := range u.blocked.Load().until {
		st.Blocklist = append(st.Blocklist, blockEntry(ip, wall.Add(time.Duration(until-now)), wall))
	}
	sortBlocks(st.Blocklist)

	var all []SourceDrops
	for i := range u.shards {
		sh := &u.shards[i]
		sh.mu.Lock()
		for e := sh.lru.Front(); e != nil; e = e.Next() {
			if s := e.Value.(*source); s.dropped > 0 {
				all = append(all, SourceDrops{IP: s.addr.String(), Dropped: s.dropped})
			}
		}
		sh.mu.Unlock()
	}
	st.TopSources = append(st.TopSources, TopSources(all, TopSourcesLen)...)
	return st
}

// Totals implements Enforcer; it reads the blocklist without copying it.
func (u *Userspace) Totals() (Totals, error) {
	t := Totals{Mode: config.RateLimitUserspace, Counters: u.counters()}
	now := u.now()
	for _, until := range u.blocked.Load().until {
		if until > now {
			t.Blocked++
		}
	}
	return t, nil
}

func (u *Userspace) counters() Counters {
	return Counters{
		Passed: u.passed.Load(),
		Dropped: DropCounters{
			Blocked:    u.dropBlocked.Load(),
			ConnRate:   u.dropConn.Load(),
			PacketRate: u.dropRequest.Load(),
		},
	}
}

// TopSources sorts by drops, most first (then by address, for a stable
// answer), and keeps n.
func TopSources(all []SourceDrops, n int) []SourceDrops {
	slices.SortFunc(all, func(a, b SourceDrops) int {
		if a.Dropped != b.Dropped {
			if a.Dropped > b.Dropped {
				return -1
			}
			return 1
		}
		return netip.MustParseAddr(a.IP).Compare(netip.MustParseAddr(b.IP))
	})
	if len(all) > n {
		all = all[:n]
	}
	return all
}

// Close implements Enforcer; the userspace limiter holds nothing to free.
func (u *Userspace) Close() error { return nil }
