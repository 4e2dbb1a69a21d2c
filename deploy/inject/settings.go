package inject

import (
	"fmt"
	"maps"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/warden-sidecar/warden/agent/config"
)

// settings are what the annotations make of the two containers.
type settings struct {
	sidecarEnv, initEnv    []corev1.EnvVar
	init                   config.Init // ports and uid, as warden init reads them
	upstreamPort           int
	ebpf                   bool // warden will load its eBPF program: it gets NET_ADMIN, BPF and PERFMON
	fastPathPod            bool // WARDEN_FAST_PATH=sockmap: warden gets the node's cgroup tree and the pod's UID
	socket                 string
	pprof                  bool
	inboundPort, adminPort int
	resources              corev1.ResourceRequirements // warden's, from sidecar.yaml and the resource annotations
}

func (a annotations) settings(t *template, opts Options) (settings, error) {
	s := settings{socket: a.socket}
	if s.socket == "" {
		s.socket = SocketCSI
	}
	// The webhook's default rate-limit mode, as if the pod had annotated
	// it, unless it did.
	if _, ok := a.vars["WARDEN_RATE_LIMIT_MODE"]; !ok && opts.RateLimitMode != "" {
		a.vars = maps.Clone(a.vars)
		a.vars["WARDEN_RATE_LIMIT_MODE"] = opts.RateLimitMode
	}
	res, err := a.sidecarResources(t, opts.Resources)
	if err != nil {
		return s, err
	}
	s.resources = res

	// The sidecar: the template's variables, replaced where annotated,
	// then the other annotated ones it reads, in the order of config.Vars.
	inTemplate := make(map[string]bool)
	for _, e := range t.sidecar.Env {
		inTemplate[e.Name] = true
		if v, ok := a.vars[e.Name]; ok {
			e.Value = v
		}
		s.sidecarEnv = append(s.sidecarEnv, corev1.EnvVar{Name: e.Name, Value: e.Value})
	}
	for _, v := range config.Vars {
		if val, ok := a.vars[v.Name]; ok && v.Readers&config.BySidecar != 0 && !inTemplate[v.Name] {
			s.sidecarEnv = append(s.sidecarEnv, corev1.EnvVar{Name: v.Name, Value: val})
		}
	}
	// An annotation set to "" is an empty value, as in the container's
	// environment, not an unset one: the map lookup tells them apart.
	sidecarEnv := envMap(s.sidecarEnv)
	cfg, err := config.Check(func(name string) (string, bool) { v, ok := sidecarEnv[name]; return v, ok })
	if err != nil {
		return s, a.blame(err)
	}
	if host, _, _ := net.SplitHostPort(cfg.AdminAddr); isLoopback(host) {
		return s, fmt.Errorf("inject: annotation %s=%q: expected an address the kubelet can reach, e.g. 0.0.0.0:15000: it probes warden's admin port from the node, not from the pod's loopback",
			a.from["WARDEN_ADMIN_ADDR"], cfg.AdminAddr)
	}
	if host, _, _ := net.SplitHostPort(cfg.InboundAddr); host != "" && !net.ParseIP(host).IsUnspecified() {
		return s, fmt.Errorf("inject: annotation %s=%q: expected a wildcard address such as 0.0.0.0:15443 or [::]:15443: redirected connections arrive addressed to the pod's IP",
			a.from["WARDEN_INBOUND_ADDR"], cfg.InboundAddr)
	}
	if err := a.checkFastPath(cfg); err != nil {
		return s, err
	}
	// The pod's UID comes from the downward API, so these are added after
	// the check, which could not read it.
	s.fastPathPod = cfg.FastPath == config.FastPathSockmap
	if s.fastPathPod {
		s.sidecarEnv = append(s.sidecarEnv, fastPathPodEnv()...)
	}
	s.ebpf = kernelFeatureAsked(cfg) || s.fastPathPod
	s.pprof = cfg.AdminPprof
	s.upstreamPort = portOf(cfg.UpstreamAddr) // WARDEN_UPSTREAM_PORT applied

	// warden init: what it reads of the sidecar's settings (the admin
	// address as injected), its own annotated variables, and the proxy uid
	// always, since warden's runAsUser must be the same.
	for _, v := range config.Vars {
		if v.Readers&config.ByInit == 0 || v.Name == "WARDEN_PROXY_UID" {
			continue
		}
		if val, ok := a.vars[v.Name]; ok {
			s.initEnv = append(s.initEnv, corev1.EnvVar{Name: v.Name, Value: val})
		} else if inTemplate[v.Name] {
			s.initEnv = append(s.initEnv, corev1.EnvVar{Name: v.Name, Value: sidecarEnv[v.Name]})
		}
	}
	uid, ok := a.vars["WARDEN_PROXY_UID"]
	if !ok {
		uid = config.Default("WARDEN_PROXY_UID")
	}
	s.initEnv = append(s.initEnv, corev1.EnvVar{Name: "WARDEN_PROXY_UID", Value: uid})
	initEnv := envMap(s.initEnv)
	ic, err := config.InitFromEnv(func(name string) (string, bool) { v, ok := initEnv[name]; return v, ok })
	if err != nil {
		return s, a.blame(err)
	}
	s.init = ic
	s.inboundPort, s.adminPort = ic.InboundPort, ic.AdminPort
	return s, nil
}

// kernelFeatureAsked says whether warden will load its eBPF program, and
// so needs NET_ADMIN, BPF and PERFMON: as agent/ratelimit.Start decides it,
// in ebpf mode always, in auto mode only for a connection or packet rate
// above 0.
func kernelFeatureAsked(c config.Config) bool {
	switch c.RateLimitMode {
	case config.RateLimitEBPF:
		return true
	case config.RateLimitAuto:
		return c.ConnRateLimit > 0 || c.PacketRateLimit > 0
	}
	return false
}

func portOf(addr string) int {
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return n
}

func envMap(env []corev1.EnvVar) map[string]string {
	m := make(map[string]string, len(env))
	for _, e := range env {
		m[e.Name] = e.Value
	}
	return m
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}
