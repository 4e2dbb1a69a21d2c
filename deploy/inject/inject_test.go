package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/agent/ratelimit"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from what Patch returns now")

const testImage = "ghcr.io/warden-sidecar/warden:v0.1.0"

func readPod(t *testing.T, path string) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(b, &pod); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &pod
}

// golden is what a reviewer reads: why the pod was left alone, or the
// patch, and the warnings kubectl would print.
type golden struct {
	Skipped  Reason                `json:"skipped,omitempty"`
	Warnings []string              `json:"warnings,omitempty"`
	Patch    []jsonpatch.Operation `json:"patch,omitempty"`
}

// Each testdata/<name>.yaml pod, patched, is testdata/<name>.golden.yaml:
// every change to what is injected shows in a diff. Refresh with
// go test ./deploy/inject -run Golden -update, and review it.
func TestPatchGolden(t *testing.T) {
	cases := []struct {
		name  string
		scope Scope
	}{
		{"plain", ScopeNamespace},
		{"tuned", ScopeNamespace},
		{"hostpath-socket", ScopeNamespace},
		{"existing-init-containers", ScopeNamespace},
		{"opted-out", ScopeNamespace},
		{"already-injected", ScopeNamespace},
		{"opt-in", ScopeOptIn},
		{"not-opted-in", ScopeOptIn},
		{"host-network", ScopeNamespace},
		{"warnings", ScopeNamespace},
		{"kernel-rate-limit", ScopeNamespace},
		{"probes", ScopeNamespace},
		{"probes-opted-out", ScopeNamespace},
		{"resources", ScopeNamespace},
		{"fast-path-sockmap", ScopeNamespace},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pod := readPod(t, filepath.Join("testdata", c.name+".yaml"))
			ops, res, err := Patch(pod, c.scope, Options{Image: testImage})
			if err != nil {
				t.Fatal(err)
			}
			got, err := yaml.Marshal(golden{Skipped: res.Skipped, Warnings: res.Warnings, Patch: ops})
			if err != nil {
				t.Fatal(err)
			}
			got = append([]byte("# testdata/"+c.name+".yaml, patched: go test ./deploy/inject -run Golden -update rewrites this file.\n"), got...)
			path := filepath.Join("testdata", c.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("patch of %s differs from %s (run with -update and review the diff):\n%s", c.name, path, got)
			}

			// The patch, applied as the API server applies it, gives the
			// pod Inject returns.
			if res.Pod == nil {
				return
			}
			before, _ := json.Marshal(pod)
			after, _ := json.Marshal(res.Pod)
			patched := applyPatch(t, before, ops)
			var want2, got2 any
			_ = json.Unmarshal(after, &want2)
			_ = json.Unmarshal(patched, &got2)
			if !reflect.DeepEqual(want2, got2) {
				t.Errorf("patch applied:\n%s\nwant:\n%s", patched, after)
			}
		})
	}
}

func TestPatchIsStable(t *testing.T) {
	pod := readPod(t, "testdata/existing-init-containers.yaml")
	first, _, err := Patch(pod, ScopeNamespace, Options{Image: testImage})
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		again, _, _ := Patch(pod, ScopeNamespace, Options{Image: testImage})
		if !reflect.DeepEqual(first, again) {
			t.Fatalf("two patches of one pod differ:\n%v\n%v", first, again)
		}
	}
}

func TestInjectLeavesTheInputAlone(t *testing.T) {
	pod := readPod(t, "testdata/tuned.yaml")
	before := pod.DeepCopy()
	if _, err := Inject(pod, ScopeNamespace, Options{Image: testImage}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pod, before) {
		t.Error("Inject changed its input")
	}
}

func TestInjectedContainers(t *testing.T) {
	pod := readPod(t, "testdata/plain.yaml")
	res, err := Inject(pod, ScopeNamespace, Options{Image: testImage})
	if err != nil || res.Pod == nil {
		t.Fatalf("%v %+v", err, res)
	}
	ic := res.Pod.Spec.InitContainers
	if len(ic) != 2 || ic[0].Name != InitContainerName || ic[1].Name != ContainerName {
		t.Fatalf("init containers %v", ic)
	}
	w := ic[1]
	if w.RestartPolicy == nil || *w.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("warden is not a native sidecar (restartPolicy: Always)")
	}
	sc := w.SecurityContext
	if *sc.RunAsUser != 1337 || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation ||
		!reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.Capabilities.Add != nil {
		t.Errorf("warden's security context %+v: want every capability dropped and none added (no kernel limit)", sc)
	}
	env := envMap(w.Env)
	if env["WARDEN_IDENTITY"] != "workloadapi" || env["SPIFFE_ENDPOINT_SOCKET"] != "unix:///spiffe-workload-api/spire-agent.sock" ||
		env["WARDEN_ADMIN_ADDR"] != "0.0.0.0:15000" {
		t.Errorf("warden's env %v", env)
	}
	if w.LivenessProbe.HTTPGet.Path != "/healthz" || w.ReadinessProbe.HTTPGet.Path != "/readyz" || w.LivenessProbe.HTTPGet.Port.StrVal != "warden-admin" {
		t.Errorf("probes %+v %+v", w.LivenessProbe, w.ReadinessProbe)
	}
	if v := res.Pod.Spec.Volumes; len(v) != 1 || v[0].CSI == nil || v[0].CSI.Driver != "csi.spiffe.io" {
		t.Errorf("volumes %+v", v)
	}
	if !reflect.DeepEqual(res.Pod.Spec.Containers, pod.Spec.Containers) || !reflect.DeepEqual(res.Pod.ObjectMeta, pod.ObjectMeta) {
		t.Error("the app's containers or the pod's metadata changed")
	}
	if env := envMap(ic[0].Env); env["WARDEN_ADMIN_ADDR"] != "0.0.0.0:15000" || env["WARDEN_PROXY_UID"] != "1337" || len(env) != 2 {
		t.Errorf("warden-init's env %v", env)
	}

}

// warden gets NET_ADMIN, BPF and PERFMON only when it will load its eBPF
// program: ebpf mode, or auto mode with a connection or packet rate.
// Otherwise it runs with every capability dropped.
func TestCapabilitiesOnlyForAKernelFeature(t *testing.T) {
	kernelCaps := []corev1.Capability{"NET_ADMIN", "BPF", "PERFMON"}
	tests := []struct {
		name        string
		annotations map[string]string
		caps        []corev1.Capability
	}{
		{"no annotation: auto without limits", nil, nil},
		{"auto with a connection rate", map[string]string{"warden.io/conn-rate-limit": "100"}, kernelCaps},
		{"auto with a packet rate", map[string]string{"warden.io/packet-rate-limit": "1000"}, kernelCaps},
		{"auto, explicit, with a connection rate", map[string]string{"warden.io/rate-limit-mode": "auto", "warden.io/conn-rate-limit": " 5 "}, kernelCaps},
		{"auto with rates of 0", map[string]string{"warden.io/conn-rate-limit": "0", "warden.io/packet-rate-limit": "0"}, nil},
		{"auto with bursts only", map[string]string{"warden.io/conn-burst": "10", "warden.io/packet-burst": "10"}, nil},
		{"auto with another kernel setting only", map[string]string{"warden.io/bpf-attach": "tc", "warden.io/bpf-max-sources": "1024"}, nil},
		{"ebpf without limits", map[string]string{"warden.io/rate-limit-mode": "ebpf"}, kernelCaps},
		{"ebpf with a rate", map[string]string{"warden.io/rate-limit-mode": "ebpf", "warden.io/conn-rate-limit": "100"}, kernelCaps},
		{"userspace with rates", map[string]string{"warden.io/rate-limit-mode": "userspace", "warden.io/conn-rate-limit": "100", "warden.io/packet-rate-limit": "100"}, nil},
		{"off with a rate", map[string]string{"warden.io/rate-limit-mode": "off", "warden.io/conn-rate-limit": "100"}, nil},
		{"fast path sockmap", map[string]string{"warden.io/fast-path": "sockmap"}, kernelCaps},
		{"fast path auto", map[string]string{"warden.io/fast-path": "auto"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := readPod(t, "testdata/plain.yaml")
			pod.Annotations = tt.annotations
			res, err := Inject(pod, ScopeNamespace, Options{Image: testImage})
			if err != nil {
				t.Fatal(err)
			}
			got := res.Pod.Spec.InitContainers[1].SecurityContext.Capabilities
			if !reflect.DeepEqual(got.Add, tt.caps) || !reflect.DeepEqual(got.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("capabilities add %v drop %v, want add %v drop [ALL]", got.Add, got.Drop, tt.caps)
			}
			// The webhook and warden's own start decide alike.
			env := envMap(res.Pod.Spec.InitContainers[1].Env)
			cfg, err := config.FromEnv(func(name string) string {
				switch name {
				case "WARDEN_IDENTITY":
					return "dev" // workloadapi would need the socket
				case "WARDEN_POD_UID":
					return "3a7d1e2f-5b6c-4d8e-9f01-23456789abcd" // the downward API's
				}
				return env[name]
			})
			if err != nil {
				t.Fatal(err)
			}
			st := ratelimit.Settings{Mode: cfg.RateLimitMode, Limits: ratelimit.Limits{ConnRate: cfg.ConnRateLimit, PacketRate: cfg.PacketRateLimit}}
			loads := cfg.RateLimitMode == config.RateLimitEBPF || cfg.RateLimitMode == config.RateLimitAuto && len(st.KernelFeatures()) > 0
			loads = loads || cfg.FastPath == config.FastPathSockmap // agent.startFastPath fails without them
			if loads != (got.Add != nil) {
				t.Errorf("agent/ratelimit or the sockmap fast path would load eBPF: %v; the webhook adds %v", loads, got.Add)
			}
		})
	}
}

func TestUpstreamPortReachesBothContainers(t *testing.T) {
	pod := readPod(t, "testdata/plain.yaml")
	pod.Annotations = map[string]string{"warden.io/upstream-port": "9000", "warden.io/upstream-addr": "127.0.0.2:8080", "warden.io/log-level": "warn"}
	res, err := Inject(pod, ScopeNamespace, Options{Image: testImage})
	if err != nil {
		t.Fatal(err)
	}
	side, init := envMap(res.Pod.Spec.InitContainers[1].Env), envMap(res.Pod.Spec.InitContainers[0].Env)
	for _, env := range []map[string]string{side, init} {
		if env["WARDEN_UPSTREAM_PORT"] != "9000" || env["WARDEN_UPSTREAM_ADDR"] != "127.0.0.2:8080" {
			t.Errorf("sidecar %v, init %v", side, init)
		}
	}
	if _, ok := init["WARDEN_LOG_LEVEL"]; ok {
		t.Error("warden init got a variable only the sidecar reads")
	}
}

func TestBadAnnotationsAreRefusedByName(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		hostNetwork bool
		want        string
	}{
		{"typo in a variable", map[string]string{"warden.io/upstream-prt": "8080"},
			false, "inject: unknown annotation warden.io/upstream-prt (did you mean warden.io/upstream-port?): warden.io/<name> must be warden.io/inject, warden.io/spiffe-socket-source, warden.io/rewrite-probes, warden.io/cpu-request, warden.io/cpu-limit, warden.io/memory-request, warden.io/memory-limit or name a variable WARDEN_<NAME> of warden or warden init (see the README's configuration table)"},
		{"typo in the opt-in", map[string]string{"warden.io/injct": "true"},
			false, "inject: unknown annotation warden.io/injct (did you mean warden.io/inject?)"},
		{"several unknown", map[string]string{"warden.io/zzz": "1", "warden.io/Upstream_Port": "1"},
			false, "inject: unknown annotations warden.io/Upstream_Port (did you mean warden.io/upstream-port?), warden.io/zzz: "},
		{"invalid number", map[string]string{"warden.io/conn-rate-limit": "fast"},
			false, `inject: annotation warden.io/conn-rate-limit: config: WARDEN_CONN_RATE_LIMIT="fast": expected a whole number from 0 (unlimited) to 1000000000`},
		{"invalid upstream port", map[string]string{"warden.io/upstream-port": "http"},
			false, `inject: annotation warden.io/upstream-port: config: WARDEN_UPSTREAM_PORT="http": expected a port from 1 to 65535 (it replaces the port of WARDEN_UPSTREAM_ADDR)`},
		{"invalid peers", map[string]string{"warden.io/allowed-peers": "frontend"},
			false, `inject: annotation warden.io/allowed-peers: config: WARDEN_ALLOWED_PEERS="frontend": expected comma-separated SPIFFE IDs or prefixes ending in /*`},
		{"invalid rate limit mode", map[string]string{"warden.io/rate-limit-mode": "fast"},
			false, `inject: annotation warden.io/rate-limit-mode: config: WARDEN_RATE_LIMIT_MODE="fast": expected one of auto, ebpf, userspace, off`},
		{"a JWT setting without keys", map[string]string{"warden.io/jwt-audiences": "orders"},
			false, `inject: annotation warden.io/jwt-audiences: config: WARDEN_JWT_AUDIENCES is set but WARDEN_JWT_JWKS is empty`},
		{"keys without audiences", map[string]string{"warden.io/jwt-jwks": "https://sts.example/jwks", "warden.io/jwt-issuers": "https://sts.example"},
			false, `inject: annotation warden.io/jwt-audiences is missing: config: WARDEN_JWT_AUDIENCES is empty`},
		{"keys without issuers", map[string]string{"warden.io/jwt-jwks": "https://sts.example/jwks", "warden.io/jwt-audiences": "orders"},
			false, `inject: annotation warden.io/jwt-jwks: config: WARDEN_JWT_ISSUERS is empty`},
		{"invalid redirect ports", map[string]string{"warden.io/redirect-ports": "80,http"},
			false, `inject: annotation warden.io/redirect-ports: config: WARDEN_REDIRECT_PORTS="80,http": expected comma-separated ports from 1 to 65535, or *`},
		{"upstream on the admin port", map[string]string{"warden.io/upstream-port": "15000"},
			false, `inject: annotation warden.io/upstream-port: config: WARDEN_UPSTREAM_PORT="15000": expected ports other than warden's admin port 15000`},
		{"root proxy uid", map[string]string{"warden.io/proxy-uid": "0"},
			false, `inject: annotation warden.io/proxy-uid: config: WARDEN_PROXY_UID="0": expected warden's own user ID`},
		{"admin on loopback", map[string]string{"warden.io/admin-addr": "127.0.0.1:15000"},
			false, `inject: annotation warden.io/admin-addr="127.0.0.1:15000": expected an address the kubelet can reach`},
		{"inbound on one address", map[string]string{"warden.io/inbound-addr": "127.0.0.1:15443"},
			false, `inject: annotation warden.io/inbound-addr="127.0.0.1:15443": expected a wildcard address such as 0.0.0.0:15443 or [::]:15443`},
		{"identity is the webhook's", map[string]string{"warden.io/identity": "dev"},
			false, "inject: annotation warden.io/identity: WARDEN_IDENTITY cannot be set by annotation: the webhook sets it to workloadapi"},
		{"inject is a boolean", map[string]string{"warden.io/inject": "yes"},
			false, `inject: annotation warden.io/inject="yes": expected "true" or "false"`},
		{"socket source", map[string]string{"warden.io/spiffe-socket-source": "host"},
			false, `inject: annotation warden.io/spiffe-socket-source="host": expected csi (the SPIFFE CSI driver) or hostpath`},
		{"rewrite-probes is a boolean", map[string]string{"warden.io/rewrite-probes": "no"},
			false, `inject: annotation warden.io/rewrite-probes="no": expected "true" (the default: the app's HTTP and gRPC probes of redirected ports go through warden's admin port) or "false"`},
		{"typo in rewrite-probes", map[string]string{"warden.io/rewrite-probe": "false"},
			false, `inject: unknown annotation warden.io/rewrite-probe (did you mean warden.io/rewrite-probes?)`},
		{"the app's probes are the webhook's", map[string]string{"warden.io/app-probes": `{}`},
			false, `inject: annotation warden.io/app-probes: WARDEN_APP_PROBES cannot be set by annotation: the webhook sets it`},
		{"a quantity that does not parse", map[string]string{"warden.io/cpu-request": "half"},
			false, `inject: annotation warden.io/cpu-request="half": expected a Kubernetes quantity such as 100m, 0.5 or 128Mi: quantities must match the regular expression`},
		{"a memory limit of 0", map[string]string{"warden.io/memory-limit": "0"},
			false, `inject: annotation warden.io/memory-limit="0": expected a quantity above 0`},
		{"a negative cpu limit", map[string]string{"warden.io/cpu-limit": "-1"},
			false, `inject: annotation warden.io/cpu-limit="-1": expected a quantity above 0`},
		{"a request above its annotated limit", map[string]string{"warden.io/cpu-request": "2", "warden.io/cpu-limit": "500m"},
			false, `inject: annotation warden.io/cpu-limit="500m": expected at least the cpu request 2 (from warden.io/cpu-request)`},
		{"a limit below the default request", map[string]string{"warden.io/memory-limit": "32Mi"},
			false, `inject: annotation warden.io/memory-limit="32Mi": expected at least the memory request 64Mi (the webhook's default)`},
		{"a request above the default limit", map[string]string{"warden.io/memory-request": "1Gi"},
			false, `inject: annotation warden.io/memory-request="1Gi": expected at most the memory limit 256Mi (the webhook's default; raise it with warden.io/memory-limit)`},
		{"a typo in a resource", map[string]string{"warden.io/cpu-requests": "1"},
			false, `inject: unknown annotation warden.io/cpu-requests (did you mean warden.io/cpu-request?)`},
		{"explicit opt-in on the host network", map[string]string{"warden.io/inject": "true"},
			true, `inject: annotation warden.io/inject: "true" on a hostNetwork pod`},
		{"fast path that is no mode", map[string]string{"warden.io/fast-path": "on"},
			false, `inject: annotation warden.io/fast-path: config: WARDEN_FAST_PATH="on": expected one of auto, sockmap, off`},
		{"a cgroup beside sockmap", map[string]string{"warden.io/fast-path": "sockmap", "warden.io/fast-path-cgroup": "/sys/fs/cgroup"},
			false, `inject: annotation warden.io/fast-path-cgroup: with warden.io/fast-path: "sockmap" the webhook sets WARDEN_FAST_PATH_CGROUP=pod, the pod's cgroup: the only one that holds warden and the app; remove warden.io/fast-path-cgroup`},
		{"the pod's UID is the webhook's", map[string]string{"warden.io/pod-uid": "3a7d1e2f-5b6c-4d8e-9f01-23456789abcd"},
			false, `inject: annotation warden.io/pod-uid: WARDEN_POD_UID cannot be set by annotation: the webhook passes it, with warden.io/fast-path: "sockmap", from the pod's metadata.uid`},
		{"the host cgroup mount is the webhook's", map[string]string{"warden.io/fast-path-host-cgroup": "/host"},
			false, `inject: annotation warden.io/fast-path-host-cgroup: WARDEN_FAST_PATH_HOST_CGROUP cannot be set by annotation: the webhook mounts the node's cgroup tree there`},
		{"checked even when opted out", map[string]string{"warden.io/inject": "false", "warden.io/conn-rate-limit": "-1"},
			false, `inject: annotation warden.io/conn-rate-limit: config: WARDEN_CONN_RATE_LIMIT="-1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, scope := range []Scope{ScopeNamespace, ScopeOptIn} {
				pod := readPod(t, "testdata/plain.yaml")
				pod.Annotations = tt.annotations
				pod.Spec.HostNetwork = tt.hostNetwork
				ops, res, err := Patch(pod, scope, Options{Image: testImage})
				if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
					t.Fatalf("scope %d: got %v (%+v, %d ops), want an error starting %q", scope, err, res, len(ops), tt.want)
				}
			}
		})
	}
}

func TestNameConflictsAreRefused(t *testing.T) {
	pod := readPod(t, "testdata/plain.yaml")
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: InitContainerName, Image: "x"})
	if _, err := Inject(pod, ScopeNamespace, Options{Image: testImage}); err == nil || !strings.Contains(err.Error(), "has a container named warden-init but none named warden") {
		t.Errorf("container: %v", err)
	}
	pod = readPod(t, "testdata/plain.yaml")
	pod.Spec.Volumes = []corev1.Volume{{Name: "warden-spiffe-workload-api"}}
	if _, err := Inject(pod, ScopeNamespace, Options{Image: testImage}); err == nil || !strings.Contains(err.Error(), "has a volume named warden-spiffe-workload-api") {
		t.Errorf("volume: %v", err)
	}
}

// Every variable of the sidecar and of warden init has its annotation,
// except the ones the webhook owns, and the annotation maps back.
func TestEveryVariableHasAnAnnotation(t *testing.T) {
	if !reads("WARDEN_REDIRECT_PORTS", config.BySidecar) || !reads("WARDEN_UPSTREAM_PORT", config.ByInit) ||
		!reads("WARDEN_ADMIN_ADDR", config.ByInit) || reads("WARDEN_LOG_LEVEL", config.ByInit) || reads("WARDEN_WEBHOOK_ADDR", config.BySidecar|config.ByInit) {
		t.Error("readers of the table")
	}
	for _, v := range config.Vars {
		name := v.Name
		if !strings.HasPrefix(name, "WARDEN_") || v.Readers&(config.BySidecar|config.ByInit) == 0 {
			continue
		}
		key := AnnotationFor(name)
		got, ok := variableFor(key)
		if !ok || got != name {
			t.Errorf("%s: annotation %s maps to %q %v", name, key, got, ok)
		}
	}
	if AnnotationFor("WARDEN_UPSTREAM_PORT") != "warden.io/upstream-port" || AnnotationFor("WARDEN_REDIRECT_PORTS") != "warden.io/redirect-ports" {
		t.Error("AnnotationFor")
	}
}

// applyPatch applies RFC 6902 add, remove and replace operations, as the
// API server does, to a JSON document.
func applyPatch(t *testing.T, doc []byte, ops []jsonpatch.Operation) []byte {
	t.Helper()
	var root any
	if err := json.Unmarshal(doc, &root); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		var value any
		if op.Value != nil {
			b, _ := json.Marshal(op.Value)
			_ = json.Unmarshal(b, &value)
		}
		segs := strings.Split(op.Path, "/")[1:]
		for i := range segs {
			segs[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(segs[i])
		}
		root = applyOp(t, root, segs, op.Operation, value)
	}
	out, _ := json.Marshal(root)
	return out
}

func applyOp(t *testing.T, node any, path []string, op string, value any) any {
	t.Helper()
	key := path[0]
	switch n := node.(type) {
	case map[string]any:
		if len(path) > 1 {
			n[key] = applyOp(t, n[key], path[1:], op, value)
			return n
		}
		switch op {
		case "add", "replace":
			n[key] = value
		case "remove":
			delete(n, key)
		}
		return n
	case []any:
		i, err := strconv.Atoi(key)
		if key == "-" {
			i, err = len(n), nil
		}
		if err != nil || i < 0 || i > len(n) {
			t.Fatalf("bad index %q in %d elements", key, len(n))
		}
		if len(path) > 1 {
			n[i] = applyOp(t, n[i], path[1:], op, value)
			return n
		}
		switch op {
		case "add":
			return append(n[:i], append([]any{value}, n[i:]...)...)
		case "replace":
			n[i] = value
		case "remove":
			return append(n[:i], n[i+1:]...)
		}
		return n
	}
	t.Fatalf("path %v into %T", path, node)
	return nil
}

// The annotation an error of agent/config is blamed on comes from the
// *config.Error, not from the variables its message happens to name.
func TestBlameReadsTheTypedError(t *testing.T) {
	a := annotations{from: map[string]string{
		"WARDEN_ADMIN_ADDR":   "warden.io/admin-addr",
		"WARDEN_JWT_JWKS":     "warden.io/jwt-jwks",
		"WARDEN_READ_TIMEOUT": "warden.io/read-timeout",
	}}
	// Expected names WARDEN_ADMIN_ADDR, which an annotation set, first.
	readTimeout := &config.Error{Variable: "WARDEN_READ_TIMEOUT", Value: "soon", Expected: "a duration (not WARDEN_ADMIN_ADDR)"}
	issuers := &config.Error{Variable: "WARDEN_JWT_ISSUERS", Related: "WARDEN_JWT_JWKS", Expected: "iss values with WARDEN_JWT_JWKS"}
	tests := []struct {
		name string
		a    annotations
		err  error
		want string
	}{
		{"the variable at fault", a, readTimeout, `inject: annotation warden.io/read-timeout: config: WARDEN_READ_TIMEOUT="soon"`},
		{"wrapped", a, fmt.Errorf("startup: %w", readTimeout), "inject: annotation warden.io/read-timeout: startup: config: WARDEN_READ_TIMEOUT"},
		{"the variable at fault is missing", annotations{from: map[string]string{"WARDEN_ADMIN_ADDR": "warden.io/admin-addr"}}, readTimeout,
			"inject: annotation warden.io/read-timeout is missing: "},
		{"the related variable was annotated", a, issuers, "inject: annotation warden.io/jwt-jwks: config: WARDEN_JWT_ISSUERS"},
		{"only the webhook's variables", a, &config.Error{Variable: "SPIFFE_ENDPOINT_SOCKET", Related: "WARDEN_IDENTITY", Expected: "a socket"},
			`inject: config: SPIFFE_ENDPOINT_SOCKET=""`},
		{"not a configuration error", a, errors.New("WARDEN_ADMIN_ADDR is busy"), "inject: WARDEN_ADMIN_ADDR is busy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.a.blame(tt.err)
			if !strings.HasPrefix(err.Error(), tt.want) || !errors.Is(err, tt.err) {
				t.Errorf("got %v, want it to start %q and wrap the error", err, tt.want)
			}
		})
	}
}

// An annotation set to "" gives the container an empty variable, which
// means what it means in the container: no outbound listener, no header
// stripped.
func TestEmptyAnnotationIsAnEmptyValue(t *testing.T) {
	pod := readPod(t, "testdata/plain.yaml")
	pod.Annotations = map[string]string{"warden.io/strip-headers": "", "warden.io/outbound-addr": ""}
	res, err := Inject(pod, ScopeNamespace, Options{Image: testImage})
	if err != nil || res.Pod == nil {
		t.Fatalf("%v, %+v", err, res)
	}
	sidecar := res.Pod.Spec.InitContainers[1]
	env := map[string]string{}
	for _, e := range sidecar.Env {
		env[e.Name] = e.Value
	}
	v, ok := env["WARDEN_STRIP_HEADERS"]
	if !ok || v != "" {
		t.Fatalf("sidecar env %v", sidecar.Env)
	}
	env["WARDEN_IDENTITY"] = config.IdentityDev // what the sidecar makes of it, without a SPIRE socket
	c, err := config.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil || c.StripHeaders != nil || c.OutboundAddr != "" {
		t.Errorf("the sidecar reads %v, %q: %v", c.StripHeaders, c.OutboundAddr, err)
	}
}

// The probes the webhook rewrites are the ones warden serves: the
// sidecar's environment passes warden's own checks, and every rewritten
// probe's path names a probe of WARDEN_APP_PROBES on the admin port.
func TestRewrittenProbesAreServedByTheSidecar(t *testing.T) {
	pod := readPod(t, "testdata/probes.yaml")
	res, err := Inject(pod, ScopeNamespace, Options{Image: testImage})
	if err != nil || res.Pod == nil {
		t.Fatalf("%v %+v", err, res)
	}
	env := envMap(res.Pod.Spec.InitContainers[1].Env)
	cfg, err := config.Check(func(name string) (string, bool) { v, ok := env[name]; return v, ok })
	if err != nil {
		t.Fatalf("the sidecar's environment: %v", err)
	}
	if len(cfg.AppProbes) != 3 {
		t.Fatalf("WARDEN_APP_PROBES has %d probes: %v", len(cfg.AppProbes), cfg.AppProbes)
	}
	served := 0
	for _, c := range res.Pod.Spec.Containers {
		for _, k := range probeKinds {
			p := *k.get(&c)
			if p == nil || p.HTTPGet == nil || !strings.HasPrefix(p.HTTPGet.Path, "/app-health/") {
				continue
			}
			served++
			key := strings.TrimPrefix(p.HTTPGet.Path, "/app-health/")
			if _, ok := cfg.AppProbes[key]; !ok || p.HTTPGet.Port.IntValue() != 15000 || p.HTTPGet.Scheme != corev1.URISchemeHTTP || len(p.HTTPGet.HTTPHeaders) != 0 {
				t.Errorf("container %s %s: %+v, probes %v", c.Name, k.field, p.HTTPGet, cfg.AppProbes)
			}
		}
	}
	if served != len(cfg.AppProbes) {
		t.Errorf("%d probes rewritten, %d in WARDEN_APP_PROBES", served, len(cfg.AppProbes))
	}
	// Opted out: nothing rewritten, no WARDEN_APP_PROBES.
	pod.Annotations[AnnotationRewriteProbes] = "false"
	res, err = Inject(pod, ScopeNamespace, Options{Image: testImage})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := envMap(res.Pod.Spec.InitContainers[1].Env)["WARDEN_APP_PROBES"]; ok || !reflect.DeepEqual(res.Pod.Spec.Containers, pod.Spec.Containers) {
		t.Error("warden.io/rewrite-probes: \"false\" still rewrote the probes")
	}
}

// The webhook's injection defaults (WARDEN_SIDECAR_CPU_REQUEST, ...,
// WARDEN_SIDECAR_RATE_LIMIT_MODE) replace sidecar.yaml's and warden's, and
// a pod's annotations replace them.
func TestWebhookDefaults(t *testing.T) {
	opts, err := NewOptions(config.Webhook{SidecarImage: testImage, CPULimit: "2", MemoryRequest: "128Mi", MemoryLimit: "1Gi", RateLimitMode: "userspace"})
	if err != nil {
		t.Fatal(err)
	}
	pod := readPod(t, "testdata/plain.yaml")
	res, err := Inject(pod, ScopeNamespace, opts)
	if err != nil {
		t.Fatal(err)
	}
	w := res.Pod.Spec.InitContainers[1]
	r := w.Resources
	if r.Requests.Cpu().String() != "50m" || r.Limits.Cpu().String() != "2" || r.Requests.Memory().String() != "128Mi" || r.Limits.Memory().String() != "1Gi" {
		t.Errorf("resources %+v", r)
	}
	if envMap(w.Env)["WARDEN_RATE_LIMIT_MODE"] != "userspace" {
		t.Errorf("env %v", envMap(w.Env))
	}
	pod.Annotations = map[string]string{"warden.io/rate-limit-mode": "ebpf", "warden.io/memory-limit": "512Mi"}
	res, err = Inject(pod, ScopeNamespace, opts)
	if err != nil {
		t.Fatal(err)
	}
	w = res.Pod.Spec.InitContainers[1]
	if envMap(w.Env)["WARDEN_RATE_LIMIT_MODE"] != "ebpf" || w.Resources.Limits.Memory().String() != "512Mi" || w.SecurityContext.Capabilities.Add == nil {
		t.Errorf("annotated: env %v, resources %+v, caps %+v", envMap(w.Env), w.Resources, w.SecurityContext.Capabilities)
	}

	_, err = NewOptions(config.Webhook{SidecarImage: testImage, MemoryRequest: "512Mi"})
	if want := "inject: the injected memory request 512Mi is above its limit 256Mi: set WARDEN_SIDECAR_MEMORY_REQUEST and WARDEN_SIDECAR_MEMORY_LIMIT together"; err == nil || err.Error() != want {
		t.Errorf("a default request above the default limit: %v", err)
	}
	if opts, err := NewOptions(config.Webhook{SidecarImage: testImage}); err != nil || opts.Resources.Requests != nil || opts.Resources.Limits != nil || opts.RateLimitMode != "" {
		t.Errorf("no defaults: %+v %v", opts, err)
	}
}

// warden.io/fast-path: "sockmap" adds to the sidecar exactly a read-only
// mount of the node's /sys/fs/cgroup, the variables that point warden at
// the pod's cgroup, and the pod's UID from the downward API; no other
// value, and no annotation, adds any of it.
func TestFastPathSockmapGrantsThePodsCgroup(t *testing.T) {
	inject := func(annotations map[string]string) *corev1.Pod {
		t.Helper()
		pod := readPod(t, "testdata/plain.yaml")
		pod.Annotations = annotations
		res, err := Inject(pod, ScopeNamespace, Options{Image: testImage})
		if err != nil {
			t.Fatal(err)
		}
		return res.Pod
	}
	plain := inject(nil)
	pod := inject(map[string]string{"warden.io/fast-path": "sockmap"})

	dir := corev1.HostPathDirectory
	wantVol := corev1.Volume{Name: "warden-host-cgroup", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/sys/fs/cgroup", Type: &dir}}}
	if got := pod.Spec.Volumes; len(got) != len(plain.Spec.Volumes)+1 || !reflect.DeepEqual(got[len(got)-1], wantVol) {
		t.Errorf("volumes %+v, want those of a plain pod and %+v", got, wantVol)
	}
	side, plainSide := pod.Spec.InitContainers[1], plain.Spec.InitContainers[1]
	rro := corev1.RecursiveReadOnlyIfPossible
	wantMount := corev1.VolumeMount{Name: "warden-host-cgroup", MountPath: "/run/warden/host-cgroup", ReadOnly: true, RecursiveReadOnly: &rro}
	if got := side.VolumeMounts; len(got) != len(plainSide.VolumeMounts)+1 || !reflect.DeepEqual(got[len(got)-1], wantMount) {
		t.Errorf("warden's mounts %+v, want those of a plain pod and %+v", got, wantMount)
	}
	wantEnv := append(append([]corev1.EnvVar{}, plainSide.Env...),
		corev1.EnvVar{Name: "WARDEN_FAST_PATH", Value: "sockmap"},
		corev1.EnvVar{Name: "WARDEN_FAST_PATH_CGROUP", Value: "pod"},
		corev1.EnvVar{Name: "WARDEN_FAST_PATH_HOST_CGROUP", Value: "/run/warden/host-cgroup"},
		corev1.EnvVar{Name: "WARDEN_POD_UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.uid"}}})
	if !reflect.DeepEqual(side.Env, wantEnv) {
		t.Errorf("warden's env %+v, want %+v", side.Env, wantEnv)
	}
	for _, c := range pod.Spec.InitContainers[:1] {
		if len(c.VolumeMounts) != len(plain.Spec.InitContainers[0].VolumeMounts) {
			t.Errorf("%s got a mount: %+v", c.Name, c.VolumeMounts)
		}
	}
	// warden, given that environment, starts for the pod's cgroup.
	env := envMap(side.Env)
	env["WARDEN_POD_UID"] = "3a7d1e2f-5b6c-4d8e-9f01-23456789abcd" // what the kubelet puts there
	cfg, err := config.FromEnv(func(name string) string {
		if name == "WARDEN_IDENTITY" {
			return "dev"
		}
		return env[name]
	})
	if err != nil || cfg.FastPath != "sockmap" || cfg.FastPathCgroup != config.FastPathCgroupPod || cfg.FastPathHostCgroup != HostCgroupMountPath {
		t.Errorf("warden's config: %+v, %v", cfg, err)
	}

	for _, a := range []map[string]string{nil, {"warden.io/fast-path": "auto"}, {"warden.io/fast-path": "off"}} {
		p := inject(a)
		if !reflect.DeepEqual(p.Spec.Volumes, plain.Spec.Volumes) || !reflect.DeepEqual(p.Spec.InitContainers[1].VolumeMounts, plainSide.VolumeMounts) {
			t.Errorf("%v: volumes %+v, mounts %+v: want a plain pod's", a, p.Spec.Volumes, p.Spec.InitContainers[1].VolumeMounts)
		}
		for _, e := range p.Spec.InitContainers[1].Env {
			if e.Name == "WARDEN_POD_UID" || e.Name == "WARDEN_FAST_PATH_CGROUP" || e.Name == "WARDEN_FAST_PATH_HOST_CGROUP" {
				t.Errorf("%v: warden got %s", a, e.Name)
			}
		}
	}

	named := readPod(t, "testdata/plain.yaml")
	named.Spec.Volumes = []corev1.Volume{{Name: "warden-host-cgroup"}}
	if _, err := Inject(named, ScopeNamespace, Options{Image: testImage}); err == nil || !strings.Contains(err.Error(), "has a volume named warden-host-cgroup") {
		t.Errorf("volume name conflict: %v", err)
	}
}
