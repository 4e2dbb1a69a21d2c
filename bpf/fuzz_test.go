package bpf

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// parsed is what the program should make of a frame.
type parsed int

const (
	parsedSkip     parsed = iota // not TCP to a limited port: untouched, uncounted
	parsedTCP                    // TCP to a limited port, from src
	parsedUnparsed               // IP whose TCP header cannot be reached: passed, counted
)

// model is ratelimit.c's parser written again in Go, plainly, to fuzz the
// C against.
func model(data []byte, limited func(uint16) bool) (parsed, netip.Addr) {
	be16 := func(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
	tcp := func(off int, src netip.Addr) (parsed, netip.Addr) {
		if len(data) < off+20 {
			return parsedUnparsed, netip.Addr{}
		}
		if !limited(be16(data[off+2:])) {
			return parsedSkip, netip.Addr{}
		}
		return parsedTCP, src
	}
	if len(data) < 14 {
		return parsedSkip, netip.Addr{}
	}
	proto, off := be16(data[12:]), 14
	if proto == 0x8100 || proto == 0x88A8 {
		if len(data) < 18 {
			return parsedSkip, netip.Addr{}
		}
		proto, off = be16(data[16:]), 18
	}
	switch proto {
	case 0x0800:
		if len(data) < off+20 {
			return parsedUnparsed, netip.Addr{}
		}
		ip := data[off:]
		switch {
		case ip[9] != 6:
			return parsedSkip, netip.Addr{}
		case be16(ip[6:])&0x1FFF != 0, ip[0]&0x0F < 5:
			return parsedUnparsed, netip.Addr{}
		}
		return tcp(off+int(ip[0]&0x0F)*4, netip.AddrFrom4([4]byte(ip[12:16])))
	case 0x86DD:
		if len(data) < off+40 {
			return parsedUnparsed, netip.Addr{}
		}
		src := netip.AddrFrom16([16]byte(data[off+8 : off+24]))
		next, cur := data[off+6], off+40
		for range 6 {
			switch next {
			case 6:
				return tcp(cur, src)
			case extHopByHop, extRouting, extDestOpts, extAH:
				if len(data) < cur+2 {
					return parsedUnparsed, netip.Addr{}
				}
				n := (int(data[cur+1]) + 1) * 8
				if next == extAH {
					n = (int(data[cur+1]) + 2) * 4
				}
				next, cur = data[cur], cur+n
			case extFragment:
				if len(data) < cur+8 {
					return parsedUnparsed, netip.Addr{}
				}
				if be16(data[cur+2:])&0xFFF8 != 0 {
					return parsedUnparsed, netip.Addr{}
				}
				next, cur = data[cur], cur+8
			case extESP, 135, 139, 140:
				return parsedUnparsed, netip.Addr{}
			default:
				return parsedSkip, netip.Addr{}
			}
		}
		if next == 6 {
			return tcp(cur, src)
		}
		return parsedUnparsed, netip.Addr{}
	}
	return parsedSkip, netip.Addr{}
}

// FuzzProgram feeds both programs arbitrary frames and checks each verdict
// and counter against model, with two sources blocked and no rate limits.
func FuzzProgram(f *testing.F) {
	ack4 := with(syn4(1000), func(f *frame) { f.flags = tcpACK })
	for _, fr := range []frame{
		syn4(1000), syn6(1000), ack4,
		with(ack4, func(f *frame) { f.src = cli4b }),
		with(ack4, func(f *frame) { f.dport = 80 }),
		with(ack4, func(f *frame) { f.vlan = true }),
		with(ack4, func(f *frame) { f.ipv4Options = 12 }),
		with(ack4, func(f *frame) { f.fragOffset = 100 }),
		with(ack4, func(f *frame) { f.proto = 17 }),
		with(syn6(1000), func(f *frame) { f.ext = []byte{extHopByHop, extRouting, extFragment, extAH, extDestOpts} }),
		with(syn6(1000), func(f *frame) { f.ext = []byte{extFragment}; f.fragOffset = 3 }),
		with(syn6(1000), func(f *frame) { f.ext = []byte{extESP} }),
		with(syn6(1000), func(f *frame) { f.ext = []byte{60, 60, 60, 60, 60, 60, 60} }),
		with(syn6(1000), func(f *frame) { f.truncate = 60 }),
		{etherType: 0x0806},
	} {
		f.Add(fr.bytes())
	}
	l := loadTest(f, Config{Port: inPort, Ports: []uint16{80}})
	blocked := map[netip.Addr]bool{cli4: true, cli6: true}
	for a := range blocked {
		if err := l.Block(a, time.Hour); err != nil {
			f.Fatal(err)
		}
	}
	limited := func(p uint16) bool { return p == inPort || p == 80 }

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 14 || len(data) > 1500 {
			t.Skip("prog.Run takes 14 to about 3,500 bytes")
		}
		what, src := model(data, limited)
		var want Counters
		switch {
		case what == parsedUnparsed:
			want.Unparsed = 1
		case what == parsedTCP && blocked[src.Unmap()]:
			want.DroppedBlocked = 1
		case what == parsedTCP:
			want.Passed = 1
		}
		// BPF_PROG_TEST_RUN refuses an skb whose ethertype says IP when
		// an IP header does not follow.
		et := binary.BigEndian.Uint16(data[12:])
		tcRuns := (et != 0x0800 || len(data) >= 14+20) && (et != 0x86DD || len(data) >= 14+40)
		for _, h := range hooks {
			if h.name == "tc" && !tcRuns {
				continue
			}
			before := counters(t, l)
			ret, err := h.prog(l).Run(&ebpf.RunOptions{Data: data})
			if err != nil {
				t.Fatal(err)
			}
			after := counters(t, l)
			got := Counters{
				Passed:            after.Passed - before.Passed,
				DroppedBlocked:    after.DroppedBlocked - before.DroppedBlocked,
				DroppedConnRate:   after.DroppedConnRate - before.DroppedConnRate,
				DroppedPacketRate: after.DroppedPacketRate - before.DroppedPacketRate,
				Unparsed:          after.Unparsed - before.Unparsed,
			}
			wantRet := h.pass
			if want.DroppedBlocked == 1 {
				wantRet = h.drop
			}
			if ret != wantRet || got != want {
				t.Fatalf("%s: verdict %#x, counted %+v; want %#x, %+v (model: %d from %v)\n% x",
					h.name, ret, got, wantRet, want, what, src, data)
			}
		}
	})
}
