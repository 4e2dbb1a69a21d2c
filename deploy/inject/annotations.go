package inject

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/warden-sidecar/warden/agent/config"
)

// Variables an annotation may not set: the webhook owns them.
var owned = map[string]string{
	"WARDEN_IDENTITY":              "the webhook sets it to workloadapi: an injected warden gets its SVIDs from the SPIRE agent",
	"WARDEN_DEV_DIR":               "it belongs to WARDEN_IDENTITY=dev, which an injected warden never uses",
	"WARDEN_SPIFFE_ID":             "it belongs to WARDEN_IDENTITY=dev, which an injected warden never uses",
	"WARDEN_POD_UID":               "the webhook passes it, with " + AnnotationFastPath + `: "sockmap", from the pod's metadata.uid`,
	"WARDEN_FAST_PATH_HOST_CGROUP": "the webhook mounts the node's cgroup tree there with " + AnnotationFastPath + `: "sockmap"`,
	"WARDEN_APP_PROBES":            "the webhook sets it from the app's probes it rewrites (" + AnnotationRewriteProbes + `: "false" turns that off)`,
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
	inject string // "", "true" or "false"
	socket string // "", SocketCSI or SocketHostPath
	// rewriteProbes is "", "true" or "false" (AnnotationRewriteProbes).
	rewriteProbes string
	// resources are the quantities of the resource annotations, by key.
	resources map[string]resource.Quantity
	vars      map[string]string // variable → value
	from      map[string]string // variable → the annotation that set it
}

func readAnnotations(all map[string]string) (annotations, error) {
	a := annotations{vars: make(map[string]string), from: make(map[string]string), resources: make(map[string]resource.Quantity)}
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
		case AnnotationRewriteProbes:
			if v != "true" && v != "false" {
				return a, fmt.Errorf(`inject: annotation %s=%q: expected "true" (the default: the app's HTTP and gRPC probes of redirected ports go through warden's admin port) or "false"`, k, v)
			}
			a.rewriteProbes = v
		case AnnotationCPURequest, AnnotationCPULimit, AnnotationMemoryRequest, AnnotationMemoryLimit:
			q, err := parseQuantity(k, v)
			if err != nil {
				return a, err
			}
			a.resources[k] = q
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
	return fmt.Errorf("inject: unknown %s %s: warden.io/<name> must be %s or name a variable WARDEN_<NAME> of warden or warden init (see the README's configuration table)",
		noun, strings.Join(named, ", "), strings.Join(ownAnnotations(), ", "))
}

// ownAnnotations are the annotations that set no variable.
func ownAnnotations() []string {
	return []string{AnnotationInject, AnnotationSocketSource, AnnotationRewriteProbes,
		AnnotationCPURequest, AnnotationCPULimit, AnnotationMemoryRequest, AnnotationMemoryLimit}
}

// suggest finds the known annotation closest to a misspelt one.
func suggest(key string) string {
	candidates := ownAnnotations()
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
