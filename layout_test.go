// The layout test sits at the module's root, in a package of its own with
// no code, because its rules are about the whole module: it belongs to no
// package it checks, and a failure here points at CONTRIBUTING's Layout
// section, which lists the same rules.
package warden_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// layoutRules are the import rules of CONTRIBUTING's Layout section; change
// both together. Patterns name warden's packages relative to the module
// ("agent/proxy", "agent/..." for it and everything below, "..." for all of
// warden), or other modules' packages by their full path
// ("github.com/cilium/ebpf/..."). A rule holds for what its packages
// depend on, directly or not, as built; with tests it holds for what their
// tests import too.
var layoutRules = []struct {
	from  []string // the packages the rule is about
	deny  []string // what they must not depend on
	allow []string // exceptions to deny
	tests bool     // their tests are held to it too
	why   string
}{
	{
		from:  []string{"internal/..."},
		deny:  []string{"..."},
		allow: []string{"internal/..."},
		tests: true,
		why:   "internal/ is what several packages share: it imports nothing of warden's but internal/",
	},
	{
		from:  []string{"spiffe/...", "bundle/...", "bpf/..."},
		deny:  []string{"agent/...", "cmd/...", "deploy/...", "bench/..."},
		tests: true,
		why:   "dependencies point inward: spiffe, bundle and bpf never import the agent, the binary, the deployment or the benchmarks",
	},
	{
		from:  []string{"agent/proxy"},
		deny:  []string{"..."},
		allow: []string{"internal/...", "agent/pep"},
		why: "the data path holds no identity, policy or rate-limit logic: it gets them as functions and interfaces " +
			"(AllowPeer, Guard, Limiter) and imports nothing of warden's but internal/ and the pipeline's contract (agent/pep)",
	},
	{
		from:  []string{"agent/pep"},
		deny:  []string{"..."},
		allow: []string{"internal/..."},
		tests: true,
		why:   "agent/pep is the decision pipeline's contract, types only: every protocol path imports it, so it imports nothing of warden's but internal/",
	},
	{
		from:  []string{"agent/inspect"},
		deny:  []string{"..."},
		allow: []string{"internal/..."},
		tests: true,
		why:   "agent/inspect checks the bodies it is handed against the limits it is given: it imports nothing of warden's but internal/",
	},
	{
		from:  []string{"agent/openapi"},
		deny:  []string{"..."},
		allow: []string{"internal/...", "agent/pep"},
		tests: true,
		why: "agent/openapi validates requests for the pipeline, which passes it what it needs: " +
			"it imports nothing of warden's but internal/ and the pipeline's contract (agent/pep)",
	},
	{
		from:  []string{"agent/signature"},
		deny:  []string{"..."},
		allow: []string{"internal/...", "agent/pep", "agent/token"},
		tests: true,
		why: "agent/signature verifies and makes HTTP message signatures for the pipeline and the outbound proxy, which wire it: " +
			"it imports nothing of warden's but internal/, the pipeline's contract (agent/pep) and the key sets of agent/token",
	},
	{
		from: []string{"agent/proxy"},
		deny: []string{"github.com/cilium/ebpf/...", "github.com/go-jose/...", "google.golang.org/grpc/...", "github.com/prometheus/..."},
		why: "the data path does not pull in the eBPF loader, JOSE, gRPC or a metrics library " +
			"(read a peer's SPIFFE ID with go-spiffe's x509svid, not warden's spiffe package, whose Workload API client is gRPC; " +
			"tell the Observer, which agent/metrics implements, what each request came to)",
	},
	{
		from: []string{"..."},
		deny: []string{"spiffe/spiffetest", "agent/token/tokentest", "bpf/bpftest", "deploy/kubetest"},
		why:  "test helpers are imported by _test.go files only",
	},
	{
		from:  []string{"..."},
		deny:  []string{"cmd/..."},
		tests: true,
		why:   "cmd/ is main packages: nothing imports them",
	},
	{
		from:  []string{"agent/...", "spiffe/...", "bundle/...", "bpf/...", "deploy/...", "internal/...", "cmd/..."},
		deny:  []string{"bench/..."},
		tests: true,
		why:   "bench/ holds the benchmarks' tools: nothing warden runs or ships imports them",
	},
}

// listedPackage is what the rules need of `go list -json`.
type listedPackage struct {
	ImportPath   string
	Imports      []string
	Deps         []string
	TestImports  []string
	XTestImports []string
	Standard     bool
	Module       *struct {
		Path string
		Main bool
	}
}

func TestLayout(t *testing.T) {
	pkgs, mod := goList(t)
	if len(pkgs) == 0 || mod == "" {
		t.Fatal("go list found no package of this module")
	}
	// rel names a package as the patterns do: relative to the module when
	// it is warden's, by its full path otherwise.
	rel := func(path string) string {
		if path == mod {
			return "."
		}
		if r, ok := strings.CutPrefix(path, mod+"/"); ok {
			return r
		}
		return path
	}
	ours := func(path string) bool { return path == mod || strings.HasPrefix(path, mod+"/") }

	var checked int
	for _, r := range layoutRules {
		for _, p := range pkgs {
			if !ours(p.ImportPath) || !matchAny(r.from, rel(p.ImportPath), true) {
				continue
			}
			checked++
			direct := p.Imports
			if r.tests {
				direct = slices.Concat(p.Imports, p.TestImports, p.XTestImports)
				slices.Sort(direct)
				direct = slices.Compact(direct)
			}
			for _, imp := range direct {
				if imp == p.ImportPath {
					continue // an external test importing its own package
				}
				reach := []string{imp}
				if q, ok := pkgs[imp]; ok {
					reach = append(reach, q.Deps...)
				}
				for _, d := range reach {
					dr := rel(d)
					if !matchAny(r.deny, dr, ours(d)) || matchAny(r.allow, dr, ours(d)) {
						continue
					}
					via := ""
					if d != imp {
						via = " (via " + rel(imp) + ")"
					}
					t.Errorf("%s depends on %s%s: %s", rel(p.ImportPath), dr, via, r.why)
					break // one line per direct import is enough to find it
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no rule matched any package: are the patterns right?")
	}
}

// TestLayoutRulesMatch keeps the table honest: every from pattern of a rule
// names at least one package, so a renamed package can't leave a rule that
// checks nothing.
func TestLayoutRulesMatch(t *testing.T) {
	pkgs, mod := goList(t)
	for _, r := range layoutRules {
		for _, f := range r.from {
			found := false
			for path := range pkgs {
				if r, ok := strings.CutPrefix(path, mod+"/"); ok && match(f, r, true) {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("pattern %q matches no package of %s", f, mod)
			}
		}
	}
}

// goList lists warden's packages and everything they depend on, by import
// path, and returns the module's path. It runs once per test binary.
var goList = func() func(t *testing.T) (map[string]*listedPackage, string) {
	var (
		pkgs map[string]*listedPackage
		mod  string
		err  error
		done bool
	)
	return func(t *testing.T) (map[string]*listedPackage, string) {
		t.Helper()
		if !done {
			done = true
			pkgs, mod, err = runGoList()
		}
		if err != nil {
			t.Fatal(err)
		}
		return pkgs, mod
	}
}()

func runGoList() (map[string]*listedPackage, string, error) {
	cmd := exec.Command("go", "list", "-deps",
		"-json=ImportPath,Imports,Deps,TestImports,XTestImports,Standard,Module", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, "", errors.New("go list: " + err.Error() + ": " + stderr.String())
	}
	pkgs := make(map[string]*listedPackage)
	mod := ""
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(listedPackage)
		if err := dec.Decode(p); err == io.EOF {
			break
		} else if err != nil {
			return nil, "", errors.New("go list: decode: " + err.Error())
		}
		if p.Standard {
			continue
		}
		if p.Module != nil && p.Module.Main {
			mod = p.Module.Path
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs, mod, nil
}

func matchAny(patterns []string, path string, ours bool) bool {
	for _, pat := range patterns {
		if match(pat, path, ours) {
			return true
		}
	}
	return false
}

// match reports whether path (relative to the module when ours) matches
// pattern: "..." is every package of warden's; "x/..." is x and below; a
// pattern whose first element has a dot names another module's package.
func match(pattern, path string, ours bool) bool {
	if pattern == "..." {
		return ours
	}
	first, _, _ := strings.Cut(pattern, "/")
	if strings.Contains(first, ".") == ours {
		return false // a pattern of another module never matches ours, and the reverse
	}
	if prefix, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == prefix || strings.HasPrefix(path, prefix+"/")
	}
	return path == pattern
}
