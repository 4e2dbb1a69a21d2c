package metrics

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	wtoken "github.com/warden-sidecar/warden/agent/token"
)

// parseDir parses the non-test Go files of dir.
func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatalf("no Go file in %s", dir)
	}
	return files
}

// constsNamed returns the values of the string constants of files whose
// names start with prefix.
func constsNamed(files []*ast.File, prefix string) []string {
	var out []string
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, prefix) || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, _ := strconv.Unquote(lit.Value)
					out = append(out, s)
				}
			}
			return true
		})
	}
	return out
}

// openapiRuleLiterals are the rule names agent/openapi writes as literals:
// Rule: "x" and rule: "x" fields, v.Rule = "x", fail("x", ...) and
// pathViolation("x", ...).
func openapiRuleLiterals(files []*ast.File) []string {
	var out []string
	str := func(e ast.Expr) {
		if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			s, _ := strconv.Unquote(lit.Value)
			out = append(out, s)
		}
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.KeyValueExpr:
				if k, ok := n.Key.(*ast.Ident); ok && (k.Name == "Rule" || k.Name == "rule") {
					str(n.Value)
				}
			case *ast.AssignStmt:
				for i, l := range n.Lhs {
					if sel, ok := l.(*ast.SelectorExpr); ok && sel.Sel.Name == "Rule" && i < len(n.Rhs) {
						str(n.Rhs[i])
					}
				}
			case *ast.CallExpr:
				if fn, ok := n.Fun.(*ast.Ident); ok && (fn.Name == "fail" || fn.Name == "pathViolation") && len(n.Args) > 0 {
					str(n.Args[0])
				}
			}
			return true
		})
	}
	return out
}

// Every rule and reason the pipeline's packages can report has a label
// value of its own: a new one would otherwise be counted as "schema",
// "other" or "malformed", bounded but wrong.
func TestRuleLabelsCoverEveryRule(t *testing.T) {
	missing := func(what string, found, labels []string) {
		t.Helper()
		if len(found) == 0 {
			t.Errorf("%s: found none: is the scan still right?", what)
		}
		for _, r := range found {
			if !slices.Contains(labels, r) {
				t.Errorf("%s %q has no label value", what, r)
			}
		}
	}
	missing("agent/inspect rule", constsNamed(parseDir(t, "../inspect"), "Rule"), bodyRules)
	missing("agent/authz rule", constsNamed(parseDir(t, "../authz"), "Rule"), bodyRules)
	missing("agent/openapi rule", openapiRuleLiterals(parseDir(t, "../openapi")), openapiRules)
	var reasons []string
	for _, r := range tokenReasons {
		reasons = append(reasons, string(r))
	}
	missing("agent/token reason", constsNamed(parseDir(t, "../token"), "Reason"), reasons)
	if !slices.Contains(tokenReasons, wtoken.ReasonMalformed) {
		t.Error("the fallback reason is not a label value")
	}
	missing("agent/signature reason", constsNamed(parseDir(t, "../signature"), "Reason"), signatureReasons)

	// The schema keywords kin-openapi reports (SchemaError.SchemaField),
	// in agent/openapi's snake case.
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/getkin/kin-openapi").Output()
	if err != nil {
		t.Fatalf("go list kin-openapi: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "openapi3")
	field := regexp.MustCompile(`(?:withField\(|SchemaField:\s*)"([A-Za-z]+)"`)
	var keywords []string
	names, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range field.FindAllStringSubmatch(string(b), -1) {
			keywords = append(keywords, snake(m[1]))
		}
	}
	missing("kin-openapi schema keyword", keywords, openapiRules)
}

// snake is agent/openapi's: minLength is min_length.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
