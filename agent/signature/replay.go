package signature

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
)

// replayCache remembers the signature bases of accepted signatures until
// their deadline, the moment the signature would be refused as stale (or
// expired) anyway: created + MaxAge + ClockSkew, or expires + ClockSkew
// when sooner. A base seen again before then is a replay.
//
// Layout: a fixed table allocated once, of buckets of 8 entries (a 64-bit
// keyed hash of the base and its deadline), spread over up to 64 shards
// each with its own lock. A lookup hashes the base (maphash, seeded at
// random per process so that no one can aim at a bucket), locks one shard
// and scans one bucket: no allocation, whatever the traffic. Memory is
// 136 bytes per 8 entries, fixed: 4.25 MiB for DefaultReplayEntries.
//
// The key is the signature base, not the signature's bytes: ECDSA
// signatures are malleable ((r, s) and (r, n-s) both verify), and an
// attacker must not replay a request by re-encoding its signature. The
// same base signed twice (RSA-PSS and ECDSA sign differently each time) is
// the same signed request: signers make their requests distinct with
// created and a nonce, as Signer does.
//
// When full: an insertion into a bucket whose 8 entries are all still live
// evicts the one with the nearest deadline (the oldest signature), and the
// bucket remembers that deadline as its floor; from then on a signature
// whose deadline is not later than the bucket's floor is refused as stale.
// An evicted signature's replay carries the evicted deadline, so it is
// refused: eviction never lets a replay through. What it costs instead is
// freshness: under more signed requests than the cache holds for the window
// (capacity / (MaxAge + 2 ClockSkew) a second, about 4,300/s by default),
// requests whose created is no later than the forgotten ones' are refused,
// so the effective MaxAge shrinks to how long the cache remembers, per
// bucket. Buckets fill unevenly: the first evictions come at about half
// the capacity, in the buckets that got a ninth live entry, and with more
// than 8 signatures of one second in a bucket, the ninth is refused (a
// replay of the one it would evict would look the same); by default that
// takes over 200,000 signed requests in a second. The alternative of refusing new signatures when full would let
// anyone with a valid key deny service to everyone; this way only requests
// delayed longer than the cache's memory are refused, and Stats counts the
// evictions so the operator sees the cache is too small. Only verified
// signatures are inserted, so filling the cache takes a valid key.
//
// The buckets' hashes are 64-bit, and a shard and bucket consume up to 15
// of those bits at the default size: two distinct bases are taken for one
// with a probability of about 8 / 2^49 per request.
type replayCache struct {
	seed       maphash.Seed
	shards     []replayShard
	shardShift uint   // h >> shardShift picks the shard
	bucketMask uint64 // h & bucketMask picks the bucket in the shard
	evictions  atomic.Uint64
}

const (
	replayWays      = 8
	replayMaxShards = 64
)

type replayBucket struct {
	keys      [replayWays]uint64
	deadlines [replayWays]int64 // Unix ns; at or before now: free
	floor     int64             // latest deadline of a live entry evicted from this bucket
}

type replayShard struct {
	mu      sync.Mutex
	buckets []replayBucket
	_       [64 - 32]byte // the next shard's lock on another cache line
}

type replayResult int

const (
	replayNew  replayResult = iota // remembered now
	replaySeen                     // accepted before, and still live
	replayFull                     // no later than what its bucket had to forget
)

// newReplayCache makes a cache of at least entries entries (a power of
// two, at least 8).
func newReplayCache(entries int) *replayCache {
	buckets := max(1, (entries+replayWays-1)/replayWays)
	buckets = 1 << bits.Len(uint(buckets-1)) // next power of two
	shards := min(buckets, replayMaxShards)
	c := &replayCache{
		seed:       maphash.MakeSeed(),
		shards:     make([]replayShard, shards),
		shardShift: uint(64 - bits.TrailingZeros(uint(shards))),
		bucketMask: uint64(buckets/shards - 1),
	}
	for i := range c.shards {
		c.shards[i].buckets = make([]replayBucket, buckets/shards)
	}
	return c
}

func (c *replayCache) capacity() int {
	return len(c.shards) * len(c.shards[0].buckets) * replayWays
}

// seen reports whether base is remembered, without remembering it: Verify
// asks before the public-key operation, so that replaying a captured
// request costs a hash, not a signature check.
func (c *replayCache) seen(base []byte, now int64) bool {
	h := maphash.Bytes(c.seed, base)
	s := &c.shards[h>>c.shardShift]
	s.mu.Lock()
	b := &s.buckets[h&c.bucketMask]
	found := false
	for i := range b.keys {
		if b.deadlines[i] > now && b.keys[i] == h {
			found = true
			break
		}
	}
	s.mu.Unlock()
	return found
}

// check looks base up and remembers it until deadline if it is new. now
// and deadline are Unix nanoseconds.
func (c *replayCache) check(base []byte, deadline, now int64) replayResult {
	h := maphash.Bytes(c.seed, base)
	s := &c.shards[h>>c.shardShift] // a shift of 64 (one shard) gives 0
	s.mu.Lock()
	b := &s.buckets[h&c.bucketMask]
	victim := 0
	for i := range b.keys {
		if b.deadlines[i] > now && b.keys[i] == h {
			s.mu.Unlock()
			return replaySeen
		}
		if b.deadlines[i] < b.deadlines[victim] {
			victim = i
		}
	}
	if deadline <= b.floor {
		s.mu.Unlock()
		return replayFull
	}
	if d := b.deadlines[victim]; d > now {
		b.floor = max(b.floor, d)
		c.evictions.Add(1)
	}
	b.keys[victim], b.deadlines[victim] = h, deadline
	s.mu.Unlock()
	return replayNew
}
