package inject

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/warden-sidecar/warden/agent/config"
)

// The annotations that size the injected warden container; without them,
// sidecar.yaml's requests and limits hold.
const (
	AnnotationCPURequest    = "warden.io/cpu-request"
	AnnotationCPULimit      = "warden.io/cpu-limit"
	AnnotationMemoryRequest = "warden.io/memory-request"
	AnnotationMemoryLimit   = "warden.io/memory-limit"
)

// resourceAnnotations says which annotation sets which quantity of warden's
// container.
var resourceAnnotations = []struct {
	key      string
	resource corev1.ResourceName
	limit    bool // a limit, not a request
}{
	{AnnotationCPURequest, corev1.ResourceCPU, false},
	{AnnotationCPULimit, corev1.ResourceCPU, true},
	{AnnotationMemoryRequest, corev1.ResourceMemory, false},
	{AnnotationMemoryLimit, corev1.ResourceMemory, true},
}

// parseQuantity reads a resource annotation as Kubernetes reads a
// quantity, and refuses what no container could run with.
func parseQuantity(key, value string) (resource.Quantity, error) {
	q, err := resource.ParseQuantity(value)
	if err != nil {
		return q, fmt.Errorf("inject: annotation %s=%q: expected a Kubernetes quantity such as 100m, 0.5 or 128Mi: %w", key, value, err)
	}
	if q.Sign() <= 0 {
		return q, fmt.Errorf("inject: annotation %s=%q: expected a quantity above 0", key, value)
	}
	return q, nil
}

// sidecarResources is the template's requests and limits of warden with
// the annotated ones in their place, and an error naming the annotation
// when a request would exceed its limit (the API server would refuse the
// pod with a message about a container the user did not write).
func (a annotations) sidecarResources(t *template, defaults corev1.ResourceRequirements) (corev1.ResourceRequirements, error) {
	r := *t.sidecar.Resources.DeepCopy()
	set := func(l *corev1.ResourceList, name corev1.ResourceName, q resource.Quantity) {
		if *l == nil {
			*l = corev1.ResourceList{}
		}
		(*l)[name] = q
	}
	for name, q := range defaults.Requests {
		set(&r.Requests, name, q)
	}
	for name, q := range defaults.Limits {
		set(&r.Limits, name, q)
	}
	for _, ra := range resourceAnnotations {
		q, ok := a.resources[ra.key]
		if !ok {
			continue
		}
		if ra.limit {
			set(&r.Limits, ra.resource, q)
		} else {
			set(&r.Requests, ra.resource, q)
		}
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := r.Requests[name]
		lim, hasLim := r.Limits[name]
		if !hasReq || !hasLim || req.Cmp(lim) <= 0 {
			continue
		}
		reqKey, limKey := AnnotationCPURequest, AnnotationCPULimit
		if name == corev1.ResourceMemory {
			reqKey, limKey = AnnotationMemoryRequest, AnnotationMemoryLimit
		}
		_, limAnnotated := a.resources[limKey]
		_, reqAnnotated := a.resources[reqKey]
		switch {
		case limAnnotated:
			return r, fmt.Errorf("inject: annotation %s=%q: expected at least the %s request %s (%s)", limKey, lim.String(), name, req.String(), origin(a, reqKey))
		case !reqAnnotated: // the webhook's own defaults disagree (NewOptions)
			return r, fmt.Errorf("inject: the injected %s request %s is above its limit %s: set WARDEN_SIDECAR_%s_REQUEST and WARDEN_SIDECAR_%s_LIMIT together",
				name, req.String(), lim.String(), strings.ToUpper(string(name)), strings.ToUpper(string(name)))
		}
		return r, fmt.Errorf("inject: annotation %s=%q: expected at most the %s limit %s (%s; raise it with %s)", reqKey, req.String(), name, lim.String(), origin(a, limKey), limKey)
	}
	return r, nil
}

func origin(a annotations, key string) string {
	if _, ok := a.resources[key]; ok {
		return "from " + key
	}
	return "the webhook's default"
}

// NewOptions are the webhook's Options from its configuration, checked
// against sidecar.yaml as a pod without annotations would be: a default
// request above a default limit stops the webhook at startup, not every
// pod at admission.
func NewOptions(w config.Webhook) (Options, error) {
	o := Options{Image: w.SidecarImage, RateLimitMode: w.RateLimitMode}
	for _, d := range []struct {
		value, variable string
		name            corev1.ResourceName
		limit           bool
	}{
		{w.CPURequest, "WARDEN_SIDECAR_CPU_REQUEST", corev1.ResourceCPU, false},
		{w.CPULimit, "WARDEN_SIDECAR_CPU_LIMIT", corev1.ResourceCPU, true},
		{w.MemoryRequest, "WARDEN_SIDECAR_MEMORY_REQUEST", corev1.ResourceMemory, false},
		{w.MemoryLimit, "WARDEN_SIDECAR_MEMORY_LIMIT", corev1.ResourceMemory, true},
	} {
		if d.value == "" {
			continue
		}
		q, err := resource.ParseQuantity(d.value)
		if err != nil {
			return o, fmt.Errorf("inject: %s=%q: %w", d.variable, d.value, err)
		}
		l := &o.Resources.Requests
		if d.limit {
			l = &o.Resources.Limits
		}
		if *l == nil {
			*l = corev1.ResourceList{}
		}
		(*l)[d.name] = q
	}
	t, err := loadTemplate()
	if err != nil {
		return o, err
	}
	if _, err := (annotations{}).sidecarResources(t, o.Resources); err != nil {
		return o, err
	}
	return o, nil
}
