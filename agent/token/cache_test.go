package token

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// With the real clock, a hit reads no clock but the cache's: the entry's
// TTL, exp + skew from the verification, is what refuses the token once
// exp has passed.
func TestCachedTokenExpiresOnTheRealClock(t *testing.T) {
	k := key(t, "EdDSA")
	v := newVerifier(t, keysOf(k), func(o *Options) { o.ClockSkew = 0 })
	raw := []byte(k.Mint(t, claims("alice", set("exp", time.Now().Add(2*time.Second).Unix()))))
	if _, err := v.Verify(raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.cache.Get(raw); !ok {
		t.Fatal("the verified token is not cached")
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, err := v.Verify(raw); ReasonOf(err) != ReasonExpired; _, err = v.Verify(raw) {
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("Verify = %v; want expired within two seconds", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Tokens with large claims fill the byte bound long before the entry
// bound, and what the cache counts is what it keeps: the heap it holds is
// not much more than the bound, claims included.
func TestCacheIsBoundedInBytes(t *testing.T) {
	const size = 256 // 1 MiB at cacheEntryBytes each
	const limit = size * cacheEntryBytes
	k := key(t, "EdDSA")
	v := newVerifier(t, keysOf(k), func(o *Options) { o.CacheSize = size })
	raws := make([][]byte, 4*size)
	for i := range raws {
		raws[i] = []byte(k.Mint(t, claims(fmt.Sprint("user", i), set("blob", strings.Repeat("b", 5000)))))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, raw := range raws {
		if _, err := v.Verify(raw); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n, bytes := v.cache.Len(), v.cache.Bytes(); bytes > limit || n >= size/2 || n < limit/(24<<10)/2 {
		t.Fatalf("the cache holds %d tokens in %d bytes; want about %d bytes, far fewer than %d tokens", n, bytes, limit, size)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > limit*3/2 {
		t.Fatalf("the heap grew by %d bytes for a cache of %d", grew, limit)
	}
	runtime.KeepAlive(raws)
}
