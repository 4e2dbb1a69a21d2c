package inject

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// redirected says whether warden init sends inbound traffic for port to
// warden.
func (s settings) redirected(port int) bool {
	if port == s.inboundPort || port == s.adminPort {
		return false
	}
	return s.init.AllPorts || slices.Contains(s.init.RedirectPorts, port)
}

// warnings point out what injection makes of the pod that its author may
// not expect; they never stop it.
func (s settings) warnings(pod *corev1.Pod, a annotations) []string {
	var out []string
	declared := map[int]bool{}
	var bypass []string
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			port := int(p.ContainerPort)
			if (p.Protocol != "" && p.Protocol != corev1.ProtocolTCP) || declared[port] {
				continue
			}
			declared[port] = true
			if !s.redirected(port) && port != s.inboundPort && port != s.adminPort {
				bypass = append(bypass, strconv.Itoa(port))
			}
		}
	}
	if len(declared) > 0 && !declared[s.upstreamPort] {
		out = append(out, fmt.Sprintf("no container declares port %d, where warden forwards requests (set %s)", s.upstreamPort, AnnotationFor("WARDEN_UPSTREAM_PORT")))
	}
	switch {
	case len(bypass) == 1:
		out = append(out, fmt.Sprintf("container port %s is not redirected to warden: traffic to it bypasses warden (see %s)", bypass[0], AnnotationFor("WARDEN_REDIRECT_PORTS")))
	case len(bypass) > 1:
		out = append(out, fmt.Sprintf("container ports %s are not redirected to warden: traffic to them bypasses warden (see %s)", strings.Join(bypass, ", "), AnnotationFor("WARDEN_REDIRECT_PORTS")))
	}
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		for _, pr := range []struct {
			kind  string
			probe *corev1.Probe
		}{{"startupProbe", c.StartupProbe}, {"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}} {
			if port := probePort(c, pr.probe); port > 0 && s.redirected(port) {
				out = append(out, fmt.Sprintf("container %q: its %s on port %d is redirected to warden's mTLS port and will fail: probe another port, or use exec", c.Name, pr.kind, port))
			}
		}
	}
	if s.pprof {
		out = append(out, fmt.Sprintf("%s: Go's profiler is served on the pod's address, port %d, to anyone who reaches it", a.from["WARDEN_ADMIN_PPROF"], s.adminPort))
	}
	return out
}

// probePort is the port a network probe of c checks, 0 for none.
func probePort(c corev1.Container, p *corev1.Probe) int {
	if p == nil {
		return 0
	}
	switch {
	case p.HTTPGet != nil:
		return resolvePort(c, p.HTTPGet.Port.IntValue(), p.HTTPGet.Port.StrVal)
	case p.TCPSocket != nil:
		return resolvePort(c, p.TCPSocket.Port.IntValue(), p.TCPSocket.Port.StrVal)
	case p.GRPC != nil:
		return int(p.GRPC.Port)
	}
	return 0
}

func resolvePort(c corev1.Container, number int, name string) int {
	if name == "" {
		return number
	}
	for _, p := range c.Ports {
		if p.Name == name {
			return int(p.ContainerPort)
		}
	}
	return 0
}
