package cache

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

func TestGetReturnsWhatPutStored(t *testing.T) {
	c := New[string](Options{Entries: 10})
	key := []byte("key")
	if _, ok := c.Get(key); ok {
		t.Fatal("an empty cache hit")
	}
	c.Put(key, "one", 3, time.Minute)
	key[0] = 'K' // the cache owns a copy of the key
	if v, ok := c.Get([]byte("key")); !ok || v != "one" {
		t.Fatalf("Get = %q, %v; want one, true", v, ok)
	}
	c.Put([]byte("key"), "two", 3, time.Minute)
	if v, ok := c.Get([]byte("key")); !ok || v != "two" || c.Len() != 1 {
		t.Fatalf("Get = %q, %v with %d entries; want two, true with 1", v, ok, c.Len())
	}
}

// A hash collision must not hand one key another's value.
func TestCacheComparesKeysOnHit(t *testing.T) {
	c := New[bool](Options{Entries: 10})
	c.put(7, []byte("key-a"), true, 0, time.Minute)
	if _, ok := c.get(7, []byte("key-b")); ok {
		t.Fatal("a different key with the same hash hit")
	}
	if v, ok := c.get(7, []byte("key-a")); !ok || !v {
		t.Fatal("the stored key missed")
	}
	c.put(7, []byte("key-b"), false, 0, time.Minute)
	if _, ok := c.get(7, []byte("key-a")); ok || c.Len() != 1 {
		t.Fatal("a key with the same hash did not replace the entry")
	}
}

func TestTTL(t *testing.T) {
	tests := []struct {
		name   string
		ttl    time.Duration
		stored bool
	}{
		{"a positive ttl is stored", time.Minute, true},
		{"a zero ttl stores nothing", 0, false},
		{"a negative ttl stores nothing", -time.Second, false},
		{"a ttl beyond what a Duration holds past the epoch never expires", math.MaxInt64, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New[int](Options{Entries: 10})
			c.Put([]byte("k"), 1, 0, tt.ttl)
			if _, ok := c.Get([]byte("k")); ok != tt.stored {
				t.Fatalf("hit = %v; want %v", ok, tt.stored)
			}
		})
	}
}

func TestEntriesExpire(t *testing.T) {
	c := New[int](Options{Entries: 10})
	c.Put([]byte("k"), 1, 0, 20*time.Millisecond)
	if _, ok := c.Get([]byte("k")); !ok {
		t.Fatal("not stored")
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, ok := c.Get([]byte("k")); ok; _, ok = c.Get([]byte("k")) {
		if time.Now().After(deadline) {
			t.Fatal("the entry did not expire")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCacheIsBounded(t *testing.T) {
	for _, size := range []int{1, 10, 100, 5000} {
		c := New[int](Options{Entries: size})
		var last []byte
		for i := range 3 * size {
			last = fmt.Appendf(nil, "key-%d", i)
			c.Put(last, i, 0, time.Minute)
		}
		if n := c.Len(); n > size || n < size/2 {
			t.Errorf("Entries %d holds %d entries", size, n)
		}
		if _, ok := c.Get(last); !ok {
			t.Errorf("Entries %d: the last entry is not there", size)
		}
	}
}

// What Bytes reports is what the entries count, and it stays under the
// bound: every entry counts its key, its value's bytes and its bookkeeping.
func TestCacheIsBoundedInBytes(t *testing.T) {
	const limit = 1 << 20
	c := New[string](Options{Entries: 100000, Bytes: limit})
	var want int64
	for i := range 10 {
		v := strings.Repeat("v", 1000)
		key := fmt.Appendf(nil, "key-%d", i)
		c.Put(key, v, len(v), time.Minute)
		want += c.overhead + int64(cap(append([]byte(nil), key...))) + int64(len(v))
	}
	if got := c.Bytes(); got != want {
		t.Fatalf("10 entries hold %d bytes; want %d", got, want)
	}
	for i := range 10000 {
		v := strings.Repeat("v", 1000)
		c.Put(fmt.Appendf(nil, "key-%d", i), v, len(v), time.Minute)
	}
	if n, size := c.Len(), c.Bytes(); size > limit || n < limit/1200/2 {
		t.Fatalf("the cache holds %d entries in %d bytes; want about %d bytes", n, size, limit)
	}
}

// A scan of many distinct keys must not evict an entry that is hit between
// them.
func TestCacheKeepsTheHotSet(t *testing.T) {
	c := New[bool](Options{Entries: 64})
	hot := []byte("hot")
	c.put(0, hot, true, 0, time.Minute)
	for i := range 10000 {
		// Even hashes: all in the same shard as the hot entry.
		c.put(uint64(2*i+2), fmt.Appendf(nil, "cold-%d", i), false, 0, time.Minute)
		if _, ok := c.get(0, hot); !ok {
			t.Fatalf("the hot entry was evicted after %d one-off entries", i+1)
		}
	}
	if n := c.Len(); n > 64 {
		t.Fatalf("%d entries", n)
	}
}

// An expired entry goes before one that is still in use.
func TestCacheEvictsExpiredEntriesFirst(t *testing.T) {
	c := New[int](Options{Entries: 2})
	c.put(1, []byte("a"), 0, 0, time.Minute)
	c.put(2, []byte("b"), 0, 0, time.Nanosecond)
	c.get(1, []byte("a"))
	c.shards[0].m[2].ref.Store(true) // hit just before it expired
	c.put(3, []byte("c"), 0, 0, time.Minute)
	if _, ok := c.get(1, []byte("a")); !ok {
		t.Fatal("the live entry was evicted rather than the expired one")
	}
	if _, ok := c.shards[0].m[2]; ok {
		t.Fatal("the expired entry is still there")
	}
}

func TestCacheRefusesAnEntryLargerThanItsShard(t *testing.T) {
	c := New[bool](Options{Entries: 10, Bytes: 1000})
	c.Put([]byte("small"), true, 0, time.Minute)
	c.Put(make([]byte, 2000), true, 0, time.Minute)
	if _, ok := c.Get(make([]byte, 2000)); ok {
		t.Fatal("a key larger than the cache was stored")
	}
	if _, ok := c.Get([]byte("small")); !ok {
		t.Fatal("a refused entry evicted another")
	}
	c.Put([]byte("k"), true, 2000, time.Minute)
	if _, ok := c.Get([]byte("k")); ok {
		t.Fatal("a value larger than the cache was stored")
	}
}

func TestGetAllocatesNothing(t *testing.T) {
	type value struct {
		s string
		n []int
	}
	c := New[value](Options{Entries: 100, Bytes: 1 << 20})
	key := []byte("a key of some length, like a request's")
	c.Put(key, value{"v", []int{1}}, 9, time.Minute)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := c.Get(key); !ok {
			t.Fatal("miss")
		}
	})
	if allocs != 0 {
		t.Fatalf("a hit allocates %v times", allocs)
	}
}

// Run with -race: readers, writers and eviction on the same shards.
func TestConcurrentUse(t *testing.T) {
	c := New[int](Options{Entries: 256, Bytes: 1 << 20})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				key := fmt.Appendf(nil, "key-%d", (i*7+g)%512)
				if v, ok := c.Get(key); ok && fmt.Sprintf("key-%d", v) != string(key) {
					t.Errorf("%s holds %d", key, v)
					return
				}
				c.Put(key, (i*7+g)%512, 8, time.Minute)
			}
		})
	}
	wg.Wait()
	if n := c.Len(); n > 256 {
		t.Fatalf("%d entries", n)
	}
}

func TestNewPanicsOnBadOptions(t *testing.T) {
	for _, opts := range []Options{{}, {Entries: -1}, {Entries: 1, Bytes: -1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%+v) did not panic", opts)
				}
			}()
			New[int](opts)
		}()
	}
}

func TestCacheShardsFillCacheLines(t *testing.T) {
	if size := unsafe.Sizeof(shard[int]{}); size%64 != 0 {
		t.Fatalf("a shard is %d bytes; want a multiple of 64", size)
	}
}
