package cache

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Options bound a Cache.
type Options struct {
	// Entries bounds the number of entries; it must be positive.
	Entries int
	// Bytes bounds the bytes the entries hold, as Put counts them; 0 leaves
	// Entries as the only bound. The cache is split into up to 64 shards,
	// each bounded to its share of both; an entry larger than its shard's
	// share of Bytes is not stored.
	Bytes int64
}

// Cache maps byte-string keys to values of type V: a fixed number of
// shards, each a map bounded to its share of the entries and of the bytes,
// with an expiry per entry and CLOCK (second chance) eviction. It is safe
// for concurrent use.
//
// Random eviction treated the entries a busy client hits on every request
// like the ones a scan of distinct requests leaves behind, so such a scan
// evicted the hot set. With CLOCK, a hit sets the entry's referenced bit;
// the hand that looks for a victim clears the bits it passes and evicts the
// first entry not hit since its last pass (or expired). An entry in use
// survives; one-off entries replace each other.
type Cache[V any] struct {
	shards   []shard[V]
	mask     uint64
	perShard int       // entries
	perBytes int64     // bytes, as Put counts them
	overhead int64     // what an entry costs besides its key and value's bytes
	epoch    time.Time // expiries are monotonic offsets from it
	seed     maphash.Seed
}

type shard[V any] struct {
	mu    sync.RWMutex
	m     map[uint64]*entry[V]
	ring  []*entry[V] // the clock's slots; nil where an entry was removed
	free  []int       // nil slots of ring, the last freed on top
	hand  int         // the slot eviction looks at next
	bytes int64
	_     [32]byte // 128 bytes in all: a shard's lock shares no cache line with another's
}

// entry is immutable once stored, but for ref, which hits set, and slot,
// which its shard's lock guards.
type entry[V any] struct {
	key     []byte
	v       V
	expires time.Duration
	hash    uint64
	size    int64 // overhead, key capacity and the value's bytes
	slot    int   // in the shard's ring
	ref     atomic.Bool
}

// minShardBytes keeps shards from being split so finely, under a small
// Options.Bytes, that a large entry no longer fits in one shard's share.
const minShardBytes = 256 << 10

// New returns an empty cache bounded by opts. It panics if opts.Entries is
// not positive or opts.Bytes is negative: callers validate their
// configuration first.
func New[V any](opts Options) *Cache[V] {
	if opts.Entries < 1 || opts.Bytes < 0 {
		panic("cache: Options need Entries > 0 and Bytes >= 0")
	}
	n := 1
	for n < 64 && n*32 <= opts.Entries && (opts.Bytes == 0 || opts.Bytes/int64(2*n) >= minShardBytes) {
		n *= 2
	}
	c := &Cache[V]{
		shards:   make([]shard[V], n),
		mask:     uint64(n - 1),
		perShard: opts.Entries / n,
		perBytes: math.MaxInt64,
		// The entry itself, its map slot (hash, pointer and control byte at
		// Go's 7/8 load factor), and its slots in the ring and the free list.
		overhead: int64(unsafe.Sizeof(entry[V]{})) + (8+8+1)*8/7 + 8 + 8,
		epoch:    time.Now(),
		seed:     maphash.MakeSeed(),
	}
	if opts.Bytes > 0 {
		c.perBytes = opts.Bytes / int64(n)
	}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]*entry[V], min(c.perShard, 1024))
	}
	return c
}

// Get returns the value stored under key, if it has not expired.
func (c *Cache[V]) Get(key []byte) (V, bool) { return c.get(maphash.Bytes(c.seed, key), key) }

// Put stores v under a copy of key for ttl; a ttl that is not positive
// stores nothing. size is what v holds in bytes besides the value itself
// (which the entry embeds): the strings and slices it points to. The entry
// counts that, its key and its own bookkeeping against Options.Bytes.
//
// v is kept as it is: the caller copies first whatever memory of v it will
// reuse or that would keep more alive than size says. Another value under
// key, or under a key with the same hash, is replaced.
func (c *Cache[V]) Put(key []byte, v V, size int, ttl time.Duration) {
	c.put(maphash.Bytes(c.seed, key), key, v, size, ttl)
}

func (c *Cache[V]) get(h uint64, key []byte) (V, bool) {
	s := &c.shards[h&c.mask]
	s.mu.RLock()
	e := s.m[h]
	s.mu.RUnlock()
	if e == nil || string(e.key) != string(key) || time.Since(c.epoch) >= e.expires {
		var zero V
		return zero, false
	}
	// Marked after the lock is released: if e was evicted meanwhile, marking
	// it changes nothing. Only the first hit since the hand passed writes, so
	// the entries hit most keep their cache lines shared between cores.
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	return e.v, true
}

// put stores the entry unless it is larger than its shard's share of the
// bytes: it would evict the whole shard and still not fit.
func (c *Cache[V]) put(h uint64, key []byte, v V, size int, ttl time.Duration) {
	if ttl <= 0 || c.overhead+int64(len(key))+int64(size) > c.perBytes {
		return
	}
	now := time.Since(c.epoch)
	e := &entry[V]{key: append([]byte(nil), key...), v: v, expires: math.MaxInt64, hash: h}
	if ttl < math.MaxInt64-now { // a longer one never expires, rather than overflowing
		e.expires = now + ttl
	}
	if e.size = c.overhead + int64(cap(e.key)) + int64(size); e.size > c.perBytes {
		return
	}
	s := &c.shards[h&c.mask]
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.m[h]; old != nil {
		s.remove(old)
	}
	for len(s.m) > 0 && (len(s.m) >= c.perShard || s.bytes+e.size > c.perBytes) {
		s.evict(now)
	}
	s.insert(e)
}

// evict removes the first entry the hand meets that is expired or was not
// hit since the hand last passed it, clearing the referenced bits on its
// way. It stops within two turns of the clock: after one, no bit is set.
// The slot it frees is the next one insert fills, just behind the hand, so
// a new entry gets a whole turn to be hit before the hand comes back.
func (s *shard[V]) evict(now time.Duration) {
	for {
		if s.hand >= len(s.ring) {
			s.hand = 0
		}
		e := s.ring[s.hand]
		s.hand++
		switch {
		case e == nil:
		case e.expires > now && e.ref.Load():
			e.ref.Store(false)
		default:
			s.remove(e)
			return
		}
	}
}

func (s *shard[V]) remove(e *entry[V]) {
	delete(s.m, e.hash)
	s.ring[e.slot] = nil
	s.free = append(s.free, e.slot)
	s.bytes -= e.size
}

func (s *shard[V]) insert(e *entry[V]) {
	if n := len(s.free); n > 0 {
		e.slot, s.free = s.free[n-1], s.free[:n-1]
		s.ring[e.slot] = e
	} else {
		e.slot = len(s.ring)
		s.ring = append(s.ring, e)
	}
	s.m[e.hash] = e
	s.bytes += e.size
}

// Len counts the entries, expired ones not yet evicted included. It takes
// every shard's lock in turn: for tests and metrics, not the request path.
func (c *Cache[V]) Len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].m)
		c.shards[i].mu.RUnlock()
	}
	return n
}

// Bytes sums the bytes the entries hold, as Put counts them, with Len's
// cost and caveats.
func (c *Cache[V]) Bytes() int64 {
	var n int64
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += c.shards[i].bytes
		c.shards[i].mu.RUnlock()
	}
	return n
}
