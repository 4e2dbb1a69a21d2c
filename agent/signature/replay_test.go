package signature

import (
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// testBase returns a distinct signature base for i.
func testBase(i int) []byte {
	b := make([]byte, 0, 96)
	b = append(b, `"@method": POST`+"\n"+`"@signature-params": ();created=1760000000;nonce="`...)
	b = binary.BigEndian.AppendUint64(b, uint64(i))
	return append(b, '"')
}

const sec = int64(time.Second)

func TestReplayCacheSize(t *testing.T) {
	for _, tc := range []struct{ entries, want int }{
		{1, 8}, {8, 8}, {9, 16}, {1000, 1024}, {DefaultReplayEntries, DefaultReplayEntries}, {DefaultReplayEntries + 1, 2 * DefaultReplayEntries},
	} {
		if got := newReplayCache(tc.entries).capacity(); got != tc.want {
			t.Errorf("newReplayCache(%d).capacity() = %d, want %d", tc.entries, got, tc.want)
		}
	}
	if s := unsafe.Sizeof(replayShard{}); s != 64 {
		t.Errorf("a shard is %d bytes, want one cache line", s)
	}
	if b := unsafe.Sizeof(replayBucket{}); b != 136 {
		t.Errorf("a bucket is %d bytes, want 136 (17 per entry)", b)
	}
}

// A flood of unique valid signatures, 50 times what the cache holds,
// spread over time (the cache holds about 4 seconds of it): its memory
// does not grow, the evictions are counted, nearly every fresh signature
// passes, and not one of the flooded signatures is accepted again: each
// is remembered, or older than what its bucket had to forget.
func TestReplayCacheBoundedUnderFlood(t *testing.T) {
	c := newReplayCache(4096)
	const (
		n         = 50 * 4096
		perSecond = 1024
	)
	created := func(i int) int64 { return (t0 + int64(i/perSecond)) * sec }
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	refused := 0
	for i := range n {
		switch c.check(testBase(i), created(i)+60*sec, created(i)) {
		case replaySeen:
			t.Fatalf("fresh signature %d taken for a replay", i)
		case replayFull:
			refused++
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 64<<10 {
		t.Errorf("the heap grew by %d bytes under the flood", grown)
	}
	end := created(n - 1)
	if live := c.live(end); live > c.capacity() {
		t.Errorf("%d live entries, capacity %d", live, c.capacity())
	}
	if ev := c.evictions.Load(); ev < n*9/10 {
		t.Errorf("%d evictions for %d signatures", ev, n)
	}
	// A bucket gets more than 8 signatures of one second now and then
	// (2 a second on average): the ninth is refused, not let through.
	if refused > n/1000 {
		t.Errorf("%d of %d fresh signatures refused", refused, n)
	}
	t.Logf("%d signatures, %d evictions, %d fresh ones refused", n, c.evictions.Load(), refused)
	for i := range n {
		if got := c.check(testBase(i), created(i)+60*sec, end); got == replayNew {
			t.Fatalf("flooded signature %d accepted again", i)
		}
	}
}

// The worst case: more signatures in one second than a bucket holds.
// Once a bucket forgot one of them, every other one of that second in the
// bucket is refused: a replay of the forgotten one would look the same.
func TestReplayCacheFloodWithinOneSecond(t *testing.T) {
	c := newReplayCache(64)
	now := int64(t0) * sec
	accepted := map[int]bool{}
	for i := range 1000 {
		if c.check(testBase(i), now+60*sec, now) == replayNew {
			accepted[i] = true
		}
	}
	if len(accepted) > 1000/2 || len(accepted) < c.capacity()/2 {
		t.Errorf("%d of 1000 accepted with a capacity of %d", len(accepted), c.capacity())
	}
	for i := range 1000 {
		if c.check(testBase(i), now+60*sec, now) == replayNew {
			t.Fatalf("signature %d accepted twice", i)
		}
	}
}

// The cost of a full cache, measured: under a flood spread over time,
// signatures created within the last capacity/rate seconds pass, older
// ones are refused (never let through).
func TestReplayCacheFullShrinksTheWindow(t *testing.T) {
	c := newReplayCache(1024)
	const rate = 256 // signatures a second: the cache remembers about 4 s
	now := int64(t0) * sec
	for s := range int64(20) {
		for i := range rate {
			created := (t0 + s) * sec
			// replayFull now and then: a bucket got more than 8 of one
			// second (2 on average); see TestReplayCacheBoundedUnderFlood.
			if got := c.check(testBase(int(s)*rate+i), created+60*sec, created); got == replaySeen {
				t.Fatalf("second %d signature %d taken for a replay", s, i)
			}
		}
	}
	now += 19 * sec
	// A late signature created 10 s ago, never seen: refused as too old
	// for what the cache remembers (it could be a forgotten one's replay).
	old := now - 10*sec
	if got := c.check(testBase(1<<30), old+60*sec, now); got != replayFull {
		t.Errorf("a 10 s old unseen signature: %v, want refused", got)
	}
	recent := now
	if got := c.check(testBase(1<<30+1), recent+60*sec+sec, now); got != replayNew {
		t.Errorf("a signature created now: %v, want accepted", got)
	}
}

func (c *replayCache) live(now int64) int {
	n := 0
	for i := range c.shards {
		for _, b := range c.shards[i].buckets {
			for _, d := range b.deadlines {
				if d > now {
					n++
				}
			}
		}
	}
	return n
}

func TestReplayCacheAllocationFree(t *testing.T) {
	c := newReplayCache(1024)
	now := int64(t0) * sec
	seen := testBase(1)
	c.check(seen, now+60*sec, now)
	if a := testing.AllocsPerRun(1000, func() {
		if c.check(seen, now+60*sec, now) != replaySeen {
			t.Fatal("not seen")
		}
	}); a != 0 {
		t.Errorf("a hit allocates %.1f times", a)
	}
	bases := make([][]byte, 1001)
	for i := range bases {
		bases[i] = testBase(100 + i)
	}
	i := 0
	if a := testing.AllocsPerRun(1000, func() {
		c.check(bases[i], now+60*sec, now)
		i++
	}); a != 0 {
		t.Errorf("an insertion allocates %.1f times", a)
	}
}

// Entries live until their deadline; after it, their slots are free and
// the same base is new again (it would be stale by then: see
// TestReplayWindowMeetsMaxAge).
func TestReplayCacheEntriesExpire(t *testing.T) {
	c := newReplayCache(64)
	now := int64(t0) * sec
	b := testBase(1)
	c.check(b, now+10*sec, now)
	if got := c.check(b, now+10*sec, now+10*sec-1); got != replaySeen {
		t.Errorf("just before its deadline: %v, want seen", got)
	}
	if got := c.check(b, now+10*sec, now+10*sec); got != replayNew {
		t.Errorf("at its deadline: %v, want forgotten", got)
	}
	for i := range 200 {
		c.check(testBase(10+i), now+20*sec, now+11*sec)
	}
	if live := c.live(now + 20*sec); live != 0 {
		t.Errorf("%d entries live after every deadline", live)
	}
	for i := range 200 {
		if got := c.check(testBase(10+i), now+40*sec, now+21*sec); got == replaySeen {
			t.Fatalf("signature %d still remembered after its deadline", i)
		}
	}
}

// Through Verify: the same request is a replay within the window and stale
// after it; the cache forgets it exactly when freshness takes over.
func TestReplayWindowMeetsMaxAge(t *testing.T) {
	k := fixtureKeys(t)
	var now atomic.Int64
	now.Store(t0 + 1)
	v := newTestVerifier(t, Options{Keys: k.set, Required: true, ClockSkew: 2 * time.Second,
		Now: func() time.Time { return time.Unix(now.Load(), 0) }})
	r := sign(t, testRequest(), k.ec, "ec")
	if _, err := v.Verify(r); err != nil {
		t.Fatal(err)
	}
	now.Store(t0 + 62) // MaxAge + skew: the last second it is fresh
	if _, err := v.Verify(r); ReasonOf(err) != ReasonReplayed {
		t.Errorf("at the end of the window: %v, want replayed", err)
	}
	now.Store(t0 + 63)
	if _, err := v.Verify(r); ReasonOf(err) != ReasonStale {
		t.Errorf("after the window: %v, want stale", err)
	}
	if s := v.Stats(); s.ReplayCapacity != 1024 || s.ReplayEvictions != 0 {
		t.Errorf("Stats %+v", s)
	}
}

// Many goroutines presenting the same signatures: each is accepted once.
func TestReplayCacheConcurrent(t *testing.T) {
	c := newReplayCache(1 << 16) // no bucket overflows: each is accepted once, exactly
	now := int64(t0) * sec
	const n = 2000
	var accepted [n]atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if c.check(testBase(i), now+60*sec, now) == replayNew {
					accepted[i].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	for i := range n {
		if a := accepted[i].Load(); a != 1 {
			t.Fatalf("signature %d accepted %d times", i, a)
		}
	}
}
