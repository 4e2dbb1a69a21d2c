package bpf

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/warden-sidecar/warden/bpf/bpftest"
	"github.com/warden-sidecar/warden/internal/gcra"
)

// Verdicts as prog.Run reports them.
const (
	xdpDrop = 1
	xdpPass = 2
	tcShot  = 2
	tcNext  = 0xFFFFFFFF // TC_ACT_UNSPEC (-1), TCX_NEXT
)

// hook is one of the two programs, with its verdict codes.
type hook struct {
	name       string
	prog       func(*Limiter) *ebpf.Program
	pass, drop uint32
}

var hooks = []hook{
	{"xdp", func(l *Limiter) *ebpf.Program { return l.objs.WardenXdp }, xdpPass, xdpDrop},
	{"tc", func(l *Limiter) *ebpf.Program { return l.objs.WardenTc }, tcNext, tcShot},
}

var (
	cli4   = netip.MustParseAddr("192.0.2.10")
	cli4b  = netip.MustParseAddr("192.0.2.11")
	srv4   = netip.MustParseAddr("198.51.100.1")
	cli6   = netip.MustParseAddr("2001:db8::10")
	cli6b  = netip.MustParseAddr("2001:db8::11")
	srv6   = netip.MustParseAddr("2001:db8:1::1")
	inPort = uint16(8443)
)

func syn4(sport uint16) frame {
	return frame{src: cli4, dst: srv4, sport: sport, dport: inPort, flags: tcpSYN}
}

func syn6(sport uint16) frame {
	return frame{src: cli6, dst: srv6, sport: sport, dport: inPort, flags: tcpSYN}
}

func with(f frame, change func(*frame)) frame {
	change(&f)
	return f
}

// loadTest loads a Limiter with small maps, closed when t ends.
func loadTest(t testing.TB, cfg Config) *Limiter {
	t.Helper()
	bpftest.RequirePrivileged(t)
	if cfg.Port == 0 && len(cfg.Ports) == 0 {
		cfg.Port = inPort
	}
	if cfg.MaxSources == 0 {
		cfg.MaxSources = 1024
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = 1024
	}
	l, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

func run(t testing.TB, p *ebpf.Program, f frame) uint32 {
	t.Helper()
	ret, err := p.Run(&ebpf.RunOptions{Data: f.bytes()})
	if err != nil {
		t.Fatal(err)
	}
	return ret
}

func counters(t testing.TB, l *Limiter) Counters {
	t.Helper()
	c, err := l.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerdicts(t *testing.T) {
	type step struct {
		f    frame
		drop bool
	}
	// pass and drop make steps of n copies of f.
	pass := func(n int, f frame) []step { return slices.Repeat([]step{{f, false}}, n) }
	drop := func(n int, f frame) []step { return slices.Repeat([]step{{f, true}}, n) }
	seq := func(parts ...[]step) []step { return slices.Concat(parts...) }

	ack4 := with(syn4(1000), func(f *frame) { f.flags = tcpACK })
	synAck4 := with(syn4(1000), func(f *frame) { f.flags = tcpSYN | tcpACK })
	exts := func(n int) []byte { return slices.Repeat([]byte{extDestOpts}, n) }

	tests := []struct {
		name    string
		cfg     Config
		block   []netip.Addr
		steps   []step
		want    Counters
		dropped []SourceStat
	}{
		{
			name:  "IPv4 and IPv6 SYNs under the limits pass and are counted",
			cfg:   Config{ConnRate: 10, PacketRate: 10},
			steps: seq(pass(1, syn4(1000)), pass(1, syn6(1000)), pass(1, ack4)),
			want:  Counters{Passed: 3},
		},
		{
			name: "traffic to other ports and other protocols is untouched and uncounted",
			cfg:  Config{ConnRate: 1, ConnBurst: 1},
			steps: seq(
				pass(5, with(syn4(1000), func(f *frame) { f.dport = 8080 })),
				pass(3, with(syn6(1000), func(f *frame) { f.dport = 8080 })),
				pass(3, with(syn4(1000), func(f *frame) { f.proto = 17 })),
				pass(3, with(syn6(1000), func(f *frame) { f.proto = 17 })),
				pass(2, frame{etherType: 0x0806}),
			),
		},
		{
			name: "a source over its SYN rate is dropped, another source and non-SYNs are not",
			cfg:  Config{ConnRate: 1, ConnBurst: 3},
			steps: seq(
				pass(3, syn4(1000)), drop(2, syn4(1001)),
				pass(3, with(syn4(1000), func(f *frame) { f.src = cli4b })),
				pass(2, ack4), pass(1, synAck4),
				pass(3, syn6(1000)), drop(1, syn6(1000)),
			),
			want:    Counters{Passed: 12, DroppedConnRate: 3},
			dropped: []SourceStat{{cli4, 2}, {cli6, 1}},
		},
		{
			name:    "burst 0 means a bucket as large as the rate",
			cfg:     Config{ConnRate: 4},
			steps:   seq(pass(4, syn4(1000)), drop(1, syn4(1000))),
			want:    Counters{Passed: 4, DroppedConnRate: 1},
			dropped: []SourceStat{{cli4, 1}},
		},
		{
			name: "a connection over its packet rate is dropped, other connections are not",
			cfg:  Config{PacketRate: 1, PacketBurst: 4},
			steps: seq(
				pass(4, ack4), drop(2, ack4),
				pass(4, with(ack4, func(f *frame) { f.sport = 1001 })),
				pass(4, with(ack4, func(f *frame) { f.dst = netip.MustParseAddr("198.51.100.2") })),
				pass(4, syn6(2000)), drop(1, syn6(2000)),
			),
			want:    Counters{Passed: 16, DroppedPacketRate: 3},
			dropped: []SourceStat{{cli4, 2}, {cli6, 1}},
		},
		{
			name: "the SYN bucket is checked before the packet bucket",
			cfg:  Config{ConnRate: 1, ConnBurst: 2, PacketRate: 1, PacketBurst: 3},
			// The third SYN finds the source bucket empty, so the packet
			// bucket is not charged: one ACK still passes.
			steps:   seq(pass(2, syn4(1000)), drop(1, syn4(1000)), pass(1, ack4), drop(1, ack4)),
			want:    Counters{Passed: 3, DroppedConnRate: 1, DroppedPacketRate: 1},
			dropped: []SourceStat{{cli4, 2}},
		},
		{
			name:    "a blocked source is dropped whatever the packet, others pass",
			cfg:     Config{},
			block:   []netip.Addr{cli4, cli6},
			steps:   seq(drop(2, syn4(1000)), drop(1, ack4), drop(1, syn6(1000)), pass(1, with(ack4, func(f *frame) { f.src = cli4b }))),
			want:    Counters{Passed: 1, DroppedBlocked: 4},
			dropped: []SourceStat{{cli4, 3}, {cli6, 1}},
		},
		{
			name:  "a blocked source's packets to other ports pass",
			cfg:   Config{},
			block: []netip.Addr{cli4},
			steps: pass(2, with(ack4, func(f *frame) { f.dport = 22 })),
		},
		{
			name:  "Ports are limited like Port",
			cfg:   Config{Port: 1, Ports: []uint16{inPort, 65535}},
			block: []netip.Addr{cli4},
			steps: seq(
				drop(1, ack4),
				drop(1, with(ack4, func(f *frame) { f.dport = 65535 })),
				drop(1, with(ack4, func(f *frame) { f.dport = 1 })),
				pass(1, with(ack4, func(f *frame) { f.dport = 2 })),
			),
			want:    Counters{DroppedBlocked: 3},
			dropped: []SourceStat{{cli4, 3}},
		},
		{
			name:  "headers are found behind a VLAN tag, IPv4 options and IPv6 extension headers",
			cfg:   Config{},
			block: []netip.Addr{cli4, cli6},
			steps: seq(
				drop(1, with(ack4, func(f *frame) { f.vlan = true })),
				drop(1, with(syn6(1000), func(f *frame) { f.vlan = true })),
				drop(1, with(ack4, func(f *frame) { f.ipv4Options = 40 })),
				drop(1, with(syn6(1000), func(f *frame) {
					f.ext = []byte{extHopByHop, extRouting, extFragment, extAH, extDestOpts}
				})),
				drop(1, with(syn6(1000), func(f *frame) { f.ext = exts(6) })),
			),
			want:    Counters{DroppedBlocked: 5},
			dropped: []SourceStat{{cli6, 3}, {cli4, 2}},
		},
		{
			name:  "what hides the TCP header passes and is counted as unparsed",
			cfg:   Config{},
			block: []netip.Addr{cli4, cli6},
			steps: seq(
				pass(1, with(ack4, func(f *frame) { f.fragOffset = 100 })),
				pass(1, with(syn6(1000), func(f *frame) { f.ext, f.fragOffset = []byte{extFragment}, 100 })),
				pass(1, with(syn6(1000), func(f *frame) { f.ext = exts(7) })),
				pass(1, with(syn6(1000), func(f *frame) { f.ext = []byte{extESP} })),
				pass(1, with(ack4, func(f *frame) { f.truncate = 14 + 20 + 10 })),
				pass(1, with(syn6(1000), func(f *frame) { f.truncate = 14 + 40 + 10 })),
			),
			want: Counters{Unparsed: 6},
		},
		{
			name:  "IPv4 first fragments are parsed",
			cfg:   Config{},
			block: []netip.Addr{cli4},
			// More-fragments set, offset 0: the TCP header is there.
			steps:   drop(1, with(ack4, func(f *frame) { f.fragOffset = 0x2000 })),
			want:    Counters{DroppedBlocked: 1},
			dropped: []SourceStat{{cli4, 1}},
		},
	}
	for _, h := range hooks {
		for _, tt := range tests {
			t.Run(h.name+"/"+tt.name, func(t *testing.T) {
				l := loadTest(t, tt.cfg)
				for _, a := range tt.block {
					if err := l.Block(a, time.Minute); err != nil {
						t.Fatal(err)
					}
				}
				for i, s := range tt.steps {
					want := h.pass
					if s.drop {
						want = h.drop
					}
					if got := run(t, h.prog(l), s.f); got != want {
						t.Fatalf("packet %d (%+v): verdict %#x, want %#x", i, s.f, got, want)
					}
				}
				if got := counters(t, l); got != tt.want {
					t.Errorf("counters %+v, want %+v", got, tt.want)
				}
				top, err := l.TopSources(0)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(top, tt.dropped) {
					t.Errorf("top sources %v, want %v", top, tt.dropped)
				}
			})
		}
	}
}

func TestBlockExpiresAndUnblock(t *testing.T) {
	for _, h := range hooks {
		t.Run(h.name, func(t *testing.T) {
			l := loadTest(t, Config{})
			p := h.prog(l)
			// Expired before the packet arrives: as if absent.
			if err := l.Block(cli4, time.Nanosecond); err != nil {
				t.Fatal(err)
			}
			if got := run(t, p, syn4(1)); got != h.pass {
				t.Fatalf("expired block: verdict %#x, want pass", got)
			}
			if got, err := l.Blocked(); err != nil || len(got) != 0 {
				t.Fatalf("Blocked() = %v, %v; want none (expired)", got, err)
			}

			before := time.Now()
			if err := l.Block(cli6, time.Hour); err != nil {
				t.Fatal(err)
			}
			if got := run(t, p, syn6(1)); got != h.drop {
				t.Fatalf("blocked: verdict %#x, want drop", got)
			}
			got, err := l.Blocked()
			if err != nil || len(got) != 1 || got[0].Addr != cli6 ||
				got[0].Expires.Before(before.Add(time.Hour)) || got[0].Expires.After(time.Now().Add(time.Hour)) {
				t.Fatalf("Blocked() = %v, %v; want %s for an hour from %v", got, err, cli6, before)
			}
			if err := l.Unblock(cli6); err != nil {
				t.Fatal(err)
			}
			if err := l.Unblock(cli6); err != nil {
				t.Fatalf("second Unblock: %v", err)
			}
			if got := run(t, p, syn6(1)); got != h.pass {
				t.Fatalf("unblocked: verdict %#x, want pass", got)
			}
			// IPv4-mapped IPv6 is the same source as IPv4.
			if err := l.Block(netip.MustParseAddr("::ffff:"+cli4.String()), time.Hour); err != nil {
				t.Fatal(err)
			}
			if got := run(t, p, syn4(1)); got != h.drop {
				t.Fatalf("blocked as IPv4-mapped: verdict %#x, want drop", got)
			}
			if got, _ := l.Blocked(); len(got) != 1 || got[0].Addr != cli4 {
				t.Fatalf("Blocked() = %v, want %s unmapped", got, cli4)
			}
		})
	}
}

// An IPv6 block covers the configured prefix, in the kernel's lookup as in
// the key Block writes; IPv4 stays per address.
func TestBlockIPv6Prefix(t *testing.T) {
	for _, tc := range []struct {
		prefix       int
		sameSlash64  uint32 // verdict for another address of cli6's /64
		otherSlash64 uint32
	}{{64, xdpDrop, xdpPass}, {0, xdpPass, xdpPass}, {128, xdpPass, xdpPass}, {48, xdpDrop, xdpDrop}} {
		t.Run(fmt.Sprint(tc.prefix), func(t *testing.T) {
			l := loadTest(t, Config{IPv6Prefix: tc.prefix})
			p := l.objs.WardenXdp
			if err := l.Block(cli6, time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := l.Block(cli4, time.Hour); err != nil {
				t.Fatal(err)
			}
			from := func(a string) frame { return with(syn6(1), func(f *frame) { f.src = netip.MustParseAddr(a) }) }
			if got := run(t, p, syn6(1)); got != xdpDrop {
				t.Fatalf("the blocked address: verdict %#x, want drop", got)
			}
			if got := run(t, p, from("2001:db8::ffff:1:2:3")); got != tc.sameSlash64 {
				t.Errorf("another address of its /64: verdict %#x, want %#x", got, tc.sameSlash64)
			}
			if got := run(t, p, from("2001:db8:0:1::10")); got != tc.otherSlash64 {
				t.Errorf("the same host part in the next /64: verdict %#x, want %#x", got, tc.otherSlash64)
			}
			if got := run(t, p, with(syn4(1), func(f *frame) { f.src = cli4b })); got != xdpPass {
				t.Errorf("the next IPv4 address: verdict %#x, want pass", got)
			}
			if err := l.Unblock(netip.MustParseAddr("2001:db8::ffff:1:2:3")); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]uint32{true: xdpPass, false: xdpDrop}[tc.sameSlash64 == xdpDrop]; run(t, p, syn6(1)) != want {
				t.Errorf("after unblocking another address of the prefix: want %#x", want)
			}
		})
	}
}

func TestBlocklistFull(t *testing.T) {
	l := loadTest(t, Config{MaxSources: 2})
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	if err := l.Block(a, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.Block(b, time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	// Full, but b has expired: its entry makes room.
	if err := l.Block(c, time.Hour); err != nil {
		t.Fatalf("block with an expired entry to reuse: %v", err)
	}
	if err := l.Block(b, time.Hour); err == nil {
		t.Fatal("blocking a third live source in a blocklist of 2 succeeded")
	}
	got, err := l.Blocked()
	if err != nil || len(got) != 2 {
		t.Fatalf("Blocked() = %v, %v; want %s and %s", got, err, a, c)
	}
}

func TestSetLimits(t *testing.T) {
	l := loadTest(t, Config{Port: inPort})
	p := l.objs.WardenXdp
	if err := l.Block(cli4, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := run(t, p, syn4(1)); got != xdpDrop {
		t.Fatalf("verdict %#x, want drop", got)
	}
	// Another port: the old one is no longer limited.
	if err := l.SetLimits(Config{Port: 9000, ConnRate: 1, ConnBurst: 1}); err != nil {
		t.Fatal(err)
	}
	if got := run(t, p, syn4(1)); got != xdpPass {
		t.Fatalf("after the port changed: verdict %#x, want pass", got)
	}
	if err := l.Unblock(cli4); err != nil {
		t.Fatal(err)
	}
	on9000 := with(syn4(1), func(f *frame) { f.dport = 9000 })
	if got := run(t, p, on9000); got != xdpPass {
		t.Fatalf("first SYN on the new port: verdict %#x, want pass", got)
	}
	if got := run(t, p, on9000); got != xdpDrop {
		t.Fatalf("second SYN at 1/s burst 1: verdict %#x, want drop", got)
	}
	// Unlimited again.
	if err := l.SetLimits(Config{Port: 9000}); err != nil {
		t.Fatal(err)
	}
	if got := run(t, p, on9000); got != xdpPass {
		t.Fatalf("unlimited: verdict %#x, want pass", got)
	}
	if err := l.SetLimits(Config{Port: 9000, MaxSources: 5}); err == nil {
		t.Fatal("SetLimits changed MaxSources")
	}
	if err := l.SetLimits(Config{}); err == nil {
		t.Fatal("SetLimits accepted no port")
	}
}

// TestKernelStepIsGCRA checks that the program steps a bucket exactly as
// internal/gcra does, from the TAT it finds to the verdict and the TAT it
// leaves, so that the kernel and the userspace limiter cannot drift apart.
// Each TAT is set relative to the kernel's clock with a margin of 10ms
// around the boundary, far more than the time the run takes.
func TestKernelStepIsGCRA(t *testing.T) {
	const ms = int64(time.Millisecond)
	p := gcra.New(10, 3) // interval 100ms, tolerance 300ms
	tests := []struct {
		name  string
		ahead int64 // the bucket's TAT minus now, in ns
	}{
		{"a TAT long past is a full bucket", -3600_000 * ms},
		{"a TAT just past", -10 * ms},
		{"a TAT ahead by a token", 100 * ms},
		{"a TAT ahead, the last token left", 190 * ms},
		{"a TAT ahead by the burst: refused", 210 * ms},
		{"a TAT far ahead: refused", 1000 * ms},
	}
	monotonic := func() uint64 {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatal(err)
		}
		return uint64(ts.Nano()) // bpf_ktime_get_ns's clock
	}
	for _, h := range hooks {
		for _, tt := range tests {
			t.Run(h.name+"/"+tt.name, func(t *testing.T) {
				l := loadTest(t, Config{ConnRate: 10, ConnBurst: 3})
				var cfg ratelimitLimits
				if err := l.objs.Config.Lookup(uint32(0), &cfg); err != nil {
					t.Fatal(err)
				}
				if cfg.ConnIntervalNs != p.Interval || cfg.ConnLimitNs != p.Tolerance {
					t.Fatalf("config map holds %d, %d; gcra %+v", cfg.ConnIntervalNs, cfg.ConnLimitNs, p)
				}
				key := ratelimitSourceKey{Addr: cli4.As16()}
				before := monotonic()
				tat := uint64(int64(before) + tt.ahead)
				if err := l.objs.Sources.Put(key, ratelimitSourceState{TatNs: tat}); err != nil {
					t.Fatal(err)
				}
				ret := run(t, h.prog(l), syn4(1))
				after := monotonic()
				var got ratelimitSourceState
				if err := l.objs.Sources.Lookup(key, &got); err != nil {
					t.Fatal(err)
				}
				lo, ok, _ := p.Next(tat, before)
				hi, okAfter, _ := p.Next(tat, after)
				if ok != okAfter {
					t.Fatalf("the run took too long to tell (%v)", time.Duration(after-before))
				}
				if passed := ret == h.pass; passed != ok {
					t.Fatalf("kernel passed=%v, gcra admits=%v", passed, ok)
				}
				if !ok {
					lo, hi = tat, tat
				}
				if got.TatNs < lo || got.TatNs > hi {
					t.Errorf("kernel left TAT %d, gcra between %d and %d", got.TatNs, lo, hi)
				}
			})
		}
	}
}

// TestConcurrentBucket runs the program on both CPUs at once against one
// source's SYN bucket: compare-and-swap must admit exactly the burst (plus
// what the rate refills meanwhile), never more.
func TestConcurrentBucket(t *testing.T) {
	const burst = 1000
	for _, h := range hooks {
		t.Run(h.name, func(t *testing.T) {
			l := loadTest(t, Config{ConnRate: 1, ConnBurst: burst})
			data := syn4(1).bytes()
			start := time.Now()
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for range 4 {
				wg.Go(func() {
					_, err := h.prog(l).Run(&ebpf.RunOptions{Data: data, Repeat: 50000})
					errs <- err
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			c := counters(t, l)
			refill := uint64(elapsed / time.Second) // none in under a second
			if c.Passed < burst || c.Passed > burst+refill {
				t.Errorf("passed %d of %d SYNs in %v, want %d (+ at most %d refilled)",
					c.Passed, c.Passed+c.DroppedConnRate, elapsed, burst, refill)
			}
			if c.Passed+c.DroppedConnRate < 200000 {
				t.Errorf("counted %d runs, want at least 200000", c.Passed+c.DroppedConnRate)
			}
		})
	}
}

// BenchmarkProgram measures the programs per packet with BPF_PROG_TEST_RUN
// (the kernel's own timing, reported as ns/packet).
func BenchmarkProgram(b *testing.B) {
	ack4 := with(syn4(1000), func(f *frame) { f.flags = tcpACK; f.payload = 100 })
	ack6 := with(syn6(1000), func(f *frame) { f.flags = tcpACK; f.payload = 100 })
	cases := []struct {
		name  string
		cfg   Config
		block bool
		f     frame
	}{
		{"pass/other-port", Config{ConnRate: 100, PacketRate: 1e9}, false, with(ack4, func(f *frame) { f.dport = 80 })},
		{"pass/ipv4-no-limits", Config{}, false, ack4},
		{"pass/ipv4-packet-limit", Config{ConnRate: 100, PacketRate: 1e9, PacketBurst: 1e9}, false, ack4},
		{"pass/ipv6-packet-limit", Config{ConnRate: 100, PacketRate: 1e9, PacketBurst: 1e9}, false, ack6},
		{"pass/ipv4-syn-both-limits", Config{ConnRate: 1e9, ConnBurst: 1e9, PacketRate: 1e9, PacketBurst: 1e9}, false, syn4(1)},
		{"drop/blocked", Config{ConnRate: 100, PacketRate: 1e9}, true, ack4},
		{"drop/conn-rate", Config{ConnRate: 1, ConnBurst: 1, PacketRate: 1e9}, false, syn4(1)},
		{"drop/packet-rate", Config{ConnRate: 100, PacketRate: 1, PacketBurst: 1}, false, ack4},
	}
	for _, h := range hooks {
		for _, c := range cases {
			b.Run(h.name+"/"+c.name, func(b *testing.B) {
				l := loadTest(b, c.cfg)
				if c.block {
					if err := l.Block(c.f.src, time.Hour); err != nil {
						b.Fatal(err)
					}
				}
				data := c.f.bytes()
				// Warm up: the first packet creates the buckets.
				if _, err := h.prog(l).Run(&ebpf.RunOptions{Data: data}); err != nil {
					b.Fatal(err)
				}
				ret, per, err := h.prog(l).Benchmark(data, b.N, b.ResetTimer)
				if err != nil {
					b.Fatal(err)
				}
				want := h.pass
				if c.name[:4] == "drop" {
					want = h.drop
				}
				if ret != want {
					b.Fatalf("verdict %#x, want %#x", ret, want)
				}
				b.ReportMetric(float64(per.Nanoseconds()), "ns/packet")
			})
		}
	}
}

// BenchmarkBlock is the cost of a block on the request path: the
// blocklist write (one bpf(BPF_MAP_UPDATE_ELEM) system call) that makes the
// program drop the source's next packet. Each iteration blocks another
// source, as a flood of decoy hitters would.
func BenchmarkBlock(b *testing.B) {
	l := loadTest(b, Config{MaxSources: 1 << 16, IPv6Prefix: 64})
	var i uint32
	b.ReportAllocs()
	for b.Loop() {
		i++
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if err := l.Block(ip, time.Hour); err != nil {
			b.Fatal(err)
		}
		if i == 1<<16-1 {
			b.StopTimer()
			for k := range i {
				_ = l.Unblock(netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)}))
			}
			i = 0
			b.StartTimer()
		}
	}
}
