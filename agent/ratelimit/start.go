package ratelimit

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/warden-sidecar/warden/agent/config"
)

// Settings configure Start.
type Settings struct {
	Mode       string     // WARDEN_RATE_LIMIT_MODE: config.RateLimitAuto, ...
	Port       int        // the inbound port, as bound
	ExtraPorts []uint16   // eBPF: ports redirected to Port by netfilter, which XDP sees unredirected
	InboundIP  netip.Addr // the inbound listener's IP; unspecified: the default route's interface
	Interface  string     // "" = the interface that carries the route to InboundIP
	Attach     string     // "xdp" or "tc"
	Limits     Limits
	MaxSources int
	MaxConns   int
}

// Running is the enforcer Start chose.
type Running struct {
	Enforcer
	// Userspace is the userspace limiter when it runs: the proxy calls it
	// at accept and per request. nil with eBPF or off.
	Userspace *Userspace
	// Fallback is why eBPF is not running in auto mode (nil otherwise).
	Fallback error

	requested string
}

// Status adds the requested mode and the fallback reason.
func (r *Running) Status() Status {
	st := r.Enforcer.Status()
	st.RequestedMode = r.requested
	if r.Fallback != nil {
		st.FallbackReason = r.Fallback.Error()
	}
	return st
}

// Start starts what s.Mode asks for: in ebpf mode an eBPF failure is the
// error (with the kernel's words); in auto mode it is not an error, the
// userspace limiter takes over and Running.Fallback says why.
func Start(s Settings) (*Running, error) {
	r := &Running{requested: s.Mode}
	switch s.Mode {
	case config.RateLimitOff:
		r.Enforcer = off{port: s.Port, limits: s.Limits}
		return r, nil
	case config.RateLimitUserspace:
		r.Userspace = NewUserspace(s.Port, s.Limits, s.MaxSources)
		r.Enforcer = r.Userspace
		return r, nil
	case config.RateLimitEBPF, config.RateLimitAuto:
		k, err := startKernel(s)
		if err == nil {
			r.Enforcer = k
			return r, nil
		}
		if s.Mode == config.RateLimitEBPF {
			return nil, err
		}
		r.Fallback = err
		r.Userspace = NewUserspace(s.Port, s.Limits, s.MaxSources)
		r.Enforcer = r.Userspace
		return r, nil
	default:
		return nil, fmt.Errorf("ratelimit: unknown mode %q", s.Mode)
	}
}

// off is WARDEN_RATE_LIMIT_MODE=off: nothing is limited or blocked.
type off struct {
	port   int
	limits Limits
}

func (off) Block(netip.Addr, time.Duration) error { return ErrOff }
func (off) Unblock(netip.Addr) error              { return ErrOff }
func (off) Close() error                          { return nil }

func (o off) Status() Status {
	return Status{Mode: config.RateLimitOff, Port: o.port, Limits: o.limits, TopSources: []SourceDrops{}, Blocklist: []BlockEntry{}}
}
