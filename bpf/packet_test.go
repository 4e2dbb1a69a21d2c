package bpf

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// TCP flags.
const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

// IPv6 extension header types the tests build.
const (
	extHopByHop = 0
	extRouting  = 43
	extFragment = 44
	extESP      = 50
	extAH       = 51
	extDestOpts = 60
)

// frame describes a synthetic Ethernet frame carrying a TCP segment (or,
// with proto, another IP protocol).
type frame struct {
	src, dst     netip.Addr // IPv4 or IPv6; both the same family
	sport, dport uint16
	flags        byte             // TCP flags
	proto        byte             // IP protocol; 0 means TCP
	vlan         bool             // one 802.1Q tag
	ipv4Options  int              // bytes of IPv4 options (a multiple of 4)
	ext          []byte           // IPv6 extension headers before the payload, in order
	fragOffset   uint16           // IPv4: the flags and offset field; IPv6: the offset in 8-byte units
	payload      int              // bytes of TCP payload
	truncate     int              // if > 0, the frame is cut to this length
	srcMAC       net.HardwareAddr // zero if nil
	dstMAC       net.HardwareAddr
	etherType    uint16 // if set, replaces the IP ethertype (and the frame has no IP)
}

func (f frame) bytes() []byte {
	b := make([]byte, 0, 256)
	b = append(b, pad6(f.dstMAC)...)
	b = append(b, pad6(f.srcMAC)...)
	if f.vlan {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, 42)
	}
	if f.etherType != 0 {
		b = binary.BigEndian.AppendUint16(b, f.etherType)
		return append(b, make([]byte, 28)...) // an ARP-sized body
	}
	proto := f.proto
	if proto == 0 {
		proto = 6
	}
	l4 := f.l4(proto)
	if f.src.Is4() {
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		b = append(b, f.ipv4(proto, l4)...)
	} else {
		b = binary.BigEndian.AppendUint16(b, 0x86DD)
		b = append(b, f.ipv6(proto, l4)...)
	}
	if f.truncate > 0 && f.truncate < len(b) {
		b = b[:f.truncate]
	}
	return b
}

func pad6(mac net.HardwareAddr) []byte {
	if len(mac) == 6 {
		return mac
	}
	return make([]byte, 6)
}

// l4 is the TCP header and payload (or, for another protocol, 8 bytes
// with the ports first, like UDP), checksummed.
func (f frame) l4(proto byte) []byte {
	if proto != 6 {
		h := make([]byte, 8+f.payload)
		binary.BigEndian.PutUint16(h[0:], f.sport)
		binary.BigEndian.PutUint16(h[2:], f.dport)
		binary.BigEndian.PutUint16(h[4:], uint16(len(h)))
		return h
	}
	h := make([]byte, 20+f.payload)
	binary.BigEndian.PutUint16(h[0:], f.sport)
	binary.BigEndian.PutUint16(h[2:], f.dport)
	binary.BigEndian.PutUint32(h[4:], 1000) // seq
	if f.flags&tcpACK != 0 {
		binary.BigEndian.PutUint32(h[8:], 2000)
	}
	h[12] = 5 << 4
	h[13] = f.flags
	binary.BigEndian.PutUint16(h[14:], 65535)
	sum := pseudoHeaderSum(f.src, f.dst, 6, len(h))
	binary.BigEndian.PutUint16(h[16:], checksum(sum, h))
	return h
}

func (f frame) ipv4(proto byte, l4 []byte) []byte {
	hl := 20 + f.ipv4Options
	h := make([]byte, hl, hl+len(l4))
	h[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(h[2:], uint16(hl+len(l4)))
	binary.BigEndian.PutUint16(h[4:], 7)            // id
	binary.BigEndian.PutUint16(h[6:], f.fragOffset) // flags and offset
	h[8] = 64
	h[9] = proto
	s, d := f.src.As4(), f.dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	for i := 20; i < hl; i++ {
		h[i] = 1 // NOP options
	}
	binary.BigEndian.PutUint16(h[10:], checksum(0, h))
	return append(h, l4...)
}

func (f frame) ipv6(proto byte, l4 []byte) []byte {
	var exts []byte
	next := proto
	// Built from the innermost header outwards, so each knows its next.
	for i := len(f.ext) - 1; i >= 0; i-- {
		var e []byte
		switch f.ext[i] {
		case extFragment:
			e = make([]byte, 8)
			binary.BigEndian.PutUint16(e[2:], f.fragOffset<<3)
			binary.BigEndian.PutUint32(e[4:], 99)
		case extAH:
			e = make([]byte, 16) // (hdrlen+2)*4 = 16: hdrlen 2
			e[1] = 2
		case extESP:
			e = make([]byte, 8) // SPI and sequence; the rest is ciphertext
		default: // hop-by-hop, routing, destination options: 16 bytes
			e = make([]byte, 16)
			e[1] = 1
			if f.ext[i] != extRouting {
				e[2] = 1 // PadN
				e[3] = 12
			}
		}
		e[0] = next
		next = f.ext[i]
		exts = append(e, exts...)
	}
	h := make([]byte, 40, 40+len(exts)+len(l4))
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(exts)+len(l4)))
	h[6] = next
	h[7] = 64
	s, d := f.src.As16(), f.dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	h = append(h, exts...)
	return append(h, l4...)
}

func pseudoHeaderSum(src, dst netip.Addr, proto byte, length int) uint32 {
	var sum uint32
	for _, b := range [][]byte{src.AsSlice(), dst.AsSlice()} {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
	}
	return sum + uint32(proto) + uint32(length)
}

func checksum(sum uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xFFFF + sum>>16
	}
	return ^uint16(sum)
}
