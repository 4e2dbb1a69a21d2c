package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/warden-sidecar/warden/internal/appprobe"
)

// Names the manifests, the webhook and the pods share.
const (
	// AnnotationPrefix starts every annotation warden reads; any other
	// annotation with it refuses the pod.
	AnnotationPrefix = "warden.io/"
	// AnnotationInject is "false" to keep warden out of a pod, or "true" to
	// ask for it in a namespace without NamespaceLabel.
	AnnotationInject = "warden.io/inject"
	// AnnotationSocketSource is how the SPIRE agent socket reaches warden:
	// SocketCSI (the default) or SocketHostPath.
	AnnotationSocketSource = "warden.io/spiffe-socket-source"
	SocketCSI              = "csi"
	SocketHostPath         = "hostpath"
	// AnnotationFastPath sets WARDEN_FAST_PATH like any variable's
	// annotation; "sockmap" also grants what finding the pod's cgroup
	// needs (deploy/inject/fastpath.go): a read-only hostPath of the
	// node's cgroup tree, the pod's UID and the eBPF capabilities.
	AnnotationFastPath = "warden.io/fast-path"

	// NamespaceLabel with the value LabelEnabled puts warden into every
	// new pod of a namespace (deploy/webhook selects on it).
	NamespaceLabel = "warden.io/inject"
	LabelEnabled   = "enabled"

	// PathNamespace and PathOptIn are where the webhook serves Handler for
	// ScopeNamespace and ScopeOptIn; deploy/webhook registers each with
	// its namespaceSelector.
	PathNamespace = "/mutate"
	PathOptIn     = "/mutate/opt-in"

	// ContainerName is the sidecar. A pod with a container (or init
	// container) of this name is injected already.
	ContainerName = "warden"
	// InitContainerName installs the redirect rules (`warden init`).
	InitContainerName = "warden-init"
)

// Scope is what the webhook knows about the pod's namespace: the API server
// calls a different path for labeled namespaces than for the others.
type Scope int

const (
	// ScopeNamespace: the namespace is labeled warden.io/inject=enabled;
	// every pod gets warden unless it opts out.
	ScopeNamespace Scope = iota
	// ScopeOptIn: any other namespace; only pods annotated
	// warden.io/inject: "true" get warden.
	ScopeOptIn
)

// Reason says why a pod was left alone. It is a stable code: logged, and
// recorded in the API server's audit log.
type Reason string

const (
	ReasonOptedOut        Reason = "opted_out"        // warden.io/inject: "false"
	ReasonNotOptedIn      Reason = "not_opted_in"     // ScopeOptIn without warden.io/inject: "true"
	ReasonAlreadyInjected Reason = "already_injected" // a container is named warden
	ReasonHostNetwork     Reason = "host_network"     // the redirect would rewrite the node's own traffic
)

// Options are the webhook's settings, the same for every pod.
type Options struct {
	Image string // of both injected containers (WARDEN_SIDECAR_IMAGE)
	// Resources replace sidecar.yaml's requests and limits of warden, each
	// one given (WARDEN_SIDECAR_CPU_REQUEST, ...); a pod's annotations
	// replace both.
	Resources corev1.ResourceRequirements
	// RateLimitMode is WARDEN_RATE_LIMIT_MODE of a sidecar whose pod does
	// not annotate it (WARDEN_SIDECAR_RATE_LIMIT_MODE); "": warden's default.
	RateLimitMode string
}

// Result is the outcome for one pod.
type Result struct {
	Pod      *corev1.Pod // the injected pod; nil when the pod is left alone
	Skipped  Reason      // why the pod is left alone; "" when injected
	Warnings []string    // for whoever creates the pod (kubectl prints them)
}

// Patch decides about pod and returns the JSON patch that injects warden:
// the diff between the pod and Inject's result, in a stable order. It is
// empty when the pod is left alone. An error refuses the pod; its message
// names the annotation at fault.
func Patch(pod *corev1.Pod, scope Scope, opts Options) ([]jsonpatch.Operation, Result, error) {
	res, err := Inject(pod, scope, opts)
	if err != nil || res.Pod == nil {
		return nil, res, err
	}
	before, err := json.Marshal(pod)
	if err != nil {
		return nil, Result{}, fmt.Errorf("inject: encode pod: %w", err)
	}
	after, err := json.Marshal(res.Pod)
	if err != nil {
		return nil, Result{}, fmt.Errorf("inject: encode injected pod: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(before, after)
	if err != nil {
		return nil, Result{}, fmt.Errorf("inject: diff: %w", err)
	}
	sortOps(ops)
	return ops, res, nil
}

// Inject returns a copy of pod with warden in it, or the reason to leave the
// pod alone. pod itself is not changed. Every warden.io/ annotation is
// checked, whether or not the pod is injected: a typo in an opt-in must not
// leave a pod silently without warden.
func Inject(pod *corev1.Pod, scope Scope, opts Options) (Result, error) {
	tmpl, err := loadTemplate()
	if err != nil {
		return Result{}, err
	}
	a, err := readAnnotations(pod.Annotations)
	if err != nil {
		return Result{}, err
	}
	s, err := a.settings(tmpl, opts)
	if err != nil {
		return Result{}, err
	}
	switch {
	case hasContainer(pod, ContainerName):
		return Result{Skipped: ReasonAlreadyInjected}, nil
	case a.inject == "false":
		return Result{Skipped: ReasonOptedOut}, nil
	case scope == ScopeOptIn && a.inject != "true":
		res := Result{Skipped: ReasonNotOptedIn}
		if len(a.from) > 0 || a.socket != "" {
			res.Warnings = []string{"warden is not injected: the namespace is not labeled " + NamespaceLabel + "=" + LabelEnabled +
				" and the pod is not annotated " + AnnotationInject + `: "true"`}
		}
		return res, nil
	case pod.Spec.HostNetwork && a.inject == "true":
		return Result{}, errors.New(`inject: annotation ` + AnnotationInject + `: "true" on a hostNetwork pod: the redirect rules would rewrite the node's own traffic; warden can only be injected into pods with their own network namespace`)
	case pod.Spec.HostNetwork:
		return Result{Skipped: ReasonHostNetwork}, nil
	}
	if err := checkNames(pod, tmpl); err != nil {
		return Result{}, err
	}

	out := pod.DeepCopy()
	initC, sidecar := s.containers(tmpl, opts.Image)
	var probes appprobe.Set
	if a.rewriteProbes != "false" {
		probes = s.rewriteProbes(out)
	}
	if probes != nil {
		env, err := appProbesEnv(probes)
		if err != nil {
			return Result{}, err
		}
		sidecar.Env = append(sidecar.Env, env)
	}
	out.Spec.InitContainers = append([]corev1.Container{initC, sidecar}, out.Spec.InitContainers...)
	vol := tmpl.socketVolumes[s.socket]
	out.Spec.Volumes = append(out.Spec.Volumes, *vol.DeepCopy())
	if s.fastPathPod {
		out.Spec.Volumes = append(out.Spec.Volumes, hostCgroupVolume())
	}
	return Result{Pod: out, Warnings: s.warnings(pod, a, probes)}, nil
}

func hasContainer(pod *corev1.Pod, name string) bool {
	has := func(cs []corev1.Container) bool {
		return slices.ContainsFunc(cs, func(c corev1.Container) bool { return c.Name == name })
	}
	return has(pod.Spec.Containers) || has(pod.Spec.InitContainers)
}

// checkNames refuses a pod that already uses one of the names warden adds
// (other than the sidecar's own, which means "injected already").
func checkNames(pod *corev1.Pod, t *template) error {
	if hasContainer(pod, InitContainerName) {
		return fmt.Errorf(`inject: the pod has a container named %s but none named %s: rename it, or annotate the pod %s: "false"`, InitContainerName, ContainerName, AnnotationInject)
	}
	for _, vol := range []string{t.socketVolumes[SocketCSI].Name, HostCgroupVolume} {
		if slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vol }) {
			return fmt.Errorf(`inject: the pod has a volume named %s, which warden adds: rename it, or annotate the pod %s: "false"`, vol, AnnotationInject)
		}
	}
	return nil
}

// sortOps orders a patch by path, so that it reads (and compares) the same
// every time: jsonpatch walks objects in map order. Array indexes compare
// equal, which keeps the order jsonpatch gives operations on one array's
// elements (removals from the end first, then additions in order); every
// other pair of operations touches separate paths and commutes.
func sortOps(ops []jsonpatch.Operation) {
	sort.SliceStable(ops, func(i, j int) bool {
		a, b := strings.Split(ops[i].Path, "/"), strings.Split(ops[j].Path, "/")
		for k := 0; k < len(a) && k < len(b); k++ {
			_, errA := strconv.Atoi(a[k])
			_, errB := strconv.Atoi(b[k])
			if errA == nil && errB == nil || a[k] == b[k] {
				continue
			}
			return a[k] < b[k]
		}
		return len(a) < len(b)
	})
}
