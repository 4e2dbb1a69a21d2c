package token

import (
	"hash/maphash"
	"sync"
	"time"
)

// seed is random per process: nobody outside can craft tokens whose hashes
// collide, and a collision would only cost a miss, since a hit compares the
// whole token.
var seed = maphash.MakeSeed()

// cache keeps verified tokens until they expire: shards of maps bounded in
// entries and in token bytes, with random eviction (preferring an expired
// entry) when full. Only verified tokens are stored, so an attacker sending
// garbage cannot evict anything.
type cache struct {
	shards   []shard
	mask     uint64
	perShard int
	perBytes int
}

type shard struct {
	mu    sync.RWMutex
	m     map[uint64]*entry
	bytes int
	_     [24]byte // keeps shards' locks on separate cache lines
}

// entry is immutable once stored.
type entry struct {
	raw   string // the whole token: a hit compares it
	v     *Verified
	gen   uint64    // the key set generation it was verified with
	until time.Time // exp + clock skew
}

func newCache(size, bytes int) *cache {
	n := 1
	for n < 32 && n*64 <= size {
		n *= 2
	}
	c := &cache{shards: make([]shard, n), mask: uint64(n - 1), perShard: max(size/n, 1), perBytes: max(bytes/n, MaxTokenBytes)}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]*entry)
	}
	return c
}

func (c *cache) hash(raw []byte) uint64 { return maphash.Bytes(seed, raw) }

// get returns the verified token raw is, if it was verified with the
// current key set and has not expired.
func (c *cache) get(h uint64, raw []byte, gen uint64, now time.Time) *Verified {
	s := &c.shards[h&c.mask]
	s.mu.RLock()
	e := s.m[h]
	s.mu.RUnlock()
	if e == nil || e.raw != string(raw) || e.gen != gen || !now.Before(e.until) {
		return nil
	}
	return e.v
}

func (c *cache) put(h uint64, raw []byte, v *Verified, gen uint64, until, now time.Time) {
	e := &entry{raw: string(raw), v: v, gen: gen, until: until}
	s := &c.shards[h&c.mask]
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[h]; ok {
		s.bytes -= len(old.raw)
		delete(s.m, h)
	}
	for len(s.m) > 0 && (len(s.m) >= c.perShard || s.bytes+len(raw) > c.perBytes) {
		s.evict(now)
	}
	s.m[h] = e
	s.bytes += len(raw)
}

// evict drops an expired entry among the first few it meets, or else the
// first one: a random entry (Go's map iteration starts anywhere).
func (s *shard) evict(now time.Time) {
	const look = 8
	var victim uint64
	i := 0
	for h, e := range s.m {
		if i == 0 {
			victim = h
		}
		if !now.Before(e.until) {
			victim = h
			break
		}
		if i++; i == look {
			break
		}
	}
	s.bytes -= len(s.m[victim].raw)
	delete(s.m, victim)
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
