package ratelimit

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/config"
)

func startUserspace(t *testing.T, maxSources, v6Prefix int) *Running {
	t.Helper()
	r, err := Start(Settings{Mode: config.RateLimitUserspace, Port: 15443, MaxSources: maxSources, MaxConns: 256, IPv6Prefix: v6Prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// The /ratelimit view names each block's cause; a renewal keeps the first
// cause and never shortens a block.
func TestBlocksKeepTheirCause(t *testing.T) {
	r := startUserspace(t, 256, 64)
	if _, err := r.BlockFor(srcA, time.Hour, CauseHoneypot); err != nil {
		t.Fatal(err)
	}
	if _, err := r.BlockFor(srcC, time.Minute, CausePolicy); err != nil {
		t.Fatal(err)
	}
	if err := r.Block(srcB, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	b, err := r.BlockFor(srcA, time.Second, CausePolicy)
	if err != nil || !b.Renewed {
		t.Fatalf("block of a blocked source: %+v, %v; want renewed", b, err)
	}
	st := r.Status()
	want := []struct {
		ip, prefix string
		cause      Cause
		min, max   float64
	}{
		{"2001:db8::", "2001:db8::/64", CausePolicy, 59, 60},
		{"10.0.0.2", "", CauseManual, 119, 120},
		{"10.0.0.1", "", CauseHoneypot, 3599, 3600},
	}
	if len(st.Blocklist) != len(want) {
		t.Fatalf("blocklist %+v", st.Blocklist)
	}
	for i, w := range want {
		g := st.Blocklist[i]
		if g.IP != w.ip || g.Prefix != w.prefix || g.Cause != w.cause || g.RemainingSeconds < w.min || g.RemainingSeconds > w.max {
			t.Errorf("entry %d: %+v, want %+v", i, g, w)
		}
		if g.Expires.Location() != time.UTC {
			t.Errorf("entry %d: expiry %v not in UTC", i, g.Expires)
		}
	}
}

// An IPv6 block covers the source's /64: another address of it is refused
// at accept, the next /64 is not.
func TestIPv6BlocksCoverThePrefix(t *testing.T) {
	r := startUserspace(t, 256, 64)
	b, err := r.BlockFor(netip.MustParseAddr("2001:db8:1:2:aaaa::1"), time.Minute, CauseHoneypot)
	if err != nil || b.Prefix.String() != "2001:db8:1:2::/64" {
		t.Fatalf("BlockFor: %+v, %v", b, err)
	}
	if r.Userspace.AllowConn(netip.MustParseAddr("2001:db8:1:2:ffff::9")) {
		t.Error("another address of the blocked /64 was accepted")
	}
	if !r.Userspace.AllowConn(netip.MustParseAddr("2001:db8:1:3:aaaa::1")) {
		t.Error("the next /64 was refused")
	}
	lifted, ok, err := r.Lift(netip.MustParseAddr("2001:db8:1:2::77"))
	if err != nil || !ok || lifted.Prefix.String() != "2001:db8:1:2::/64" || lifted.Cause != CauseHoneypot {
		t.Fatalf("Lift: %+v %v %v", lifted, ok, err)
	}
	if _, ok, err := r.Lift(netip.MustParseAddr("2001:db8:1:2::77")); ok || err != nil {
		t.Fatalf("second Lift: %v %v, want nothing lifted", ok, err)
	}
	if !r.Userspace.AllowConn(netip.MustParseAddr("2001:db8:1:2:ffff::9")) {
		t.Error("still blocked after the prefix was unblocked")
	}
}

// The blocklist is bounded by MaxSources: one more live block is refused
// and counted, an expired one makes room.
func TestBlocklistIsBounded(t *testing.T) {
	r := startUserspace(t, 2, 64)
	if _, err := r.BlockFor(srcA, time.Hour, CauseHoneypot); err != nil {
		t.Fatal(err)
	}
	if _, err := r.BlockFor(srcB, time.Hour, CauseHoneypot); err != nil {
		t.Fatal(err)
	}
	if _, err := r.BlockFor(srcC, time.Hour, CauseHoneypot); !errors.Is(err, ErrBlocklistFull) {
		t.Fatalf("third block in a blocklist of 2: %v, want ErrBlocklistFull", err)
	}
	if _, err := r.BlockFor(srcA, 2*time.Hour, CauseHoneypot); err != nil {
		t.Fatalf("renewing a block in a full blocklist: %v", err)
	}
	if st := r.Status(); st.BlockOverflows != 1 || len(st.Blocklist) != 2 {
		t.Fatalf("overflows %d, blocks %+v; want 1 and 2", st.BlockOverflows, st.Blocklist)
	}
	if tot, err := r.Totals(); err != nil || tot.BlockOverflows != 1 || tot.Blocked != 2 {
		t.Fatalf("totals %+v, %v; want 1 overflow and 2 blocked", tot, err)
	}
	if ended := r.Sweep(time.Now().Add(90 * time.Minute)); len(ended) != 1 || ended[0].Prefix.Addr() != srcB || ended[0].Cause != CauseHoneypot {
		t.Fatalf("sweep 90 minutes on: %+v, want %s's block", ended, srcB)
	}
	if _, err := r.BlockFor(srcC, time.Hour, CausePolicy); err != nil {
		t.Fatalf("block once a block ended: %v", err)
	}
}

// Sweep reports each ended block once, and frees the enforcer's entry.
func TestSweepReportsEndedBlocksOnce(t *testing.T) {
	r := startUserspace(t, 256, 64)
	if _, err := r.BlockFor(srcA, time.Minute, CausePolicy); err != nil {
		t.Fatal(err)
	}
	if got := r.Sweep(time.Now()); len(got) != 0 {
		t.Fatalf("sweep before expiry: %+v", got)
	}
	later := time.Now().Add(2 * time.Minute)
	if got := r.Sweep(later); len(got) != 1 || got[0].Prefix != netip.PrefixFrom(srcA, 32) || got[0].Cause != CausePolicy {
		t.Fatalf("sweep after expiry: %+v", got)
	}
	if got := r.Sweep(later); len(got) != 0 {
		t.Fatalf("second sweep: %+v", got)
	}
	if r.Userspace.nblocked.Load() != 0 {
		t.Fatal("the userspace blocklist still holds the ended block")
	}
}

// BenchmarkUserspaceBlock is a block in a blocklist near its bound of
// 65536 (a flood of decoy hitters): one shard's lock, no copy of the list.
func BenchmarkUserspaceBlock(b *testing.B) {
	u := NewUserspace(15443, Limits{}, 1<<16)
	for i := range 1<<16 - 1 {
		if err := u.Block(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	ip := netip.MustParseAddr("11.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		if err := u.Block(ip, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAllowConnWithBlocks is the accept-time check while the
// blocklist holds sources (another's).
func BenchmarkAllowConnWithBlocks(b *testing.B) {
	u := NewUserspace(15443, Limits{}, 1024)
	if err := u.Block(srcB, time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !u.AllowConn(srcA) {
			b.Fatal("refused")
		}
	}
}
