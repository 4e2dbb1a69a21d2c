package ratelimit

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/bpf"
)

// kernel is the eBPF enforcer: the programs in package bpf do the work, this
// turns their maps into Status.
type kernel struct {
	l      *bpf.Limiter
	port   int
	limits Limits
}

func (k *kernel) Block(ip netip.Addr, d time.Duration) error {
	if err := checkBlock(ip, d); err != nil {
		return err
	}
	return k.l.Block(ip.Unmap(), d)
}

func (k *kernel) Unblock(ip netip.Addr) error { return k.l.Unblock(ip.Unmap()) }

func (k *kernel) Status() Status {
	ifname, kind := k.l.Attachment()
	st := Status{
		Mode:       config.RateLimitEBPF,
		Interface:  ifname,
		Attach:     kind,
		Port:       k.port,
		Unit:       "packets",
		Limits:     k.limits,
		TopSources: []SourceDrops{},
		Blocklist:  []BlockEntry{},
	}
	// A map that can't be read is reported, not hidden: the counters of a
	// kernel fast path that stopped answering are no zeroes.
	c, err := k.l.Counters()
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.Counters = Counters{Passed: c.Passed, Unparsed: c.Unparsed, Dropped: DropCounters{
		Blocked: c.DroppedBlocked, ConnRate: c.DroppedConnRate, PacketRate: c.DroppedPacketRate,
	}}
	top, err := k.l.TopSources(TopSourcesLen)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	all := make([]SourceDrops, 0, len(top))
	for _, s := range top {
		all = append(all, SourceDrops{IP: s.Addr.String(), Dropped: s.Dropped})
	}
	st.TopSources = TopSources(all, TopSourcesLen)
	blocked, err := k.l.Blocked()
	if err != nil {
		st.Error = err.Error()
		return st
	}
	now := time.Now()
	for _, b := range blocked {
		st.Blocklist = append(st.Blocklist, blockEntry(b.Addr, b.Expires, now))
	}
	sortBlocks(st.Blocklist)
	return st
}

func (k *kernel) Totals() (Totals, error) {
	t := Totals{Mode: config.RateLimitEBPF}
	c, err := k.l.Counters()
	if err != nil {
		return t, err
	}
	t.Counters = Counters{Passed: c.Passed, Unparsed: c.Unparsed, Dropped: DropCounters{
		Blocked: c.DroppedBlocked, ConnRate: c.DroppedConnRate, PacketRate: c.DroppedPacketRate,
	}}
	blocked, err := k.l.Blocked()
	if err != nil {
		return t, err
	}
	t.Blocked = len(blocked)
	return t, nil
}

func (k *kernel) Close() error { return k.l.Close() }

func startKernel(s Settings) (*kernel, error) {
	ifname := s.Interface
	if ifname == "" {
		var err error
		if ifname, err = bpf.InterfaceFor(s.InboundIP); err != nil {
			return nil, fmt.Errorf("ratelimit: find the interface that carries %s (set WARDEN_BPF_INTERFACE): %w", s.InboundIP, err)
		}
	}
	if err := bpf.RaiseCapabilities(); err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	l, err := bpf.Load(bpf.Config{
		Port:        uint16(s.Port),
		Ports:       s.ExtraPorts,
		ConnRate:    uint32(s.Limits.ConnRate),
		ConnBurst:   uint32(s.Limits.ConnBurst),
		PacketRate:  uint32(s.Limits.PacketRate),
		PacketBurst: uint32(s.Limits.PacketBurst),
		MaxSources:  uint32(s.MaxSources),
		MaxConns:    uint32(s.MaxConns),
		IPv6Prefix:  s.IPv6Prefix,
	})
	if err != nil {
		return nil, fmt.Errorf("ratelimit: load the eBPF programs: %w", err)
	}
	if err := l.Attach(ifname, bpf.AttachMode(s.Attach)); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("ratelimit: attach the eBPF program to %s (%s): %w", ifname, s.Attach, err)
	}
	return &kernel{l: l, port: s.Port, limits: s.Limits}, nil
}
