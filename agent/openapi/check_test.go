package openapi

import (
	"strings"
	"testing"
)

// checkDoc declares one query parameter per kind of simple schema the
// compiled check covers, in 3.0 and 3.1 syntax.
const checkDoc = `
info: {title: checks, version: '1'}
paths:
  /c:
    get:
      parameters:
        - {name: i, in: query, schema: {type: integer, minimum: -5, maximum: 5}}
        - {name: i32, in: query, schema: {type: integer, format: int32}}
        - {name: ix, in: query, schema: {type: integer, minimum: 0, maximum: 10, XBOTH}}
        - {name: n, in: query, schema: {type: number, minimum: -1.5, maximum: 1e3}}
        - {name: nx, in: query, schema: {type: number, maximum: 1, XMAX}}
        - {name: b, in: query, schema: {type: boolean}}
        - {name: s, in: query, schema: {type: string, minLength: 2, maxLength: 4}}
        - {name: p, in: query, schema: {type: string, pattern: '^\u00E9[a-z]+$'}}
        - {name: e, in: query, schema: {type: string, enum: [red, green, ""], maxLength: 4}}
        - {name: u, in: query, schema: {type: string, format: uuid}}
        - {name: d, in: query, schema: {type: string, format: date}}
        - {name: dt, in: query, schema: {type: string, format: date-time}}
        - {name: em, in: query, schema: {type: string, format: email}}
        - {name: v4, in: query, schema: {type: string, format: ipv4}}
        - {name: v6, in: query, schema: {type: string, format: ipv6}}
        - {name: by, in: query, schema: {type: string, format: byte}}
        - {name: any, in: query, schema: {format: password}}
        - {name: mo, in: query, schema: {type: integer, multipleOf: 3}}
        - {name: ne, in: query, schema: {type: integer, enum: [1, 2]}}
      responses: {'200': {description: ok}}
`

func checkSpecs(t testing.TB) map[string]*Spec {
	t.Helper()
	out := map[string]*Spec{}
	for version, repl := range map[string][]string{
		"3.0.3": {"XBOTH", "exclusiveMinimum: true, exclusiveMaximum: true", "XMAX", "exclusiveMaximum: true"},
		"3.1.0": {"XBOTH", "exclusiveMinimum: 2, exclusiveMaximum: 8", "XMAX", "exclusiveMaximum: 0.5"},
	} {
		s, err := Parse([]byte("openapi: "+version+"\n"+strings.NewReplacer(repl...).Replace(checkDoc)), "check-"+version)
		if err != nil {
			t.Fatal(err)
		}
		out[version] = s
	}
	return out
}

var checkValues = []string{
	"", "0", "-0", "1", "-1", "2", "5", "6", "-5", "-6", "8", "10", "11", "3", "9",
	"0.5", "0.49", "1", "1.0", "1e3", "1000.0001", "-1.5", "-1.6", "1E-2",
	"2147483647", "2147483648", "-2147483648", "-2147483649",
	"true", "false", "a", "ab", "abcd", "abcde", "é", "éé", "😀", "😀😀", "a😀",
	"éabc", "eabc", "éABC", "red", "green", "Red", "blue",
	"7c9e6679-7425-40de-944b-e07c2a1f0e1a", "7C9E6679-7425-40DE-944B-E07C2A1F0E1A", "7c9e6679742540de944be07c2a1f0e1a", "7c9e6679-7425-40de-944b-e07c2a1f0e1g",
	"2024-02-29", "2023-02-29", "2024-13-01", "2024-02-29T10:00:00Z", "2024-02-29T10:00:00+01:00", "2024-02-29 10:00:00Z", "2024-02-31T00:00:00Z",
	"a@b.c", "a@", "@b", "1.2.3.4", "256.1.1.1", "01.2.3.4", "::1", "fe80::1%eth0", "::ffff:1.2.3.4",
	"U3dhZ2dlcg==", "not base64!",
}

// TestCheckAgreesWithLibrary holds the compiled checks to the library:
// for every value the library sees, both accept, or both refuse with the
// same rule.
func TestCheckAgreesWithLibrary(t *testing.T) {
	for version, s := range checkSpecs(t) {
		op := s.ops[0]
		compiled := 0
		for _, p := range op.query {
			if p.check == nil {
				continue
			}
			compiled++
			for _, val := range checkValues {
				agree(t, version, p, val)
			}
		}
		// Everything above but multipleOf and the integer enum is simple.
		if want := len(op.query) - 2; compiled != want {
			t.Errorf("%s: %d parameters have a compiled check; want %d", version, compiled, want)
		}
		for _, p := range op.query {
			if (p.name == "mo" || p.name == "ne") && p.check != nil {
				t.Errorf("%s: %s has a compiled check, though the check cannot express its schema", version, p.name)
			}
		}
	}
}

func agree(t testing.TB, version string, p *param, val string) {
	t.Helper()
	sc, v := p.parse([]byte(val))
	if v != nil {
		return // not of the parameter's type: the library never sees it
	}
	fast := p.check.run(p, sc)
	lib := p.visit(p.box(sc))
	switch {
	case (fast == nil) != (lib == nil):
		t.Errorf("%s: %s=%q: compiled check says %v, the library %v", version, p.name, val, fast, lib)
	case fast != nil && fast.Rule != lib.Rule:
		t.Errorf("%s: %s=%q: compiled check refuses by %s, the library by %s", version, p.name, val, fast.Rule, lib.Rule)
	}
}

func FuzzCheck(f *testing.F) {
	for _, v := range checkValues {
		f.Add(v)
	}
	specs := checkSpecs(f)
	f.Fuzz(func(t *testing.T, val string) {
		for version, s := range specs {
			for _, p := range s.ops[0].query {
				if p.check != nil {
					agree(t, version, p, val)
				}
			}
		}
	})
}
