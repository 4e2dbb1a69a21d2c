package bundle

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// seed is random per process: nobody outside can craft inputs whose hashes
// collide, and a collision would only cost a miss, since hits compare the
// whole key.
var seed = maphash.MakeSeed()

// cache holds one revision's decisions: a fixed number of shards, each a map
// bounded to its share of the entries and of the bytes, with an expiry per
// entry and CLOCK (second chance) eviction.
//
// Random eviction treated the entries a busy client hits on every request
// like the ones a scan of distinct requests leaves behind, so such a scan
// evicted the hot set. With CLOCK, a hit sets the entry's referenced bit;
// the hand that looks for a victim clears the bits it passes and evicts the
// first entry not hit since its last pass (or expired). An entry in use
// survives; one-off entries replace each other.
type cache struct {
	shards   []shard
	mask     uint64
	perShard int       // entries
	perBytes int64     // bytes, as entrySize counts them
	epoch    time.Time // expiries are monotonic offsets from it
}

type shard struct {
	mu    sync.RWMutex
	m     map[uint64]*entry
	ring  []*entry // the clock's slots; nil where an entry was removed
	free  []int    // nil slots of ring, the last freed on top
	hand  int      // the slot eviction looks at next
	bytes int64
	_     [32]byte // 128 bytes in all: a shard's lock shares no cache line with another's
}

// entry is immutable once stored, but for ref, which hits set, and slot,
// which its shard's lock guards.
type entry struct {
	key     []byte
	d       Decision // owned: its strings share no memory with a request
	expires time.Duration
	hash    uint64
	size    int64 // entrySize
	slot    int   // in the shard's ring
	ref     atomic.Bool
}

// minShardBytes keeps shards from being split so finely, under a small
// CacheBytes, that a large request no longer fits in one shard's share.
const minShardBytes = 256 << 10

// entryOverhead is what an entry costs besides the bytes it points to: the
// entry itself, its map slot (hash, pointer and control byte at Go's 7/8
// load factor), and its slots in the ring and the free list.
var entryOverhead = int64(unsafe.Sizeof(entry{})) + (8+8+1)*8/7 + 8 + 8

// entrySize is what an entry with a key of keyCap bytes and decision d
// holds. The revision is not counted: the compiled revision owns it.
func entrySize(keyCap int, d *Decision) int64 {
	n := entryOverhead + int64(keyCap) + int64(len(d.Reason)) +
		int64(cap(d.Headers))*int64(unsafe.Sizeof(Header{})) +
		int64(cap(d.Mask))*int64(unsafe.Sizeof(""))
	for _, h := range d.Headers {
		n += int64(len(h.Name) + len(h.Value))
	}
	for _, m := range d.Mask {
		n += int64(len(m))
	}
	return n
}

// newCache bounds the cache to size entries and, unless maxBytes is 0, to
// maxBytes bytes.
func newCache(size int, maxBytes int64) *cache {
	n := 1
	for n < 64 && n*32 <= size && (maxBytes == 0 || maxBytes/int64(2*n) >= minShardBytes) {
		n *= 2
	}
	c := &cache{shards: make([]shard, n), mask: uint64(n - 1), perShard: size / n, perBytes: math.MaxInt64, epoch: time.Now()}
	if maxBytes > 0 {
		c.perBytes = maxBytes / int64(n)
	}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]*entry, min(c.perShard, 1024))
	}
	return c
}

func (c *cache) hash(key []byte) uint64 { return maphash.Bytes(seed, key) }

func (c *cache) get(h uint64, key []byte) (Decision, bool) {
	s := &c.shards[h&c.mask]
	s.mu.RLock()
	e := s.m[h]
	s.mu.RUnlock()
	if e == nil || string(e.key) != string(key) || time.Since(c.epoch) >= e.expires {
		return Decision{}, false
	}
	// Marked after the lock is released: if e was evicted meanwhile, marking
	// it changes nothing. Only the first hit since the hand passed writes, so
	// the entries hit most keep their cache lines shared between cores.
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	return e.d, true
}

// put stores a copy of key and d. A different key with the same hash is
// replaced. An entry larger than its shard's share of the bytes is not
// stored: it would evict the whole shard and still not fit.
func (c *cache) put(h uint64, key []byte, d Decision, ttl time.Duration) {
	if entrySize(len(key), &d) > c.perBytes {
		return
	}
	now := time.Since(c.epoch)
	e := &entry{key: append([]byte(nil), key...), d: d.owned(), expires: now + ttl, hash: h}
	if e.size = entrySize(cap(e.key), &e.d); e.size > c.perBytes {
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
func (s *shard) evict(now time.Duration) {
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

func (s *shard) remove(e *entry) {
	delete(s.m, e.hash)
	s.ring[e.slot] = nil
	s.free = append(s.free, e.slot)
	s.bytes -= e.size
}

func (s *shard) insert(e *entry) {
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

// len counts the entries, for tests.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].m)
		c.shards[i].mu.RUnlock()
	}
	return n
}

// size sums the bytes the entries hold, for tests.
func (c *cache) size() int64 {
	var n int64
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += c.shards[i].bytes
		c.shards[i].mu.RUnlock()
	}
	return n
}
