package cache

import (
	"testing"
	"time"
)

// BenchmarkGet is the cost of a hit: a hash of the key, one read-locked map
// lookup and a compare.
func BenchmarkGet(b *testing.B) {
	c := New[[2]string](Options{Entries: 10000, Bytes: 32 << 20})
	key := []byte("GET\x00/api/v1/items/42\x00spiffe://example.org/ns/default/sa/reader")
	c.Put(key, [2]string{"a", "b"}, 2, time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Get(key); !ok {
			b.Fatal("miss")
		}
	}
}
