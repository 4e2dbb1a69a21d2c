package ratekeys

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-sidecar/warden/internal/gcra"
)

// Keys is a bounded table of buckets by key, for limits whose key only the
// request's layer 7 knows (a policy's rate_limit key, a peer's SPIFFE ID):
// one TAT per key, stepped with gcra.Params.Take, the kernel's arithmetic. At
// most max keys are kept; a new key beyond that forgets the least recently
// used one (an overflow, counted), whose next event then starts from a full
// bucket. Tables of fewer than keysShardMin keys are one exact LRU; larger
// ones are keysShards LRUs of max/keysShards keys each, so that concurrent
// requests rarely share a lock, and the least recently used key of a shard
// goes first.
//
// A Take on a key already in the table allocates nothing.
type Keys struct {
	shards   []keyShard
	perShard int
	seed     maphash.Seed
	clock    func() uint64 // monotonic ns

	overflow, refused atomic.Uint64
}

const (
	keysShards   = 16
	keysShardMin = 1024
)

// Kind tells apart keys of different origins with the same name, so that a
// policy cannot share a peer's default bucket by naming its SPIFFE ID.
type Kind uint8

type keyID struct {
	kind Kind
	name string
}

type keyShard struct {
	mu   sync.Mutex
	m    map[keyID]*keyEntry
	head keyEntry // sentinel: head.next is the most recently used
}

type keyEntry struct {
	id         keyID
	tat        uint64
	prev, next *keyEntry
}

// New keeps at most size keys (at least 1).
func New(size int) *Keys {
	size = max(size, 1)
	n := 1
	if size >= keysShardMin {
		n = keysShards
	}
	k := &Keys{shards: make([]keyShard, n), perShard: size / n, seed: maphash.MakeSeed()}
	start := time.Now()
	k.clock = func() uint64 { return uint64(time.Since(start)) }
	for i := range k.shards {
		sh := &k.shards[i]
		sh.m = make(map[keyID]*keyEntry)
		sh.head.next, sh.head.prev = &sh.head, &sh.head
	}
	return k
}

// Take charges one event to the bucket of (kind, name) under p: ok, or not
// and how long until an event would conform (a Retry-After). Unlimited p
// admits without touching the table.
func (k *Keys) Take(kind Kind, name string, p gcra.Params) (ok bool, wait time.Duration) {
	if p.Unlimited() {
		return true, 0
	}
	sh := &k.shards[0]
	if len(k.shards) > 1 {
		sh = &k.shards[(maphash.String(k.seed, name)^uint64(kind))%uint64(len(k.shards))]
	}
	id := keyID{kind, name}
	sh.mu.Lock()
	e, found := sh.m[id]
	if found {
		sh.unlink(e)
	} else {
		e = k.insert(sh, id)
	}
	sh.pushFront(e)
	ok, wait = p.Take(&e.tat, k.clock())
	sh.mu.Unlock()
	if !ok {
		k.refused.Add(1)
	}
	return ok, wait
}

// insert makes the entry of a new key, forgetting the least recently used
// one when the shard is full (and reusing its entry). The caller holds
// sh.mu.
func (k *Keys) insert(sh *keyShard, id keyID) *keyEntry {
	// The name may alias a buffer its caller reuses.
	id.name = string([]byte(id.name))
	var e *keyEntry
	if len(sh.m) >= k.perShard {
		e = sh.head.prev
		sh.unlink(e)
		delete(sh.m, e.id)
		k.overflow.Add(1)
		*e = keyEntry{}
	} else {
		e = new(keyEntry)
	}
	e.id = id
	sh.m[id] = e
	return e
}

func (sh *keyShard) unlink(e *keyEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
}

func (sh *keyShard) pushFront(e *keyEntry) {
	e.prev, e.next = &sh.head, sh.head.next
	sh.head.next.prev = e
	sh.head.next = e
}

// KeysStats is what Keys holds, for /ratelimit and metrics.
type KeysStats struct {
	Keys     int    // in use now
	Max      int    // the bound
	Overflow uint64 // keys forgotten to make room for another since start
	Refused  uint64 // events over their bucket's rate since start
}

// Stats counts the keys in use.
func (k *Keys) Stats() KeysStats {
	st := KeysStats{Max: k.perShard * len(k.shards), Overflow: k.overflow.Load(), Refused: k.refused.Load()}
	for i := range k.shards {
		sh := &k.shards[i]
		sh.mu.Lock()
		st.Keys += len(sh.m)
		sh.mu.Unlock()
	}
	return st
}
