package bundle

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"time"
)

// seed is random per process: nobody outside can craft inputs whose hashes
// collide, and a collision would only cost a miss, since hits compare the
// whole key.
var seed = maphash.MakeSeed()

// maxPooledKey keeps one huge request from pinning a huge buffer in the pool.
const maxPooledKey = 64 << 10

var keyPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func putKey(buf *[]byte, key []byte) {
	if cap(key) > maxPooledKey {
		return
	}
	*buf = key
	keyPool.Put(buf)
}

// appendKey serializes every field of in that can change a decision, that is
// all but Transaction, each length-prefixed so that no two inputs share a
// key. Token is represented by TokenKey (and whether it is present).
func appendKey(b []byte, in *Input) []byte {
	str := func(b []byte, s string) []byte {
		b = binary.AppendUvarint(b, uint64(len(s)))
		return append(b, s...)
	}
	b = str(b, in.Method)
	b = str(b, in.Path)
	b = str(b, in.RawPath)
	b = str(b, in.RawQuery)
	b = binary.AppendUvarint(b, uint64(len(in.Headers)))
	for i := range in.Headers {
		b = str(b, in.Headers[i].Name)
		b = str(b, in.Headers[i].Value)
	}
	b = str(b, in.Sender)
	b = str(b, in.PeerID)
	b = str(b, in.PeerTrustDomain)
	b = str(b, in.DestinationID)
	if in.Token != nil {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return str(b, in.TokenKey)
}

// cache holds one revision's decisions: a fixed number of shards, each a map
// bounded to its share of the size, with random eviction when full (Go's map
// iteration starts at a random entry) and an expiry per entry.
type cache struct {
	shards   []shard
	mask     uint64
	perShard int
	epoch    time.Time // expiries are monotonic offsets from it
}

type shard struct {
	mu sync.RWMutex
	m  map[uint64]*entry
	_  [32]byte // 64 bytes in all: a shard's lock shares no cache line with another's
}

// entry is immutable once stored.
type entry struct {
	key     []byte
	d       Decision
	expires time.Duration // since cache.epoch
}

func newCache(size int) *cache {
	n := 1
	for n < 64 && n*32 <= size {
		n *= 2
	}
	c := &cache{shards: make([]shard, n), mask: uint64(n - 1), perShard: size / n, epoch: time.Now()}
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
	return e.d, true
}

// put stores a copy of key. A different key with the same hash is replaced.
func (c *cache) put(h uint64, key []byte, d Decision, ttl time.Duration) {
	now := time.Since(c.epoch)
	e := &entry{key: append([]byte(nil), key...), d: d, expires: now + ttl}
	s := &c.shards[h&c.mask]
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[h]; !ok && len(s.m) >= c.perShard {
		s.evict(now)
	}
	s.m[h] = e
}

// evict drops an expired entry among the first few it meets, or else the
// first one: a random entry.
func (s *shard) evict(now time.Duration) {
	const look = 8
	var victim uint64
	i := 0
	for h, e := range s.m {
		if i == 0 {
			victim = h
		}
		if e.expires <= now {
			victim = h
			break
		}
		if i++; i == look {
			break
		}
	}
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
