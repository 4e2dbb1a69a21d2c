package openapi

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
)

// visitOptions are how the library checks values: as a request (readOnly
// properties refused), with formats enforced. One slice, built once: each
// option is a closure, and building them per call allocates.
var visitOptions = []openapi3.SchemaValidationOption{
	openapi3.VisitAsRequest(),
	openapi3.EnableFormatValidation(),
	openapi3.WithStringFormatValidators(stringFormats),
}

// stringFormats are the string formats enforced beyond the library's own
// (date, date-time, byte). Other formats ("password", "binary", an
// API's own) are annotations, as JSON Schema makes them by default.
var stringFormats = map[string]openapi3.StringFormatValidator{
	"uuid":  openapi3.NewCallbackValidator(func(s string) error { return boolErr(isUUID([]byte(s)), "not a UUID") }),
	"email": openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForEmail),
	"ipv4": openapi3.NewCallbackValidator(func(s string) error {
		a, err := netip.ParseAddr(s)
		return boolErr(err == nil && a.Is4(), "not an IPv4 address")
	}),
	"ipv6": openapi3.NewCallbackValidator(func(s string) error {
		a, err := netip.ParseAddr(s)
		return boolErr(err == nil && a.Is6() && a.Zone() == "", "not an IPv6 address")
	}),
}

func boolErr(ok bool, msg string) error {
	if ok {
		return nil
	}
	return errors.New(msg)
}

// isUUID reports whether b is a UUID in its 8-4-4-4-12 hex form (any
// version, either case).
func isUUID(b []byte) bool {
	if len(b) != 36 {
		return false
	}
	for i, c := range b {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if unhex(c) < 0 {
				return false
			}
		}
	}
	return true
}

// visit checks v against the parameter's schema with the library.
func (p *param) visit(v any) *Violation {
	if err := p.schema.VisitJSON(v, visitOptions...); err != nil {
		return schemaViolation(p.in, p.name, err)
	}
	return nil
}

// schemaViolation turns the library's error into a Violation: the rule is
// the schema keyword that failed, in snake case; the name is the
// parameter's, with the pointer to the failing item or property after it
// (for a body, the pointer alone). The detail is the library's reason,
// which never quotes the value.
func schemaViolation(in, name string, err error) *Violation {
	v := &Violation{Status: 400, Code: CodeInvalid, In: in, Name: name, Rule: "schema", Detail: "does not match the schema"}
	// The outermost error names the keyword that failed (oneOf rather
	// than what failed inside each branch).
	if me, ok := err.(openapi3.MultiError); ok && len(me) > 0 {
		err = me[0]
	}
	var se *openapi3.SchemaError
	if !errors.As(err, &se) {
		return v
	}
	if se.SchemaField != "" {
		v.Rule = snake(se.SchemaField)
	}
	ptr := se.JSONPointer()
	// The library reports a property that additionalProperties: false
	// refuses as a "properties" error on the object; name the property.
	if q, ok := strings.CutSuffix(strings.TrimPrefix(se.Reason, "property "), " is unsupported"); ok && se.SchemaField == "properties" {
		if key, err := strconv.Unquote(q); err == nil {
			v.Rule = "additional_properties"
			ptr = append(ptr, key)
		}
	}
	if len(ptr) > 0 {
		var b strings.Builder
		b.WriteString(name)
		for _, t := range ptr {
			b.WriteByte('/')
			b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
		}
		v.Name = b.String()
	}
	if se.Reason != "" {
		v.Detail = bounded(se.Reason)
	}
	return v
}

// snake turns a schema keyword into a rule name: exclusiveMinimum is
// exclusive_minimum.
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

// bounded keeps a detail to a log line's worth.
func bounded(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// check is a scalar parameter schema's constraints, compiled so that the
// common case (a type, bounds, lengths, a pattern, an enum of strings, a
// format) is checked without allocating. compileCheck builds one only
// when it covers every constraint of the schema, and then it decides as
// the library does (TestCheckAgreesWithLibrary and FuzzCheck hold it to
// that); otherwise the library checks the value.
type check struct {
	// Bounds, NaN when unset (every comparison with NaN is false). The
	// exclusive ones come from 3.1's numbers or 3.0's boolean modifiers.
	min, max, exclMin, exclMax float64
	minLen                     int64
	maxLen                     int64 // -1 when unset
	pattern                    *regexp.Regexp
	patternSrc                 string
	enum                       []string
	format                     string
	formatFn                   func([]byte) bool // nil: not checked (an annotation)
	int32                      bool              // format int32: its range
}

// rewriteCodepoints is the library's translation of ECMA "\uXXXX" in
// patterns to Go's "\x{XXXX}" (openapi3.intoGoRegexp), so that a pattern
// means the same here.
var rewriteCodepoints = regexp.MustCompile(`(?P<replaced_with_slash_x>\\u)(?P<code>[0-9A-F]{4})`)

func compileCheck(s *openapi3.Schema, k kind) *check {
	// What the check covers is cleared from a copy; anything left means
	// the library must decide.
	rest := *s
	rest.Type, rest.Format, rest.Enum = nil, "", nil
	rest.Min, rest.Max, rest.ExclusiveMin, rest.ExclusiveMax = nil, nil, openapi3.ExclusiveBound{}, openapi3.ExclusiveBound{}
	rest.MinLength, rest.MaxLength, rest.Pattern = 0, nil, ""
	rest.Nullable, rest.ReadOnly, rest.WriteOnly, rest.AllowEmptyValue = false, false, false, false
	if !rest.IsEmpty() || s.Always != nil || s.Const != nil {
		return nil
	}
	nan := math.NaN()
	c := &check{min: nan, max: nan, exclMin: nan, exclMax: nan, maxLen: -1, format: s.Format}
	switch k {
	case kindInteger, kindNumber:
		if s.MinLength != 0 || s.MaxLength != nil || s.Pattern != "" || len(s.Enum) > 0 {
			return nil // keywords of other types: the library's business
		}
		if s.Min != nil {
			c.min = *s.Min
		}
		if s.Max != nil {
			c.max = *s.Max
		}
		c.exclMin, c.exclMax = exclusive(s.ExclusiveMin, s.Min), exclusive(s.ExclusiveMax, s.Max)
		c.int32 = k == kindInteger && s.Format == "int32"
	case kindString:
		if s.Min != nil || s.Max != nil || s.ExclusiveMin.IsSet() || s.ExclusiveMax.IsSet() {
			return nil
		}
		c.minLen = int64(s.MinLength)
		if s.MaxLength != nil {
			c.maxLen = int64(min(*s.MaxLength, math.MaxInt64))
		}
		if s.Pattern != "" {
			re, err := regexp.Compile(rewriteCodepoints.ReplaceAllString(s.Pattern, `\x{${code}}`))
			if err != nil {
				return nil // the library reports it
			}
			c.pattern, c.patternSrc = re, s.Pattern
		}
		for _, e := range s.Enum {
			str, ok := e.(string)
			if !ok {
				return nil
			}
			c.enum = append(c.enum, str)
		}
		switch s.Format {
		case "uuid":
			c.formatFn = isUUID
		case "":
		default:
			f, ok := stringFormats[s.Format]
			if !ok {
				f, ok = openapi3.SchemaStringFormats[s.Format]
			}
			if ok {
				c.formatFn = func(b []byte) bool { return f.Validate(string(b)) == nil }
			}
		}
	case kindBoolean:
		if s.Min != nil || s.Max != nil || s.ExclusiveMin.IsSet() || s.ExclusiveMax.IsSet() ||
			s.MinLength != 0 || s.MaxLength != nil || s.Pattern != "" || len(s.Enum) > 0 {
			return nil
		}
	}
	return c
}

// exclusive is an exclusive bound, NaN when none: OpenAPI 3.1's number
// is the bound; 3.0's boolean makes the inclusive one exclusive (which is
// then checked as well, as the library does).
func exclusive(eb openapi3.ExclusiveBound, inclusive *float64) float64 {
	switch {
	case eb.Value != nil:
		return *eb.Value
	case eb.Bool != nil && *eb.Bool && inclusive != nil:
		return *inclusive
	}
	return math.NaN()
}

func (c *check) run(p *param, sc scalar) *Violation {
	fail := func(rule, detail string) *Violation {
		return &Violation{Status: 400, Code: CodeInvalid, In: p.in, Name: p.name, Rule: rule, Detail: detail}
	}
	switch p.kind {
	case kindInteger, kindNumber:
		// In the library's order, so that the same rule is reported.
		x := sc.f
		if p.kind == kindInteger {
			x = float64(sc.i)
			if c.int32 && (sc.i < math.MinInt32 || sc.i > math.MaxInt32) {
				return fail("format", `integer doesn't match the format "int32"`)
			}
		}
		switch {
		case x <= c.exclMin:
			return fail("exclusive_minimum", fmt.Sprintf("number must be more than %g", c.exclMin))
		case x >= c.exclMax:
			return fail("exclusive_maximum", fmt.Sprintf("number must be less than %g", c.exclMax))
		case x < c.min:
			return fail("minimum", fmt.Sprintf("number must be at least %g", c.min))
		case x > c.max:
			return fail("maximum", fmt.Sprintf("number must be at most %g", c.max))
		}
	case kindString:
		b := sc.s
		if c.enum != nil && !contains(c.enum, b) {
			return fail("enum", "value is not one of the allowed values")
		}
		if c.minLen > 0 || c.maxLen >= 0 {
			n := runeLen(b)
			if n < c.minLen {
				return fail("min_length", fmt.Sprintf("minimum string length is %d", c.minLen))
			}
			if c.maxLen >= 0 && n > c.maxLen {
				return fail("max_length", fmt.Sprintf("maximum string length is %d", c.maxLen))
			}
		}
		if c.pattern != nil && !c.pattern.Match(b) {
			return fail("pattern", fmt.Sprintf("string doesn't match the regular expression %q", c.patternSrc))
		}
		if c.formatFn != nil && !c.formatFn(b) {
			return fail("format", fmt.Sprintf("string doesn't match the format %q", c.format))
		}
	}
	return nil
}

func contains(enum []string, b []byte) bool {
	for _, e := range enum {
		if e == string(b) {
			return true
		}
	}
	return false
}

// runeLen is a string's length as JSON Schema counts it: in characters
// (code points). The library's comment says UTF-16 code units, but it
// counts a rune outside the BMP once, as here; TestCheckAgreesWithLibrary
// found the difference.
func runeLen(b []byte) int64 { return int64(utf8.RuneCount(b)) }
