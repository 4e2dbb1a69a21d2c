package metrics

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// README's Metrics table lists every metric of warden's, with each of its
// labels, and nothing else: the registry and its documentation change
// together.
func TestMetricsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Metrics\n")
	if !ok {
		t.Fatal("README has no Metrics section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `(warden_[a-z_]+)` \\| [a-z]+ \\|([^|]*)\\|")
	documented := map[string]string{} // name: its labels cell
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		documented[m[1]] = m[2]
	}
	fams := everySeries(t)
	for name, f := range fams {
		if !strings.HasPrefix(name, "warden_") {
			continue // the Go runtime's and the process's
		}
		cell, ok := documented[name]
		if !ok {
			t.Errorf("%s is not in README's Metrics table", name)
			continue
		}
		for l := range f.labels {
			if !strings.Contains(cell, "`"+l+"`") {
				t.Errorf("README: %s's label %s is not in its labels cell %q", name, l, cell)
			}
		}
	}
	for name := range documented {
		if _, ok := fams[name]; !ok {
			t.Errorf("README documents %s, which warden does not expose", name)
		}
	}
	if len(documented) == 0 || !slices.ContainsFunc(strings.Split(section, "\n"), func(l string) bool { return strings.Contains(l, "`warden_requests_total`") }) {
		t.Error("the table was not found")
	}
}
