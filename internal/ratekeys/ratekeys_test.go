package ratekeys

import (
	"fmt"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/internal/gcra"
)

// fixedClock makes k's time now, in ns, settable by the test.
func fixedClock(k *Keys) *uint64 {
	now := new(uint64)
	*now = uint64(time.Hour) // past the zero TAT of a new bucket
	k.clock = func() uint64 { return *now }
	return now
}

func TestBucketPerKey(t *testing.T) {
	k := New(10)
	now := fixedClock(k)
	p := gcra.New(2, 3) // 2/s, burst 3
	for i := range 3 {
		if ok, _ := k.Take(0, "a", p); !ok {
			t.Fatalf("event %d of a burst of 3 refused", i+1)
		}
	}
	ok, wait := k.Take(0, "a", p)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("4th event: ok %v, wait %v; want refused, 500ms", ok, wait)
	}
	if ok, _ := k.Take(0, "b", p); !ok {
		t.Fatal("another key shares a's bucket")
	}
	if ok, _ := k.Take(1, "a", p); !ok {
		t.Fatal("the same name of another kind shares a's bucket")
	}
	*now += uint64(500 * time.Millisecond)
	if ok, _ := k.Take(0, "a", p); !ok {
		t.Fatal("a is still refused once its Retry-After passed")
	}
	if ok, _ := k.Take(0, "a", gcra.Params{}); !ok {
		t.Fatal("unlimited params refused")
	}
}

// The bound holds whatever the number of distinct keys, the least recently
// used key is the one forgotten, and each one forgotten is counted.
func TestLRUBound(t *testing.T) {
	k := New(3)
	fixedClock(k)
	p := gcra.New(1, 1)
	for _, key := range []string{"a", "b", "c"} {
		k.Take(0, key, p) // each bucket now empty
	}
	if ok, _ := k.Take(0, "a", p); ok { // a is the most recently used
		t.Fatal("a's empty bucket admitted")
	}
	k.Take(0, "d", p) // forgets b, the least recently used
	if st := k.Stats(); st.Keys != 3 || st.Max != 3 || st.Overflow != 1 {
		t.Fatalf("stats %+v, want 3 keys of 3, 1 overflow", st)
	}
	if ok, _ := k.Take(0, "a", p); ok {
		t.Fatal("a was forgotten instead of the least recently used key")
	}
	if ok, _ := k.Take(0, "c", p); ok {
		t.Fatal("c was forgotten instead of the least recently used key")
	}
	if ok, _ := k.Take(0, "b", p); !ok { // b was forgotten: a fresh bucket
		t.Fatal("b was not forgotten")
	}
	if st := k.Stats(); st.Keys != 3 || st.Overflow != 2 || st.Refused != 3 {
		t.Fatalf("stats %+v, want 3 keys, 2 overflows, 3 refused", st)
	}

	big := New(100000)
	fixedClock(big)
	for i := range 250000 {
		big.Take(0, fmt.Sprint("peer-", i), p)
	}
	if st := big.Stats(); st.Keys > 100000 || st.Keys < 100000-keysShards || st.Overflow != uint64(250000-st.Keys) {
		t.Fatalf("after 250000 keys: %+v, want at most 100000 kept and the rest counted", st)
	}
}

func TestTakeOfAKnownKeyAllocatesNothing(t *testing.T) {
	k := New(100000)
	p := gcra.New(1000000, 1000000)
	k.Take(0, "spiffe://corp.example/ns/a/sa/b", p)
	if n := testing.AllocsPerRun(1000, func() { k.Take(0, "spiffe://corp.example/ns/a/sa/b", p) }); n != 0 {
		t.Fatalf("%v allocations per Take", n)
	}
}

func BenchmarkTake(b *testing.B) {
	k := New(100000)
	p := gcra.New(1000000000, 1000000000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k.Take(0, "spiffe://corp.example/ns/a/sa/b", p)
		}
	})
}

// Concurrent charges across shards keep the bound and lose no refusal.
func TestConcurrentTakes(t *testing.T) {
	k := New(2048) // 16 shards of 128
	p := gcra.New(1, 1)
	done := make(chan int)
	for g := range 4 {
		go func() {
			refused := 0
			for i := range 3000 {
				if ok, _ := k.Take(Kind(g%2), fmt.Sprint("key-", i%4000), p); !ok {
					refused++
				}
				if i%500 == 0 {
					if st := k.Stats(); st.Keys > 2048 {
						t.Errorf("%d keys kept, bound 2048", st.Keys)
					}
				}
			}
			done <- refused
		}()
	}
	refused := 0
	for range 4 {
		refused += <-done
	}
	if st := k.Stats(); st.Keys > 2048 || st.Refused != uint64(refused) {
		t.Fatalf("stats %+v after %d refusals", st, refused)
	}
}
