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

	// The blocklist: sharded, so that a block costs one shard's lock
	// rather than a copy of the whole list, and readers take a shard's read
	// lock only while it holds something (nblocked, one atomic load).
	blockMu   sync.Mutex // serializes writers, so the bound holds exactly
	blocks    [sourceShards]blockShard
	nblocked  atomic.Int64 // entries in blocks, expired ones not yet removed included
	maxBlocks int          // bound of the blocklist: maxSources, as the kernel's map
	v6Prefix  int          // IPv6 sources are blocked per prefix of this length

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

type blockShard struct {
	mu    sync.RWMutex
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
	for i := range u.blocks {
		u.blocks[i].until = make(map[netip.Addr]int64)
	}
	return u
}

func (u *Userspace) now() int64 { return int64(u.clock()) }

// blockedFor reports how much longer ip is blocked at now (0: it is not);
// it costs one atomic load while the blocklist is empty.
func (u *Userspace) blockedFor(ip netip.Addr, now int64) time.Duration {
	if u.nblocked.Load() == 0 {
		return 0
	}
	key := blockKey(ip, u.v6Prefix)
	sh := u.blockShard(key)
	sh.mu.RLock()
	until, ok := sh.until[key]
	sh.mu.RUnlock()
	if ok && until > now {
		return time.Duration(until - now)
	}
	return 0
}

func (u *Userspace) blockShard(key netip.Addr) *blockShard {
	return &u.blocks[maphash.Comparable(u.seed, key)%sourceShards]
}

// AllowConn decides a new connection from ip, at accept.
func (u *Userspace) AllowConn(ip netip.Addr) bool {
	ip = ip.Unmap()
	if u.conn.Unlimited() && u.nblocked.Load() == 0 {
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
	if u.request.Unlimited() && u.nblocked.Load() == 0 {
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
	sh := u.blockShard(key)
	u.blockMu.Lock()
	defer u.blockMu.Unlock()
	now := u.now()
	sh.mu.Lock()
	_, present := sh.until[key]
	sh.mu.Unlock()
	if !present && u.nblocked.Load() >= int64(u.maxBlocks) {
		// Full: make room by removing expired entries (a walk of the
		// whole list, only when it is full), then try once more.
		if u.sweepLocked(now); u.nblocked.Load() >= int64(u.maxBlocks) {
			return ErrBlocklistFull
		}
	}
	sh.mu.Lock()
	sh.until[key] = now + int64(d)
	sh.mu.Unlock()
	if !present {
		u.nblocked.Add(1)
	}
	return nil
}

// Unblock implements Enforcer.
func (u *Userspace) Unblock(ip netip.Addr) error {
	key := blockKey(ip, u.v6Prefix)
	sh := u.blockShard(key)
	u.blockMu.Lock()
	defer u.blockMu.Unlock()
	sh.mu.Lock()
	if _, ok := sh.until[key]; ok {
		delete(sh.until, key)
		u.nblocked.Add(-1)
	}
	sh.mu.Unlock()
	return nil
}

// sweepLocked removes the entries expired at now; the caller holds
// blockMu.
func (u *Userspace) sweepLocked(now int64) {
	for i := range u.blocks {
		sh := &u.blocks[i]
		sh.mu.Lock()
		for ip, until := range sh.until {
			if until <= now {
				delete(sh.until, ip)
				u.nblocked.Add(-1)
			}
		}
		sh.mu.Unlock()
	}
}

// eachBlock calls fn for each block in force at now.
func (u *Userspace) eachBlock(now int64, fn func(ip netip.Addr, until int64)) {
	for i := range u.blocks {
		sh := &u.blocks[i]
		sh.mu.RLock()
		for ip, until := range sh.until {
			if until > now {
				fn(ip, until)
			}
		}
		sh.mu.RUnlock()
	}
}

// Status implements Enforcer.
func (u *Userspace) Status() Status {
	// Expired entries leave the list when it is full; this keeps it from
	// holding them forever when no more blocks come.
	u.blockMu.Lock()
	u.sweepLocked(u.now())
	u.blockMu.Unlock()
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
	u.eachBlock(now, func(ip netip.Addr, until int64) {
		st.Blocklist = append(st.Blocklist, blockEntry(ip, wall.Add(time.Duration(until-now)), wall))
	})
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

// Totals implements Enforcer; it counts the blocks in force without
// copying the list.
func (u *Userspace) Totals() (Totals, error) {
	t := Totals{Mode: config.RateLimitUserspace, Counters: u.counters()}
	u.eachBlock(u.now(), func(netip.Addr, int64) { t.Blocked++ })
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
