package inspect

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// nested returns n arrays, or n objects with member "a", one in the other.
func nested(n int, object bool) string {
	if object {
		return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n)
	}
	return strings.Repeat("[", n) + strings.Repeat("]", n)
}

// members returns an object of n members "k0".."k<n-1>".
func members(n int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	b.WriteByte('}')
	return b.String()
}

// elements returns an array of n copies of elem.
func elements(n int, elem string) string {
	return "[" + strings.TrimSuffix(strings.Repeat(elem+",", n), ",") + "]"
}

// with adds member to the end of object obj.
func with(obj, member string) string { return obj[:len(obj)-1] + "," + member + "}" }

func quoted(n int) string { return `"` + strings.Repeat("x", n) + `"` }

func at(body, s string) int64 { return int64(strings.Index(body, s)) }

func TestCheckJSON(t *testing.T) {
	def := DefaultJSONLimits()
	deep33 := nested(33, false)
	deepObj33 := nested(33, true)
	keys1001 := members(1001)
	inner := `{"o":` + members(1001) + `}`
	arr10001 := elements(10001, "1")
	arrObj10001 := elements(10001, "{}")
	long := quoted(65537)
	name := `{"o":{` + quoted(65537) + `:1}}`
	escaped := `"` + strings.Repeat(`\u0061`, 10922) + `abcd"` // 65536 bytes as written, 10926 decoded
	num65 := strings.Repeat("9", 65)
	tests := []struct {
		name string
		body string
		want *Violation
	}{
		{"32 nested arrays pass", nested(32, false), nil},
		{"32 nested objects pass", nested(32, true), nil},
		{"33 nested arrays are refused at the 33rd", deep33,
			&Violation{Rule: RuleMaxDepth, Where: strings.Repeat("/0", 32), Limit: 32, Offset: 32}},
		{"33 nested objects are refused at the 33rd", deepObj33,
			&Violation{Rule: RuleMaxDepth, Where: strings.Repeat("/a", 32), Limit: 32, Offset: 32 * 5}},
		{"a deep value after a shallow one is found", `[[],` + nested(33, false)[1:],
			&Violation{Rule: RuleMaxDepth, Where: "/1" + strings.Repeat("/0", 31), Limit: 32, Offset: 35}},

		{"1000 keys pass", members(1000), nil},
		{"1001 keys are refused at the 1001st", keys1001,
			&Violation{Rule: RuleMaxKeys, Where: "/k1000", Limit: 1000, Offset: at(keys1001, `"k1000"`)}},
		{"1001 keys in a nested object", inner,
			&Violation{Rule: RuleMaxKeys, Where: "/o/k1000", Limit: 1000, Offset: at(inner, `"k1000"`)}},
		{"1000 keys in each of two objects pass", "[" + members(1000) + "," + members(1000) + "]", nil},

		{"10000 elements pass", elements(10000, "1"), nil},
		{"10001 numbers are refused at the 10001st", arr10001,
			&Violation{Rule: RuleMaxArray, Where: "/10000", Limit: 10000, Offset: int64(len(arr10001) - 2)}},
		{"10001 objects are refused at the 10001st", arrObj10001,
			&Violation{Rule: RuleMaxArray, Where: "/10000", Limit: 10000, Offset: int64(len(arrObj10001) - 3)}},
		{"10001 strings in a nested array", `{"a":[` + elements(10001, `""`)[1:] + "}",
			&Violation{Rule: RuleMaxArray, Where: "/a/10000", Limit: 10000, Offset: int64(6 + 3*10000)}},
		{"10001 literals", elements(10001, "null"),
			&Violation{Rule: RuleMaxArray, Where: "/10000", Limit: 10000, Offset: int64(1 + 5*10000)}},

		{"a 65536-byte string passes", `{"s":` + quoted(65536) + `}`, nil},
		{"a 65537-byte string is refused", `{"s":` + long + `}`,
			&Violation{Rule: RuleMaxString, Where: "/s", Limit: 65536, Offset: 5}},
		{"a 65537-byte top-level string is refused", long,
			&Violation{Rule: RuleMaxString, Limit: 65536}},
		{"a 65537-byte string in an array", `[1, ` + long + `]`,
			&Violation{Rule: RuleMaxString, Where: "/1", Limit: 65536, Offset: 4}},
		{"a 65536-byte name passes", `{` + quoted(65536) + `:1}`, nil},
		{"a 65537-byte name is refused, the log getting its object's pointer", name,
			&Violation{Rule: RuleMaxString, Where: "/o", Limit: 65536, Offset: 6}},
		{"escapes count as written: 65536 bytes pass", escaped, nil},
		{"escapes count as written: 65537 bytes are refused", escaped[:len(escaped)-1] + `e"`,
			&Violation{Rule: RuleMaxString, Limit: 65536}},

		{"a 64-digit number passes", `[` + strings.Repeat("9", 64) + `]`, nil},
		{"a 64-byte number with sign, fraction and exponent passes", `[-` + strings.Repeat("1", 30) + "." + strings.Repeat("2", 26) + "e+1234]", nil},
		{"a 65-digit number is refused", `{"n":` + num65 + `}`,
			&Violation{Rule: RuleMaxNumber, Where: "/n", Limit: 64, Offset: 5}},
		{"a 65-byte top-level number is refused", "-" + strings.Repeat("1", 62) + "e1",
			&Violation{Rule: RuleMaxNumber, Limit: 64}},

		{"a duplicate key is refused", `{"a":1,"a":2}`, &Violation{Rule: RuleDuplicateKey, Where: "/a", Offset: 7}},
		{"an escaped duplicate key is refused", `{"a":1,"\u0061":2}`, &Violation{Rule: RuleDuplicateKey, Where: "/a", Offset: 7}},
		{"a duplicate key escaped the other way", `{"\u00e9":1,"é":2}`, &Violation{Rule: RuleDuplicateKey, Where: "/é", Offset: 12}},
		{"a duplicate key in a nested object", `{"x":[{"b":1,"c":{},"b":2}]}`, &Violation{Rule: RuleDuplicateKey, Where: "/x/0/b", Offset: 20}},
		{"a duplicate among 100 keys", members(100)[:len(members(100))-1] + `,"k7":0}`,
			&Violation{Rule: RuleDuplicateKey, Where: "/k7", Offset: int64(len(members(100)))}},
		{"an empty name twice is refused", `{"":1,"":2}`, &Violation{Rule: RuleDuplicateKey, Where: "/", Offset: 6}},
		{"a duplicate among 1000 keys", with(members(999), `"k998":0`),
			&Violation{Rule: RuleDuplicateKey, Where: "/k998", Offset: int64(len(members(999)))}},
		{"an escaped duplicate among 100 keys", with(members(100), `"\u006b3":0`),
			&Violation{Rule: RuleDuplicateKey, Where: "/k3", Offset: int64(len(members(100)))}},
		{"a duplicate right after the switch to a table", with(members(linearNames), `"k0":0`),
			&Violation{Rule: RuleDuplicateKey, Where: "/k0", Offset: int64(len(members(linearNames)))}},
		{"a duplicate in an object after a wide one closed", with(`{"a":1,"o":`+members(100)+`}`, `"a":2`),
			&Violation{Rule: RuleDuplicateKey, Where: "/a", Offset: int64(len(`{"a":1,"o":` + members(100) + `}`))}},
		{"a duplicate in a wide object after a wide one in it closed", with(with(members(40), `"o":`+members(100)), `"k39":1`),
			&Violation{Rule: RuleDuplicateKey, Where: "/k39", Offset: int64(len(with(members(40), `"o":`+members(100))))}},
		{"wide objects in a wide object pass", with(with(members(40), `"o":`+members(100)), `"p":`+members(200)), nil},
		{"wide sibling objects share no names", elements(3, members(300)), nil},
		{"names that extend each other are no duplicates", `{"k":1,"k1":1,"k10":1,"":1}`, nil},
		{"a name in two objects is no duplicate", `[{"a":1},{"a":{"a":1}}]`, nil},
		{"an inner object's names are not its parent's", `{"o":{"a":1,"b":2},"a":2,"b":3}`, nil},
		{"a wide inner object's names are not its parent's", with(`{"o":`+members(100)+`}`, `"k1":1`), nil},
		{"names differing in case are no duplicates", `{"a":1,"A":2}`, nil},

		{"invalid UTF-8 in a value is refused", "{\"a\":\"\xff\"}", &Violation{Rule: RuleInvalidUTF8, Where: "/a", Offset: 6}},
		{"invalid UTF-8 in a name is refused", "{\"o\":{\"b\xffc\":1}}", &Violation{Rule: RuleInvalidUTF8, Where: "/o", Offset: 8}},
		{"an overlong encoding is refused", "[\"\xc0\xaf\"]", &Violation{Rule: RuleInvalidUTF8, Where: "/0", Offset: 2}},
		{"a cut sequence is refused", "[\"\xe2\x82\"]", &Violation{Rule: RuleInvalidUTF8, Where: "/0", Offset: 2}},
		{"a surrogate encoded as UTF-8 is refused", "[\"\xed\xa0\x80\"]", &Violation{Rule: RuleInvalidUTF8, Where: "/0", Offset: 2}},
		{"a lone high surrogate escape is refused", `["ok","x\ud800"]`, &Violation{Rule: RuleInvalidUTF8, Where: "/1", Offset: 8}},
		{"a lone low surrogate escape is refused", `{"\uDC00":1}`, &Violation{Rule: RuleInvalidUTF8, Offset: 2}},
		{"a reversed surrogate pair is refused", `"\udc00\ud800"`, &Violation{Rule: RuleInvalidUTF8, Offset: 1}},
		{"a body cut after a high surrogate escape is syntax", `["\ud83d`, &Violation{Rule: RuleSyntax, Where: "/0", Offset: 2}},
		{"a body cut inside a surrogate pair is syntax", `["\ud83d\ude`, &Violation{Rule: RuleSyntax, Where: "/0", Offset: 2}},
		{"a surrogate pair passes", `"\ud83d\ude00 and 😀"`, nil},
		{"a bad escape is syntax, not UTF-8", `["\x41"]`, &Violation{Rule: RuleSyntax, Where: "/0", Offset: 2}},
		{"invalid UTF-8 outside a string is syntax", "[1,\xff]", &Violation{Rule: RuleSyntax, Where: "/1", Offset: 3}},

		{"an empty body is refused", "", &Violation{Rule: RuleSyntax}},
		{"a body of whitespace is refused", " \r\n\t", &Violation{Rule: RuleSyntax, Offset: 4}},
		{"a truncated array is refused", `{"a":[1,2`, &Violation{Rule: RuleSyntax, Where: "/a", Offset: 9}},
		{"a truncated string is refused", `{"a":"abc`, &Violation{Rule: RuleSyntax, Where: "/a", Offset: 9}},
		{"a truncated literal is refused", `[tru`, &Violation{Rule: RuleSyntax, Where: "/0", Offset: 4}},
		{"a missing value is refused", `{"a":}`, &Violation{Rule: RuleSyntax, Where: "/a", Offset: 5}},
		{"trailing garbage is refused", `{"a":1} x`, &Violation{Rule: RuleSyntax, Offset: 8}},
		{"a trailing comma is refused", `[1,2,]`, &Violation{Rule: RuleSyntax, Offset: 4}},
		{"two top-level objects are refused", `{}{"a":1}`, &Violation{Rule: RuleSyntax, Offset: 2}},
		{"two top-level numbers are refused", "1 2", &Violation{Rule: RuleSyntax, Offset: 2}},
		{"two top-level strings are refused", `"a"` + "\n" + `"b"`, &Violation{Rule: RuleSyntax, Offset: 4}},
		{"a comma after the value is refused", `[],[]`, &Violation{Rule: RuleSyntax, Offset: 2}},
		{"a byte order mark is refused", "\ufeff{}", &Violation{Rule: RuleSyntax}},
		{"single quotes are refused", `{'a':1}`, &Violation{Rule: RuleSyntax, Offset: 1}},
		{"comments are refused", `{"a":1 /* x */}`, &Violation{Rule: RuleSyntax, Offset: 7}},
		{"NaN is refused", `[NaN]`, &Violation{Rule: RuleSyntax, Where: "/0", Offset: 1}},
		{"a leading zero is refused", `[01]`, &Violation{Rule: RuleSyntax, Offset: 2}},
		{"a raw control character in a string is refused", "[\"a\tb\"]", &Violation{Rule: RuleSyntax, Where: "/0", Offset: 3}},
		{"a number as a name is refused", `{1:2}`, &Violation{Rule: RuleSyntax, Offset: 1}},

		{"whitespace around the value passes", " \n{\"a\": [1, 2.5e-3, true, false, null, \"x\"]}\r\n\t", nil},
		{"a top-level string passes", `"x"`, nil},
		{"a top-level number passes", `-0.5E+3`, nil},
		{"a top-level literal passes", `null`, nil},
		{"an empty object passes", `{}`, nil},
		{"an escaped slash and quote pass", `{"a\/b":"\"q\" \\ \b\f\n\r\t"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := def.CheckJSON([]byte(tt.body))
			if !sameViolation(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func sameViolation(a, b *Violation) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

func TestCheckJSONUsesItsLimits(t *testing.T) {
	l := JSONLimits{MaxDepth: 2, MaxKeys: 2, MaxArray: 3, MaxString: 4, MaxNumber: 3}
	tests := []struct {
		body string
		want *Violation
	}{
		{`{"ab":[1,2,3],"cd":{"e":"abcd"}}`, nil},
		{`[[[]]]`, &Violation{Rule: RuleMaxDepth, Where: "/0/0", Limit: 2, Offset: 2}},
		{`{"a":1,"b":2,"c":3}`, &Violation{Rule: RuleMaxKeys, Where: "/c", Limit: 2, Offset: 13}},
		{`[1,2,3,4]`, &Violation{Rule: RuleMaxArray, Where: "/3", Limit: 3, Offset: 7}},
		{`["abcde"]`, &Violation{Rule: RuleMaxString, Where: "/0", Limit: 4, Offset: 1}},
		{`{"abcde":1}`, &Violation{Rule: RuleMaxString, Limit: 4, Offset: 1}},
		{`[1.25]`, &Violation{Rule: RuleMaxNumber, Where: "/0", Limit: 3, Offset: 1}},
	}
	for _, tt := range tests {
		if got := l.CheckJSON([]byte(tt.body)); !sameViolation(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.body, got, tt.want)
		}
	}
}

// TestCheckJSONDepthUpToTheTokenizers: the deepest MaxDepth Validate allows
// still reports max_depth, not jsontext's own nesting limit as syntax.
func TestCheckJSONDepthUpToTheTokenizers(t *testing.T) {
	l := DefaultJSONLimits()
	l.MaxDepth = maxJSONDepth - 1
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	if v := l.CheckJSON([]byte(nested(maxJSONDepth-1, false))); v != nil {
		t.Errorf("depth %d: %v", maxJSONDepth-1, v)
	}
	v := l.CheckJSON([]byte(nested(maxJSONDepth, false)))
	if v == nil || v.Rule != RuleMaxDepth || v.Offset != maxJSONDepth-1 {
		t.Errorf("depth %d: %v, want max_depth", maxJSONDepth, v)
	}
	if v != nil && len(v.Where) > maxWhere {
		t.Errorf("Where is %d bytes", len(v.Where))
	}
}

func TestJSONViolationHoldsNoValue(t *testing.T) {
	const secret = "s3cr3t-v4lue"
	long := strings.Repeat("k", 300)
	for _, body := range []string{
		`{"token":"` + secret + `","token":"` + secret + `"}`,
		`{"token":"` + secret + "\xff" + `"}`,
		`{"token":"` + secret + `"` + strings.Repeat(`,"x":1`, 0) + `} "` + secret + `"`,
		`{"token":"` + secret + `", "n":` + strings.Repeat("1", 65) + `}`,
		`{"` + long + `":{"` + long + `":1,"` + long + `":"` + secret + `"}}`,
		`{"token":"` + secret + strings.Repeat("x", 65536) + `"}`,
		`[` + strings.Repeat(`"`+secret+`",`, 10000) + `"` + secret + `"]`,
	} {
		v := DefaultJSONLimits().CheckJSON([]byte(body))
		if v == nil {
			t.Fatalf("%.40q... accepted", body)
		}
		if s := v.Error(); strings.Contains(s, secret) || strings.Contains(s, "s3cr") || len(v.Where) > maxWhere {
			t.Errorf("%s: holds the body's value or a long Where", s)
		}
	}
}

func TestJSONLimitsValidate(t *testing.T) {
	if err := DefaultJSONLimits().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tt := range []struct {
		set  func(*JSONLimits)
		want string
	}{
		{func(l *JSONLimits) { l.MaxDepth = 0 }, "inspect: JSON MaxDepth is 0: want a positive number"},
		{func(l *JSONLimits) { l.MaxKeys = -1 }, "inspect: JSON MaxKeys is -1: want a positive number"},
		{func(l *JSONLimits) { l.MaxArray = 0 }, "inspect: JSON MaxArray is 0: want a positive number"},
		{func(l *JSONLimits) { l.MaxString = 0 }, "inspect: JSON MaxString is 0: want a positive number"},
		{func(l *JSONLimits) { l.MaxNumber = 0 }, "inspect: JSON MaxNumber is 0: want a positive number"},
		{func(l *JSONLimits) { l.MaxDepth = 10000 }, "inspect: JSON MaxDepth is 10000: want less than 10000"},
	} {
		l := DefaultJSONLimits()
		tt.set(&l)
		if err := l.Validate(); err == nil || err.Error() != tt.want {
			t.Errorf("%+v: %v, want %s", l, err, tt.want)
		}
	}
}

// TestJSONErrorSentinels: the rule invalid_utf8 rests on recognizing
// jsontext's error, which is taken from the tokenizer (it is not
// exported); an update that changes it must fail here, not turn the rule
// into "syntax" unseen.
func TestJSONErrorSentinels(t *testing.T) {
	if errInvalidUTF8 == nil || errInvalidUTF8.Error() != "invalid UTF-8" {
		t.Fatalf("errInvalidUTF8 = %v", errInvalidUTF8)
	}
	for body, rule := range map[string]string{`{"a":1,"a":1}`: RuleDuplicateKey, "\"\xff\"": RuleInvalidUTF8} {
		if v := DefaultJSONLimits().CheckJSON([]byte(body)); v == nil || v.Rule != rule {
			t.Errorf("%q: %v, want %s", body, v, rule)
		}
	}
}

func TestCheckJSONWithoutAllocating(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	l := DefaultJSONLimits()
	wide := []byte(elements(10, members(1000)))
	for _, body := range [][]byte{jsonBody(1 << 10), jsonBody(64 << 10), []byte(`"\u00e9"`), wide, []byte(`{"\u00e9":{"a\tb":1}}`)} {
		if v := l.CheckJSON(body); v != nil {
			t.Fatal(v)
		}
		if n := testing.AllocsPerRun(20, func() { _ = l.CheckJSON(body) }); n != 0 {
			t.Errorf("%d-byte body: %v allocations per check, want 0", len(body), n)
		}
	}
}

func TestViolationError(t *testing.T) {
	for _, tt := range []struct {
		v    Violation
		want string
	}{
		{Violation{Rule: RuleMaxDepth, Where: "/a/0", Limit: 32, Offset: 17}, `inspect: max_depth (limit 32) in "/a/0" at offset 17`},
		{Violation{Rule: RuleSyntax, Offset: 0}, `inspect: syntax at offset 0`},
		{Violation{Rule: RuleDTD, Where: "/order", Offset: 3}, `inspect: dtd in "/order" at offset 3`},
	} {
		if got := tt.v.Error(); got != tt.want {
			t.Errorf("got %s, want %s", got, tt.want)
		}
	}
}

func TestClip(t *testing.T) {
	for _, n := range []int{0, 255, 256, 257, 1000} {
		s := strings.Repeat("é", n/2) + strings.Repeat("a", n%2)
		got := clip(s)
		if len(got) > maxWhere || (len(s) <= maxWhere) != (got == s) || !strings.HasPrefix(s, strings.TrimSuffix(got, "...")) {
			t.Errorf("clip of %d bytes: %d bytes %q", len(s), len(got), got)
		}
		if !strconv.CanBackquote(got) {
			t.Errorf("clip of %d bytes cut a rune: %q", len(s), got)
		}
	}
}
