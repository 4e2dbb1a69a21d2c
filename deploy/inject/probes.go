package inject

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/warden-sidecar/warden/internal/appprobe"
)

// AnnotationRewriteProbes is "false" to leave the app's probes as they are
// (they then fail on a redirected port; see warnings).
const AnnotationRewriteProbes = "warden.io/rewrite-probes"

// probeKinds are a container's probes with their name in
// /app-health/<container>/<probe>.
var probeKinds = []struct {
	name  string // appprobe.Liveness, ...
	field string // the pod spec's, for warnings
	get   func(*corev1.Container) **corev1.Probe
}{
	{appprobe.Startup, "startupProbe", func(c *corev1.Container) **corev1.Probe { return &c.StartupProbe }},
	{appprobe.Liveness, "livenessProbe", func(c *corev1.Container) **corev1.Probe { return &c.LivenessProbe }},
	{appprobe.Readiness, "readinessProbe", func(c *corev1.Container) **corev1.Probe { return &c.ReadinessProbe }},
}

// rewriteProbes points the app containers' HTTP and gRPC probes of a
// redirected port at warden's admin port, /app-health/<container>/<probe>,
// and returns the originals for WARDEN_APP_PROBES, as Istio's
// rewriteAppHTTPProbers does: on a redirected port the kubelet would reach
// warden's mTLS listener without a certificate, and fail. Timing and
// thresholds stay; warden applies the original timeout to the app.
//
// Left alone: TCP probes (a redirected one connects to warden's listener
// and passes while warden runs: see warnings), exec probes, probes of
// another port, and HTTP probes that name a host (they do not probe this
// pod). Init containers keep theirs: warden is not yet serving when most
// of them run.
func (s settings) rewriteProbes(pod *corev1.Pod) appprobe.Set {
	set := appprobe.Set{}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		for _, k := range probeKinds {
			p := k.get(c)
			orig, ok := s.appProbe(*c, *p)
			if !ok {
				continue
			}
			set[appprobe.Key(c.Name, k.name)] = orig
			rewritten := (*p).DeepCopy()
			rewritten.ProbeHandler = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path:   appprobe.Path(c.Name, k.name),
				Port:   intstr.FromInt32(int32(s.adminPort)),
				Scheme: corev1.URISchemeHTTP,
			}}
			*p = rewritten
		}
	}
	if len(set) == 0 {
		return nil
	}
	return set
}

// appProbe is the original of a probe that rewriteProbes rewrites, and
// whether it does.
func (s settings) appProbe(c corev1.Container, p *corev1.Probe) (appprobe.Probe, bool) {
	port := probePort(c, p)
	if port == 0 || !s.redirected(port) {
		return appprobe.Probe{}, false
	}
	switch {
	case p.HTTPGet != nil && p.HTTPGet.Host == "":
		h := &appprobe.HTTPGet{Path: p.HTTPGet.Path, Port: port, Scheme: string(p.HTTPGet.Scheme)}
		for _, hd := range p.HTTPGet.HTTPHeaders {
			h.HTTPHeaders = append(h.HTTPHeaders, appprobe.Header{Name: hd.Name, Value: hd.Value})
		}
		return appprobe.Probe{HTTPGet: h, TimeoutSeconds: p.TimeoutSeconds}, true
	case p.GRPC != nil:
		g := &appprobe.GRPC{Port: port}
		if p.GRPC.Service != nil {
			g.Service = *p.GRPC.Service
		}
		return appprobe.Probe{GRPC: g, TimeoutSeconds: p.TimeoutSeconds}, true
	}
	return appprobe.Probe{}, false
}

// appProbesEnv is WARDEN_APP_PROBES for set, checked as the sidecar will
// read it.
func appProbesEnv(set appprobe.Set) (corev1.EnvVar, error) {
	v, err := set.Encode()
	if err == nil {
		_, err = appprobe.Parse(v)
	}
	if err != nil {
		return corev1.EnvVar{}, fmt.Errorf("inject: the app's probes: %w", err)
	}
	return corev1.EnvVar{Name: "WARDEN_APP_PROBES", Value: v}, nil
}
