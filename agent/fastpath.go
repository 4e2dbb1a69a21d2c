package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/agent/metrics"
	"github.com/warden-sidecar/warden/bpf"
	"github.com/warden-sidecar/warden/internal/cgroup2"
)

// fastPath is the sockmap fast path as it started: what /fastpath and
// /metrics read. It never changes after startFastPath; the counters are
// read from the kernel.
type fastPath struct {
	mode   string // WARDEN_FAST_PATH
	reason string // why it is not active
	cgroup string
	port   int
	f      *bpf.FastPath // nil when not active
}

// startFastPath attaches the fast path between warden and the app, or in
// auto mode says in one info line why it does not. It runs before the rate
// limiter, which gives up CAP_BPF and CAP_NET_ADMIN for good, and before
// the proxy opens its first upstream connection: only connections
// established after the attach are accelerated.
func (a *Agent) startFastPath() (*fastPath, error) {
	fp := &fastPath{mode: a.cfg.FastPath}
	if fp.mode == config.FastPathOff {
		fp.reason = "WARDEN_FAST_PATH is off"
		a.fastPath.Store(fp)
		return fp, nil
	}
	f, cg, port, err := a.attachFastPath()
	if err != nil {
		if fp.mode == config.FastPathSockmap {
			return nil, fmt.Errorf("agent: WARDEN_FAST_PATH=sockmap: %w", err)
		}
		fp.reason = err.Error()
		a.log.Info().Str("event", "fast_path_off").Str("reason", fp.reason).
			Msg("WARDEN_FAST_PATH=auto: warden and the app talk over loopback TCP")
		a.fastPath.Store(fp)
		return fp, nil
	}
	fp.f, fp.cgroup, fp.port = f, cg, port
	a.log.Info().Str("event", "fast_path_on").Str("mode", fp.mode).Str("cgroup", cg).Int("port", port).
		Msg("connections to the app established from now on skip the loopback TCP stack")
	a.fastPath.Store(fp)
	return fp, nil
}

// attachFastPath loads and attaches, returning why it can't in words that
// name the variable to change.
func (a *Agent) attachFastPath() (*bpf.FastPath, string, int, error) {
	host, portStr, err := net.SplitHostPort(a.cfg.UpstreamAddr)
	if err != nil {
		return nil, "", 0, fmt.Errorf("WARDEN_UPSTREAM_ADDR %q: %w", a.cfg.UpstreamAddr, err)
	}
	port, _ := strconv.Atoi(portStr)
	if ip, err := netip.ParseAddr(host); (err != nil && host != "localhost") || (err == nil && !ip.IsLoopback()) {
		return nil, "", 0, fmt.Errorf("WARDEN_UPSTREAM_ADDR %s is not a loopback address: the fast path redirects loopback connections only", a.cfg.UpstreamAddr)
	}
	cg := a.cfg.FastPathCgroup
	if cg == config.FastPathCgroupPod {
		root, err := cgroup2.HostRoot(a.cfg.FastPathHostCgroup)
		if err != nil {
			return nil, "", 0, fmt.Errorf("WARDEN_FAST_PATH_CGROUP=pod: WARDEN_FAST_PATH_HOST_CGROUP %s: %w", a.cfg.FastPathHostCgroup, err)
		}
		if cg, err = cgroup2.FindPod(root, a.cfg.PodUID, os.Getpid()); err != nil {
			return nil, "", 0, fmt.Errorf("WARDEN_FAST_PATH_CGROUP=pod: WARDEN_POD_UID %s under WARDEN_FAST_PATH_HOST_CGROUP %s: %w", a.cfg.PodUID, a.cfg.FastPathHostCgroup, err)
		}
	}
	if cg == "" {
		own, err := cgroup2.Own()
		switch {
		case errors.Is(err, cgroup2.ErrCgroupNamespace):
			return nil, "", 0, fmt.Errorf("%w: the app's cgroup can't be reached; set WARDEN_FAST_PATH_CGROUP to a cgroup v2 directory holding warden and the app", err)
		case errors.Is(err, cgroup2.ErrRootCgroup):
			return nil, "", 0, fmt.Errorf("%w: set WARDEN_FAST_PATH_CGROUP to a cgroup v2 directory holding warden and the app", err)
		case err != nil:
			return nil, "", 0, fmt.Errorf("warden's own cgroup (WARDEN_FAST_PATH_CGROUP is empty): %w", err)
		}
		cg = own
	}
	if err := bpf.RaiseCapabilities(); err != nil {
		return nil, "", 0, err
	}
	f, err := bpf.LoadFastPath(bpf.FastPathConfig{Ports: []uint16{uint16(port)}})
	if err != nil {
		return nil, "", 0, err
	}
	if err := f.AttachCgroup(cg); err != nil {
		_ = f.Close()
		if a.cfg.FastPathCgroup == config.FastPathCgroupPod {
			return nil, "", 0, fmt.Errorf("WARDEN_FAST_PATH_CGROUP=pod: the pod's cgroup %s: %w", cg, err)
		}
		if a.cfg.FastPathCgroup != "" {
			return nil, "", 0, fmt.Errorf("WARDEN_FAST_PATH_CGROUP %s: %w", cg, err)
		}
		return nil, "", 0, fmt.Errorf("warden's own cgroup %s (WARDEN_FAST_PATH_CGROUP is empty): %w", cg, err)
	}
	return f, cg, port, nil
}

// Close detaches from the cgroup; connections already accelerated stay so
// until they close (bpf.FastPath.Close).
func (fp *fastPath) Close() error {
	if fp == nil || fp.f == nil {
		return nil
	}
	return fp.f.Close()
}

// fastPathStatus is GET /fastpath.
type fastPathStatus struct {
	Mode               string `json:"mode"`
	Active             bool   `json:"active"`
	Reason             string `json:"reason,omitempty"`
	Cgroup             string `json:"cgroup,omitempty"`
	Port               int    `json:"port,omitempty"`
	Sockets            uint64 `json:"sockets"`
	MessagesRedirected uint64 `json:"messages_redirected"`
	BytesRedirected    uint64 `json:"bytes_redirected"`
	Fallbacks          uint64 `json:"fallbacks"`
	SocketsAdded       uint64 `json:"sockets_added"`
	AddFailures        uint64 `json:"add_failures"`
	Error              string `json:"error,omitempty"`
}

func (a *Agent) fastPathView() any {
	fp := a.fastPath.Load()
	if fp == nil {
		return fastPathStatus{Mode: a.cfg.FastPath, Reason: "starting"}
	}
	st := fastPathStatus{Mode: fp.mode, Active: fp.f != nil, Reason: fp.reason, Cgroup: fp.cgroup, Port: fp.port}
	if fp.f == nil {
		return st
	}
	s, err := fp.f.Stats()
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.Sockets, st.MessagesRedirected, st.BytesRedirected, st.Fallbacks = s.Sockets, s.MessagesRedirected, s.BytesRedirected, s.Fallbacks
	st.SocketsAdded, st.AddFailures = s.SocketsAdded, s.AddFailures
	return st
}

// fastPathTotals is what /metrics reads; ok is false when there is nothing
// to report (not active, or the maps could not be read).
func (a *Agent) fastPathTotals() (metrics.FastPathTotals, bool) {
	fp := a.fastPath.Load()
	if fp == nil || fp.f == nil {
		return metrics.FastPathTotals{}, false
	}
	s, err := fp.f.Stats()
	if err != nil {
		return metrics.FastPathTotals{}, false
	}
	return metrics.FastPathTotals{Sockets: s.Sockets, Messages: s.MessagesRedirected, Bytes: s.BytesRedirected, Fallbacks: s.Fallbacks}, true
}
