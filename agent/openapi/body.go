package openapi

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// bodyPlan is an operation's requestBody.
type bodyPlan struct {
	required bool
	media    []media // exact types first, then type/*, then */*
}

// media is one entry of requestBody.content.
type media struct {
	typ, sub string           // lower case; "*" for a wildcard
	schema   *openapi3.Schema // nil: any content
}

func compileBody(rb *openapi3.RequestBody) (*bodyPlan, error) {
	b := &bodyPlan{required: rb.Required}
	for key, mt := range rb.Content {
		typ, sub, ok := parseMediaType([]byte(key))
		if !ok {
			return nil, fmt.Errorf("content %q: not a media type", key)
		}
		m := media{typ: typ, sub: sub}
		if mt != nil && mt.Schema != nil {
			if mt.Schema.Value == nil {
				return nil, fmt.Errorf("content %s: schema: unresolved reference", key)
			}
			if err := enforceable(mt.Schema.Value); err != nil {
				return nil, fmt.Errorf("content %s: schema %w", key, err)
			}
			m.schema = mt.Schema.Value
		}
		b.media = append(b.media, m)
	}
	if len(b.media) == 0 {
		return nil, fmt.Errorf("content: no media type")
	}
	rank := func(m media) int {
		switch {
		case m.typ == "*":
			return 2
		case m.sub == "*":
			return 1
		}
		return 0
	}
	slices.SortFunc(b.media, func(x, y media) int {
		if d := rank(x) - rank(y); d != 0 {
			return d
		}
		return strings.Compare(x.typ+"/"+x.sub, y.typ+"/"+y.sub)
	})
	return b, nil
}

// parseMediaType returns the lower-cased type and subtype of a media type
// ("Application/JSON; charset=utf-8" is application, json).
func parseMediaType(b []byte) (typ, sub string, ok bool) {
	if i := bytes.IndexByte(b, ';'); i >= 0 {
		b = b[:i]
	}
	b = bytes.TrimSpace(b)
	t, s, found := bytes.Cut(b, []byte{'/'})
	if !found || len(t) == 0 || len(s) == 0 || !isToken(t) || !isToken(s) {
		return "", "", false
	}
	return strings.ToLower(string(t)), strings.ToLower(string(s)), true
}

// isToken reports whether b is an RFC 9110 token.
func isToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// isJSON reports whether a media type is JSON: application/json or any
// structured syntax suffix +json (application/merge-patch+json).
func isJSON(typ, sub []byte) bool {
	return bytes.EqualFold(typ, []byte("application")) && (bytes.EqualFold(sub, []byte("json")) || hasSuffixFold(sub, "+json"))
}

var (
	noContentType = &Violation{Status: 415, Code: CodeUnsupported, In: "body", Rule: "media_type", Detail: "a body without Content-Type"}
	badMediaType  = &Violation{Status: 415, Code: CodeUnsupported, In: "body", Rule: "media_type", Detail: "Content-Type is not one the operation accepts"}
	bodyRequired  = &Violation{Status: 400, Code: CodeInvalid, In: "body", Rule: "required", Detail: "the operation requires a body"}
)

// checkBody checks the request body against the operation's requestBody:
// present when required, of a listed media type, and for JSON media types
// valid JSON that matches the schema. Other media types are checked for
// their type only. An operation that declares no requestBody takes any
// body unchecked: OpenAPI does not forbid one.
func (op *operation) checkBody(r *Request) (any, *Violation) {
	b := op.body
	if b == nil {
		return nil, nil
	}
	if len(r.Body) == 0 {
		if b.required {
			return nil, bodyRequired
		}
		return nil, nil
	}
	if r.ContentType == nil {
		return nil, noContentType
	}
	typ, sub, ok := parseMediaTypeNoAlloc(r.ContentType)
	if !ok {
		return nil, badMediaType
	}
	var m *media
	for i := range b.media {
		c := &b.media[i]
		if (c.typ == "*" || bytes.EqualFold(typ, []byte(c.typ))) && (c.sub == "*" || bytes.EqualFold(sub, []byte(c.sub))) {
			m = c
			break
		}
	}
	if m == nil {
		return nil, badMediaType
	}
	if !isJSON(typ, sub) {
		return nil, nil
	}
	v, err := decodeJSON(r.Body)
	if err != nil {
		return nil, err.violation()
	}
	if m.schema != nil {
		if err := m.schema.VisitJSON(v, visitOptions...); err != nil {
			vi := schemaViolation("body", "", err)
			if vi.Name == "" {
				vi.Name = "/"
			}
			return nil, vi
		}
	}
	return v, nil
}

// parseMediaTypeNoAlloc is parseMediaType for the request: the type and
// subtype alias b.
func parseMediaTypeNoAlloc(b []byte) (typ, sub []byte, ok bool) {
	if i := bytes.IndexByte(b, ';'); i >= 0 {
		b = b[:i]
	}
	b = bytes.TrimSpace(b)
	typ, sub, found := bytes.Cut(b, []byte{'/'})
	if !found || len(typ) == 0 || len(sub) == 0 || !isToken(typ) || !isToken(sub) {
		return nil, nil, false
	}
	return typ, sub, true
}

func hasSuffixFold(b []byte, suffix string) bool {
	return len(b) >= len(suffix) && bytes.EqualFold(b[len(b)-len(suffix):], []byte(suffix))
}

// enforceable walks a schema and refuses the keywords the library's
// validator does not enforce (OpenAPI 3.1's JSON Schema 2020-12 additions
// that kin-openapi checks only in its JSON Schema 2020-12 mode, which
// compiles the schema on every call). A check warden cannot make must
// stop it at load, not pass requests unchecked. The error starts with
// the JSON pointer of the offending subschema.
func enforceable(s *openapi3.Schema) error {
	seen := map[*openapi3.Schema]bool{}
	var walk func(s *openapi3.Schema, ptr string) error
	walkRef := func(r *openapi3.SchemaRef, ptr string) error {
		if r == nil {
			return nil
		}
		if r.Value == nil {
			return fmt.Errorf("at %s: unresolved reference %s", ptrOrRoot(ptr), r.Ref)
		}
		return walk(r.Value, ptr)
	}
	walk = func(s *openapi3.Schema, ptr string) error {
		if seen[s] {
			return nil
		}
		seen[s] = true
		var kw string
		switch {
		case s.Const != nil:
			kw = "const (use enum with one value)"
		case len(s.PrefixItems) > 0:
			kw = "prefixItems"
		case s.Contains != nil || s.MinContains != nil || s.MaxContains != nil:
			kw = "contains"
		case len(s.PatternProperties) > 0:
			kw = "patternProperties"
		case len(s.DependentSchemas) > 0:
			kw = "dependentSchemas"
		case len(s.DependentRequired) > 0:
			kw = "dependentRequired"
		case s.PropertyNames != nil:
			kw = "propertyNames"
		case s.UnevaluatedItems.Has != nil || s.UnevaluatedItems.Schema != nil:
			kw = "unevaluatedItems"
		case s.UnevaluatedProperties.Has != nil || s.UnevaluatedProperties.Schema != nil:
			kw = "unevaluatedProperties"
		case s.If != nil || s.Then != nil || s.Else != nil:
			kw = "if/then/else"
		case s.DynamicRef != "":
			kw = "$dynamicRef"
		}
		if kw != "" {
			return fmt.Errorf("at %s: %s is not enforced by warden's validator (kin-openapi's); warden refuses what it cannot check", ptrOrRoot(ptr), kw)
		}
		for _, l := range []struct {
			name string
			refs openapi3.SchemaRefs
		}{{"oneOf", s.OneOf}, {"anyOf", s.AnyOf}, {"allOf", s.AllOf}} {
			for i, r := range l.refs {
				if err := walkRef(r, fmt.Sprintf("%s/%s/%d", ptr, l.name, i)); err != nil {
					return err
				}
			}
		}
		if err := walkRef(s.Not, ptr+"/not"); err != nil {
			return err
		}
		if err := walkRef(s.Items, ptr+"/items"); err != nil {
			return err
		}
		if err := walkRef(s.AdditionalProperties.Schema, ptr+"/additionalProperties"); err != nil {
			return err
		}
		names := make([]string, 0, len(s.Properties))
		for n := range s.Properties {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			if err := walkRef(s.Properties[n], ptr+"/properties/"+n); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(s, "")
}

func ptrOrRoot(ptr string) string {
	if ptr == "" {
		return "/"
	}
	return ptr
}
