package inject

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/warden-sidecar/warden/agent/config"
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
	s, err := a.settings(tmpl)
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
	out.Spec.InitContainers = append([]corev1.Container{initC, sidecar}, out.Spec.InitContainers...)
	vol := tmpl.socketVolumes[s.socket]
	out.Spec.Volumes = append(out.Spec.Volumes, *vol.DeepCopy())
	return Result{Pod: out, Warnings: s.warnings(pod, a)}, nil
}

// template is sidecar.yaml: the two containers in order and the socket
// volume by source.
type template struct {
	InitContainers      []corev1.Container       `json:"initContainers"`
	SpiffeSocketVolumes map[string]corev1.Volume `json:"spiffeSocketVolumes"`

	init, sidecar corev1.Container
	socketVolumes map[string]corev1.Volume
}

//go:embed sidecar.yaml
var sidecarYAML []byte

var loadTemplate = sync.OnceValues(func() (*template, error) {
	var t template
	if err := yaml.UnmarshalStrict(sidecarYAML, &t); err != nil {
		return nil, fmt.Errorf("inject: sidecar.yaml: %w", err)
	}
	if len(t.InitContainers) != 2 || t.InitContainers[0].Name != InitContainerName || t.InitContainers[1].Name != ContainerName {
		return nil, fmt.Errorf("inject: sidecar.yaml: expected the init containers %s and %s, in that order", InitContainerName, ContainerName)
	}
	t.init, t.sidecar = t.InitContainers[0], t.InitContainers[1]
	t.socketVolumes = t.SpiffeSocketVolumes
	for _, src := range []string{SocketCSI, SocketHostPath} {
		v, ok := t.socketVolumes[src]
		if !ok || !slices.ContainsFunc(t.sidecar.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == v.Name }) {
			return nil, fmt.Errorf("inject: sidecar.yaml: expected a %s volume under spiffeSocketVolumes that %s mounts", src, ContainerName)
		}
	}
	if len(t.socketVolumes) != 2 {
		return nil, fmt.Errorf("inject: sidecar.yaml: expected spiffeSocketVolumes %s and %s only", SocketCSI, SocketHostPath)
	}
	for _, name := range []string{"warden-inbound", "warden-admin"} {
		if !slices.ContainsFunc(t.sidecar.Ports, func(p corev1.ContainerPort) bool { return p.Name == name }) {
			return nil, fmt.Errorf("inject: sidecar.yaml: expected %s to declare the port %s", ContainerName, name)
		}
	}
	return &t, nil
})

// Variables an annotation may not set: the webhook owns them.
var owned = map[string]string{
	"WARDEN_IDENTITY":  "the webhook sets it to workloadapi: an injected warden gets its SVIDs from the SPIRE agent",
	"WARDEN_DEV_DIR":   "it belongs to WARDEN_IDENTITY=dev, which an injected warden never uses",
	"WARDEN_SPIFFE_ID": "it belongs to WARDEN_IDENTITY=dev, which an injected warden never uses",
}

// reads says whether the container that reads variables as r (the sidecar
// or warden init) reads name, by agent/config's table. Each annotation goes
// to every container that reads its variable, so the two always agree.
func reads(name string, r config.Reader) bool {
	v, ok := config.Lookup(name)
	return ok && v.Readers&r != 0
}

// annotatable says whether a variable has an annotation: a WARDEN_ variable
// of the sidecar or warden init that the webhook does not own.
func annotatable(name string) bool {
	_, isOwned := owned[name]
	return strings.HasPrefix(name, "WARDEN_") && !isOwned && reads(name, config.BySidecar|config.ByInit)
}

// AnnotationFor is the annotation that sets the variable WARDEN_X_Y:
// warden.io/x-y.
func AnnotationFor(variable string) string {
	return AnnotationPrefix + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(variable, "WARDEN_")), "_", "-")
}

var annotationName = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// variableFor is the variable an annotation sets, if it names one.
func variableFor(key string) (string, bool) {
	name := strings.TrimPrefix(key, AnnotationPrefix)
	if !annotationName.MatchString(name) {
		return "", false
	}
	v := "WARDEN_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	return v, reads(v, config.BySidecar|config.ByInit)
}

// annotations are the pod's warden.io/ annotations, checked by name.
type annotations struct {
	inject string            // "", "true" or "false"
	socket string            // "", SocketCSI or SocketHostPath
	vars   map[string]string // variable → value
	from   map[string]string // variable → the annotation that set it
}

func readAnnotations(all map[string]string) (annotations, error) {
	a := annotations{vars: make(map[string]string), from: make(map[string]string)}
	keys := make([]string, 0, len(all))
	for k := range all {
		if strings.HasPrefix(k, AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var unknown []string
	for _, k := range keys {
		v := all[k]
		switch k {
		case AnnotationInject:
			if v != "true" && v != "false" {
				return a, fmt.Errorf(`inject: annotation %s=%q: expected "true" or "false"`, k, v)
			}
			a.inject = v
		case AnnotationSocketSource:
			if v != SocketCSI && v != SocketHostPath {
				return a, fmt.Errorf("inject: annotation %s=%q: expected %s (the SPIFFE CSI driver) or %s (the agent's socket directory on the node)", k, v, SocketCSI, SocketHostPath)
			}
			a.socket = v
		default:
			name, ok := variableFor(k)
			if !ok {
				unknown = append(unknown, k)
				continue
			}
			if why, ok := owned[name]; ok {
				return a, fmt.Errorf("inject: annotation %s: %s cannot be set by annotation: %s", k, name, why)
			}
			a.vars[name], a.from[name] = v, k
		}
	}
	if len(unknown) > 0 {
		return a, unknownError(unknown)
	}
	return a, nil
}

func unknownError(keys []string) error {
	named := make([]string, len(keys))
	for i, k := range keys {
		named[i] = k
		if s := suggest(k); s != "" {
			named[i] += " (did you mean " + s + "?)"
		}
	}
	noun := "annotation"
	if len(keys) > 1 {
		noun = "annotations"
	}
	return fmt.Errorf("inject: unknown %s %s: warden.io/<name> must be %s, %s or name a variable WARDEN_<NAME> of warden or warden init (see the README's configuration table)",
		noun, strings.Join(named, ", "), AnnotationInject, AnnotationSocketSource)
}

// suggest finds the known annotation closest to a misspelt one.
func suggest(key string) string {
	candidates := []string{AnnotationInject, AnnotationSocketSource}
	for _, v := range config.Vars {
		if annotatable(v.Name) {
			candidates = append(candidates, AnnotationFor(v.Name))
		}
	}
	best, bestD := "", 3 // at most two edits away
	for _, c := range candidates {
		if d := distance(strings.ToLower(key), c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// settings are what the annotations make of the two containers.
type settings struct {
	sidecarEnv, initEnv    []corev1.EnvVar
	init                   config.Init // ports and uid, as warden init reads them
	upstreamPort           int
	ebpf                   bool // warden will load its eBPF program: it gets NET_ADMIN, BPF and PERFMON
	socket                 string
	pprof                  bool
	inboundPort, adminPort int
}

func (a annotations) settings(t *template) (settings, error) {
	s := settings{socket: a.socket}
	if s.socket == "" {
		s.socket = SocketCSI
	}

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
	s.ebpf = kernelFeatureAsked(cfg)
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

// blame names the annotation behind an error of agent/config: the
// variable at fault, or the other one the error involves, if an annotation
// set it; else the annotation that is missing.
func (a annotations) blame(err error) error {
	var ce *config.Error
	if !errors.As(err, &ce) {
		return fmt.Errorf("inject: %w", err)
	}
	named := []string{ce.Variable, ce.Related}
	for _, name := range named {
		if key, ok := a.from[name]; ok {
			return fmt.Errorf("inject: annotation %s: %w", key, err)
		}
	}
	for _, name := range named {
		if annotatable(name) {
			return fmt.Errorf("inject: annotation %s is missing: %w", AnnotationFor(name), err)
		}
	}
	return fmt.Errorf("inject: %w", err)
}

// containers fills in the template's two containers.
func (s settings) containers(t *template, image string) (corev1.Container, corev1.Container) {
	initC := *t.init.DeepCopy()
	initC.Image = image
	initC.Env = s.initEnv

	c := *t.sidecar.DeepCopy()
	c.Image = image
	c.Env = s.sidecarEnv
	for i := range c.Ports {
		switch c.Ports[i].Name {
		case "warden-inbound":
			c.Ports[i].ContainerPort = int32(s.inboundPort)
		case "warden-admin":
			c.Ports[i].ContainerPort = int32(s.adminPort)
		}
	}
	uid := int64(s.init.ProxyUID)
	c.SecurityContext.RunAsUser, c.SecurityContext.RunAsGroup = &uid, &uid
	if !s.ebpf {
		c.SecurityContext.Capabilities.Add = nil
	}
	return initC, c
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
	vol := t.socketVolumes[SocketCSI].Name
	if slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vol }) {
		return fmt.Errorf(`inject: the pod has a volume named %s, which warden adds: rename it, or annotate the pod %s: "false"`, vol, AnnotationInject)
	}
	return nil
}

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
