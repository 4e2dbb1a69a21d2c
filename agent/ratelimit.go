package agent

import (
	"errors"
	"net"
	"net/netip"
	"strconv"

	"github.com/warden-sidecar/warden/agent/proxy"
	"github.com/warden-sidecar/warden/agent/ratelimit"
)

// The proxy names only its own Limiter interface (agent/ratelimit must not
// be in its imports): the userspace limiter is checked against it here,
// where both are known.
var _ proxy.Limiter = (*ratelimit.Userspace)(nil)

// startRateLimit starts the enforcer WARDEN_RATE_LIMIT_MODE asks for, for
// the bound inbound address. In auto mode eBPF is loaded only when a kernel
// limit is set, an eBPF failure is a warning and the userspace limiter
// takes over; in ebpf mode it stops startup. Either way warden holds no
// CAP_BPF, CAP_NET_ADMIN or CAP_PERFMON afterwards, or warns why.
func (a *Agent) startRateLimit(in *net.TCPAddr) (*ratelimit.Running, error) {
	ip, _ := netip.AddrFromSlice(in.IP)
	limits := ratelimit.Limits{
		ConnRate:    a.cfg.ConnRateLimit,
		ConnBurst:   a.cfg.ConnBurst,
		PacketRate:  a.cfg.PacketRateLimit,
		PacketBurst: a.cfg.PacketBurst,
	}
	rl, err := ratelimit.Start(ratelimit.Settings{
		Mode:       a.cfg.RateLimitMode,
		Port:       in.Port,
		ExtraPorts: a.redirectedPorts(),
		InboundIP:  ip.Unmap(),
		Interface:  a.cfg.BPFInterface,
		Attach:     a.cfg.BPFAttach,
		Limits:     limits,
		MaxSources: a.cfg.BPFMaxSources,
		MaxConns:   a.cfg.BPFMaxConns,
		IPv6Prefix: a.cfg.IPv6Prefix,
		Features:   a.kernelFeatures(),
	})
	if err != nil {
		return nil, err
	}
	st := rl.Status()
	if rl.Fallback != nil && !errors.Is(rl.Fallback, ratelimit.ErrNothingToEnforce) {
		a.log.Warn().Str("event", "ratelimit_fallback").Err(rl.Fallback).Str("mode", st.Mode).
			Msg("eBPF rate limiting could not start; the userspace limiter enforces the same limits")
	}
	if rl.CapabilitiesKept != nil {
		a.log.Warn().Str("event", "capabilities_kept").Err(rl.CapabilitiesKept).
			Msg("warden still holds CAP_BPF, CAP_NET_ADMIN or CAP_PERFMON")
	}
	e := a.log.Info().Str("event", "ratelimit_started").Str("mode", st.Mode).Str("interface", st.Interface).
		Str("attach", st.Attach).Int("port", st.Port).Int("conn_rate", limits.ConnRate).
		Int("conn_burst", limits.ConnBurst).Int("packet_rate", limits.PacketRate).
		Int("packet_burst", limits.PacketBurst)
	if errors.Is(rl.Fallback, ratelimit.ErrNothingToEnforce) {
		e = e.Str("fallback_reason", st.FallbackReason)
	}
	e.Send()
	a.limiter.Store(rl)
	return rl, nil
}

// redirectedPorts are the app ports `warden init` redirects to the inbound
// port: the kernel program sees packets before netfilter rewrites their
// port, so it must limit them as the inbound port. With `*`, every port but
// the admin port.
func (a *Agent) redirectedPorts() []uint16 {
	if !a.cfg.RedirectAll {
		ports := make([]uint16, 0, len(a.cfg.RedirectPorts))
		for _, p := range a.cfg.RedirectPorts {
			ports = append(ports, uint16(p))
		}
		return ports
	}
	_, adminPort, _ := net.SplitHostPort(a.cfg.AdminAddr)
	admin, _ := strconv.Atoi(adminPort)
	ports := make([]uint16, 0, 65535)
	for p := 1; p <= 65535; p++ {
		if p != admin {
			ports = append(ports, uint16(p))
		}
	}
	return ports
}

func (a *Agent) rateLimitView() any {
	rl := a.limiter.Load()
	if rl == nil {
		return map[string]string{"mode": "starting", "requested_mode": a.cfg.RateLimitMode}
	}
	st := rl.Status()
	keys := a.rateKeys.Stats()
	st.PolicyLimits = &ratelimit.KeyedStatus{
		PeerRate: a.cfg.PeerRateLimit, PeerBurst: a.cfg.PeerBurst,
		Keys: keys.Keys, MaxKeys: keys.Max, Overflow: keys.Overflow, Limited: keys.Refused,
	}
	return st
}
