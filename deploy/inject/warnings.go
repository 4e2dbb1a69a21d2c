package inject

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/warden-sidecar/warden/internal/appprobe"
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
func (s settings) warnings(pod *corev1.Pod, a annotations, rewritten appprobe.Set) []string {
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
		for _, k := range probeKinds {
			probe := *k.get(&c)
			port := probePort(c, probe)
			if port == 0 || !s.redirected(port) || probe.HTTPGet != nil && probe.HTTPGet.Host != "" {
				continue
			}
			if _, ok := rewritten[appprobe.Key(c.Name, k.name)]; ok {
				continue // container names are unique across a pod's containers and init containers
			}
			if probe.TCPSocket != nil {
				out = append(out, fmt.Sprintf("container %q: its %s (tcpSocket) on port %d is answered by warden's listener, not the app: it passes while warden runs; use httpGet or grpc to check the app", c.Name, k.field, port))
				continue
			}
			how := "probe another port, or use exec"
			if a.rewriteProbes == "false" {
				how = "remove " + AnnotationRewriteProbes + `: "false", probe another port, or use exec`
			}
			out = append(out, fmt.Sprintf("container %q: its %s on port %d is redirected to warden's mTLS port and will fail: %s", c.Name, k.field, port, how))
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
