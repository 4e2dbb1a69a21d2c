package ratelimit

import (
	"net/netip"
	"testing"
	"time"
)

// fakeClock drives a Userspace limiter's monotonic clock by hand.
type fakeClock struct{ t time.Duration }

func newTestLimiter(l Limits, maxSources int) (*Userspace, *fakeClock) {
	u := NewUserspace(15443, l, maxSources)
	c := &fakeClock{t: time.Hour}
	u.clock = func() time.Duration { return c.t }
	return u, c
}

var (
	srcA = netip.MustParseAddr("10.0.0.1")
	srcB = netip.MustParseAddr("10.0.0.2")
	srcC = netip.MustParseAddr("2001:db8::7")
)

func countConns(u *Userspace, ip netip.Addr, n int) (allowed int) {
	for range n {
		if u.AllowConn(ip) {
			allowed++
		}
	}
	return allowed
}

func TestConnRatePerSource(t *testing.T) {
	u, clk := newTestLimiter(Limits{ConnRate: 10, ConnBurst: 5}, 1024)

	if got := countConns(u, srcA, 20); got != 5 {
		t.Fatalf("a burst of 20 connections from one source: %d allowed, want the burst of 5", got)
	}
	if got := countConns(u, srcB, 5); got != 5 {
		t.Fatalf("another source was limited by the first one's flood: %d of 5 allowed", got)
	}
	if got := countConns(u, srcC, 6); got != 5 {
		t.Fatalf("IPv6 source: %d of 6 allowed, want 5", got)
	}
	// At 10/s, 300 ms refill 3 tokens.
	clk.t += 300 * time.Millisecond
	if got := countConns(u, srcA, 10); got != 3 {
		t.Fatalf("after 300 ms at 10/s: %d allowed, want 3", got)
	}
	st := u.Status()
	if st.Counters.Passed != 18 || st.Counters.Dropped.ConnRate != 23 {
		t.Fatalf("counters: passed %d, conn_rate drops %d; want 18 and 23", st.Counters.Passed, st.Counters.Dropped.ConnRate)
	}
	want := []SourceDrops{{IP: "10.0.0.1", Dropped: 22}, {IP: "2001:db8::7", Dropped: 1}}
	if len(st.TopSources) != 2 || st.TopSources[0] != want[0] || st.TopSources[1] != want[1] {
		t.Fatalf("top sources: %+v, want %+v", st.TopSources, want)
	}
}

func TestBurstDefaultsToRate(t *testing.T) {
	u, _ := newTestLimiter(Limits{ConnRate: 4}, 1024)
	if got := countConns(u, srcA, 10); got != 4 {
		t.Fatalf("burst 0 with rate 4: %d allowed, want 4", got)
	}
}

func TestUnlimitedByDefault(t *testing.T) {
	u, _ := newTestLimiter(Limits{}, 1024)
	if got := countConns(u, srcA, 1000); got != 1000 {
		t.Fatalf("no limits: %d of 1000 connections allowed", got)
	}
	var b uint64
	for i := range 1000 {
		if ok, _ := u.AllowRequest(srcA, &b); !ok {
			t.Fatalf("no limits: request %d refused", i)
		}
	}
}

func TestRequestRatePerConnection(t *testing.T) {
	u, clk := newTestLimiter(Limits{PacketRate: 2, PacketBurst: 3}, 1024)
	var b1, b2 uint64
	for i := range 3 {
		if ok, _ := u.AllowRequest(srcA, &b1); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := u.AllowRequest(srcA, &b1)
	if ok {
		t.Fatal("fourth request within the burst of 3 was allowed")
	}
	if wait != 500*time.Millisecond {
		t.Fatalf("retry after %v, want 500ms (one request at 2/s)", wait)
	}
	if ok, _ := u.AllowRequest(srcA, &b2); !ok {
		t.Fatal("a second connection from the same source shares the first one's bucket")
	}
	clk.t += wait
	if ok, _ := u.AllowRequest(srcA, &b1); !ok {
		t.Fatal("refused after waiting the Retry-After it was given")
	}
	if st := u.Status(); st.Counters.Dropped.PacketRate != 1 || st.Counters.Passed != 5 {
		t.Fatalf("counters %+v, want 5 passed and 1 packet_rate drop", st.Counters)
	}
}

func TestBlockExpiresByItself(t *testing.T) {
	u, clk := newTestLimiter(Limits{}, 1024)
	if err := u.Block(srcA, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if u.AllowConn(srcA) {
		t.Fatal("blocked source's connection was allowed")
	}
	if !u.AllowConn(srcB) {
		t.Fatal("unblocked source refused")
	}
	// A connection opened before the block is refused too, until expiry.
	var b uint64
	clk.t += 500 * time.Millisecond
	ok, wait := u.AllowRequest(srcA, &b)
	if ok || wait != 1500*time.Millisecond {
		t.Fatalf("request of a blocked source: ok=%v retry after %v; want refused for 1.5s", ok, wait)
	}
	st := u.Status()
	if len(st.Blocklist) != 1 || st.Blocklist[0].IP != "10.0.0.1" || st.Blocklist[0].RemainingSeconds != 1.5 {
		t.Fatalf("blocklist %+v, want 10.0.0.1 with 1.5 s left", st.Blocklist)
	}
	if st.Counters.Dropped.Blocked != 2 {
		t.Fatalf("blocked drops %d, want 2", st.Counters.Dropped.Blocked)
	}
	clk.t += 1500 * time.Millisecond
	if !u.AllowConn(srcA) {
		t.Fatal("source still blocked after its block expired")
	}
	if st := u.Status(); len(st.Blocklist) != 0 {
		t.Fatalf("expired entry still listed: %+v", st.Blocklist)
	}
}

func TestUnblockAndMappedAddresses(t *testing.T) {
	u, _ := newTestLimiter(Limits{}, 1024)
	mapped := netip.AddrFrom16(srcA.As16()) // ::ffff:10.0.0.1, as a dual-stack listener reports it
	if err := u.Block(mapped, time.Minute); err != nil {
		t.Fatal(err)
	}
	if u.AllowConn(srcA) {
		t.Fatal("a block of ::ffff:10.0.0.1 did not block 10.0.0.1")
	}
	if err := u.Unblock(srcA); err != nil {
		t.Fatal(err)
	}
	if !u.AllowConn(mapped) {
		t.Fatal("still blocked after Unblock")
	}
}

func TestBlockRefusesBadInput(t *testing.T) {
	u, _ := newTestLimiter(Limits{}, 1024)
	for _, tc := range []struct {
		ip netip.Addr
		d  time.Duration
	}{{netip.Addr{}, time.Minute}, {srcA, 0}, {srcA, -time.Second}, {srcA, 25 * time.Hour}} {
		if err := u.Block(tc.ip, tc.d); err == nil {
			t.Errorf("Block(%v, %v) accepted", tc.ip, tc.d)
		}
	}
}

func TestSourcesAreBounded(t *testing.T) {
	u, _ := newTestLimiter(Limits{ConnRate: 1}, 64)
	for i := range 10000 {
		u.AllowConn(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}))
	}
	total := 0
	for i := range u.shards {
		total += len(u.shards[i].m)
		if u.shards[i].lru.Len() != len(u.shards[i].m) {
			t.Fatal("LRU list and map disagree")
		}
	}
	if total > 64 {
		t.Fatalf("%d sources kept, limit 64", total)
	}
}

func TestTopSourcesOrder(t *testing.T) {
	got := TopSources([]SourceDrops{{"10.0.0.3", 5}, {"10.0.0.1", 9}, {"10.0.0.2", 5}, {"::1", 1}}, 3)
	want := []SourceDrops{{"10.0.0.1", 9}, {"10.0.0.2", 5}, {"10.0.0.3", 5}}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func BenchmarkAllowRequestUnlimited(b *testing.B) {
	u := NewUserspace(15443, Limits{}, 1024)
	var bk uint64
	b.ReportAllocs()
	for b.Loop() {
		u.AllowRequest(srcA, &bk)
	}
}

func BenchmarkAllowRequestLimited(b *testing.B) {
	u := NewUserspace(15443, Limits{PacketRate: 1_000_000_000}, 1024)
	var bk uint64
	b.ReportAllocs()
	for b.Loop() {
		u.AllowRequest(srcA, &bk)
	}
}

// Totals, what metrics read at each scrape, agree with Status and count
// only the blocks in force.
func TestTotalsAgreeWithStatus(t *testing.T) {
	u, clk := newTestLimiter(Limits{ConnRate: 10, ConnBurst: 2, PacketRate: 1, PacketBurst: 1}, 1024)
	countConns(u, srcA, 5)
	var tat uint64
	u.AllowRequest(srcB, &tat)
	u.AllowRequest(srcB, &tat)
	if err := u.Block(srcC, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := u.Block(srcB, time.Second); err != nil {
		t.Fatal(err)
	}
	u.AllowConn(srcC)

	got, err := u.Totals()
	if err != nil {
		t.Fatal(err)
	}
	want := Totals{Mode: "userspace", Blocked: 2, Counters: Counters{
		Passed: 3, Dropped: DropCounters{ConnRate: 3, PacketRate: 1, Blocked: 1},
	}}
	if got != want {
		t.Fatalf("totals %+v, want %+v", got, want)
	}
	if st := u.Status(); st.Counters != got.Counters || len(st.Blocklist) != got.Blocked {
		t.Fatalf("status %+v with %d blocks, totals %+v", st.Counters, len(st.Blocklist), got)
	}
	clk.t += 2 * time.Second // srcB's block ended; no Block since swept it
	if got, _ := u.Totals(); got.Blocked != 1 {
		t.Fatalf("%d blocked after one block expired, want 1", got.Blocked)
	}
}
