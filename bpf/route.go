// The same platforms as limiter.go; limiter_other.go has the others.
//go:build (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm) && linux

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// InterfaceFor names the interface that traffic to addr arrives on, in the
// caller's network namespace: for an address of this host, the interface
// that holds it (the route to a local address is through lo, but packets
// to it come in on its own interface); for another address, the one the
// kernel routes it through (as `ip route get`); for an unspecified address,
// the interface of the default route (for ::, the IPv6 one if there is one,
// else the IPv4 one).
func InterfaceFor(addr netip.Addr) (string, error) {
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() {
		return "", errors.New("bpf: interface for an invalid address")
	}
	var (
		index int
		err   error
	)
	if addr.IsUnspecified() {
		index, err = defaultRouteIndex(unix.AF_INET)
		if addr.Is6() {
			if index6, err6 := defaultRouteIndex(unix.AF_INET6); err6 == nil {
				index, err = index6, nil
			}
		}
	} else {
		if name, ok, lerr := interfaceHolding(addr); lerr != nil || ok {
			return name, lerr
		}
		index, err = routeGet(addr)
	}
	if err != nil {
		return "", fmt.Errorf("bpf: interface for %s: %w", addr, err)
	}
	iface, err := net.InterfaceByIndex(index)
	if err != nil {
		return "", fmt.Errorf("bpf: interface for %s: %w", addr, err)
	}
	return iface.Name, nil
}

// interfaceHolding finds the interface addr is assigned to.
func interfaceHolding(addr netip.Addr) (string, bool, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", false, fmt.Errorf("bpf: list interfaces: %w", err)
	}
	for _, iface := range ifaces {
		addrs, err := iface.Addrs()
		if err != nil {
			return "", false, fmt.Errorf("bpf: addresses of %s: %w", iface.Name, err)
		}
		for _, a := range addrs {
			ipnet, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if ip, ok := netip.AddrFromSlice(ipnet.IP); ok && ip.Unmap() == addr {
				return iface.Name, true, nil
			}
		}
	}
	return "", false, nil
}

// routeGet asks the kernel (RTM_GETROUTE with RTA_DST) which interface it
// would send a packet to dst through.
func routeGet(dst netip.Addr) (int, error) {
	family, bits := byte(unix.AF_INET), byte(32)
	if dst.Is6() {
		family, bits = unix.AF_INET6, 128
	}
	a := dst.AsSlice()
	rtaLen := unix.SizeofRtAttr + len(a)
	size := unix.SizeofNlMsghdr + unix.SizeofRtMsg + rtaLen // rtaLen is 8 or 20: aligned
	req := make([]byte, size)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(size))
	ne.PutUint16(req[4:], unix.RTM_GETROUTE)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], 1) // sequence number
	rtm := req[unix.SizeofNlMsghdr:]
	rtm[0], rtm[1] = family, bits // rtm_family, rtm_dst_len; the rest stays 0
	rta := rtm[unix.SizeofRtMsg:]
	ne.PutUint16(rta[0:], uint16(rtaLen))
	ne.PutUint16(rta[2:], unix.RTA_DST)
	copy(rta[unix.SizeofRtAttr:], a)

	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return 0, fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("netlink route get: %w", err)
	}
	buf := make([]byte, 1<<16)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, fmt.Errorf("netlink route get: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return 0, fmt.Errorf("netlink route get: %w", err)
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) >= 4 {
				if errno := -int32(ne.Uint32(m.Data)); errno != 0 {
					return 0, fmt.Errorf("route get: %w", syscall.Errno(errno))
				}
			}
		case unix.RTM_NEWROUTE:
			if index, _, ok := routeOutput(&m); ok {
				return index, nil
			}
		}
	}
	return 0, errors.New("route get: no output interface in the kernel's answer")
}

// defaultRouteIndex is the output interface of the main table's default
// route for family, the one with the lowest metric.
func defaultRouteIndex(family int) (int, error) {
	rib, err := syscall.NetlinkRIB(unix.RTM_GETROUTE, family)
	if err != nil {
		return 0, fmt.Errorf("netlink route dump: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return 0, fmt.Errorf("netlink route dump: %w", err)
	}
	best, bestMetric := 0, uint32(0)
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWROUTE || len(m.Data) < unix.SizeofRtMsg {
			continue
		}
		// rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type.
		if m.Data[1] != 0 || m.Data[7] != unix.RTN_UNICAST {
			continue
		}
		index, attrs, ok := routeOutput(&m)
		table := uint32(m.Data[4])
		if v, ok := attrs[unix.RTA_TABLE]; ok && len(v) >= 4 {
			table = binary.NativeEndian.Uint32(v)
		}
		if !ok || table != unix.RT_TABLE_MAIN {
			continue
		}
		var metric uint32
		if v, ok := attrs[unix.RTA_PRIORITY]; ok && len(v) >= 4 {
			metric = binary.NativeEndian.Uint32(v)
		}
		if best == 0 || metric < bestMetric {
			best, bestMetric = index, metric
		}
	}
	if best == 0 {
		name := "IPv4"
		if family == unix.AF_INET6 {
			name = "IPv6"
		}
		return 0, fmt.Errorf("no %s default route", name)
	}
	return best, nil
}

// routeOutput returns a route message's output interface (RTA_OIF, or the
// first next hop of RTA_MULTIPATH) and its attributes by type.
func routeOutput(m *syscall.NetlinkMessage) (int, map[uint16][]byte, bool) {
	list, err := syscall.ParseNetlinkRouteAttr(m)
	if err != nil {
		return 0, nil, false
	}
	attrs := make(map[uint16][]byte, len(list))
	for _, a := range list {
		attrs[a.Attr.Type] = a.Value
	}
	if v, ok := attrs[unix.RTA_OIF]; ok && len(v) >= 4 {
		return int(binary.NativeEndian.Uint32(v)), attrs, true
	}
	// struct rtnexthop: len u16, flags u8, hops u8, ifindex s32.
	if v, ok := attrs[unix.RTA_MULTIPATH]; ok && len(v) >= 8 {
		return int(int32(binary.NativeEndian.Uint32(v[4:]))), attrs, true
	}
	return 0, attrs, false
}
