package openapi

import (
	"errors"
	"fmt"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// operation is an operation's compiled plan: everything Validate needs,
// decided at load.
type operation struct {
	method string
	op     Operation // ID, PathTemplate; Key too when there are no path parameters
	key    string    // the prefix of Key: revision, ID and template

	path   []*param // in template order
	query  []*param
	header []*param
	cookie []*param
	body   *bodyPlan // nil when the operation declares no request body
}

// kind is how a parameter's string is converted before its schema sees
// it: the schema's type, or its items' for an array.
type kind uint8

const (
	kindString  kind = iota // also a schema without a type: the string as is
	kindInteger             // int64
	kindNumber              // float64
	kindBoolean             // "true" or "false"
)

// param is a parameter's plan.
type param struct {
	name     string
	in       string // "path", "query", "header", "cookie"
	required bool
	seg      int  // path: the template segment it fills
	array    bool // comma-separated, or repeated for an exploded query
	explode  bool // query arrays: ?a=1&a=2 (true) or ?a=1,2 (false)
	kind     kind // of the value, or of the items
	schema   *openapi3.Schema
	check    *check // the schema's constraints when they are simple; nil: the library checks
}

// Styles warden parses, per location (OpenAPI's defaults): anything else
// is refused at load, never skipped at run time.
var supportedStyle = map[string]string{
	openapi3.ParameterInPath:   openapi3.SerializationSimple,
	openapi3.ParameterInQuery:  openapi3.SerializationForm,
	openapi3.ParameterInHeader: openapi3.SerializationSimple,
	openapi3.ParameterInCookie: openapi3.SerializationForm,
}

func compileOperation(doc *openapi3.T, tmpl string, segs []segment, item *openapi3.PathItem, o *openapi3.Operation, method string) (*operation, error) {
	op := &operation{method: method, op: Operation{ID: o.OperationID, PathTemplate: tmpl}}
	op.op.plan = op

	// Operation parameters override the path item's of the same name and
	// location.
	type pkey struct{ name, in string }
	var order []pkey
	byKey := map[pkey]*openapi3.Parameter{}
	for _, list := range []openapi3.Parameters{item.Parameters, o.Parameters} {
		for _, ref := range list {
			if ref == nil || ref.Value == nil {
				return nil, errors.New("parameter: unresolved reference")
			}
			p := ref.Value
			k := pkey{p.Name, p.In}
			if p.In == openapi3.ParameterInHeader {
				k.name = strings.ToLower(p.Name)
			}
			if _, ok := byKey[k]; !ok {
				order = append(order, k)
			}
			byKey[k] = p
		}
	}
	segOf := map[string]int{}
	for i, s := range segs {
		if s.param != "" {
			segOf[s.param] = i
		}
	}
	pathDeclared := map[string]bool{}
	for _, k := range order {
		p := byKey[k]
		if p.In == openapi3.ParameterInHeader {
			switch strings.ToLower(p.Name) {
			case "accept", "content-type", "authorization":
				continue // OpenAPI: such a definition "SHALL be ignored"
			}
		}
		pl, err := compileParam(p)
		if err != nil {
			return nil, fmt.Errorf("parameter %s (in %s): %w", p.Name, p.In, err)
		}
		switch p.In {
		case openapi3.ParameterInPath:
			i, ok := segOf[p.Name]
			if !ok {
				return nil, fmt.Errorf("parameter %s (in path): not in the path template", p.Name)
			}
			pl.seg = i
			pathDeclared[p.Name] = true
			op.path = append(op.path, pl)
		case openapi3.ParameterInQuery:
			op.query = append(op.query, pl)
		case openapi3.ParameterInHeader:
			op.header = append(op.header, pl)
		case openapi3.ParameterInCookie:
			op.cookie = append(op.cookie, pl)
		}
	}
	for _, s := range segs {
		if s.param != "" && !pathDeclared[s.param] {
			return nil, fmt.Errorf("path parameter %s is in the template but not declared", s.param)
		}
	}
	// Path parameters in template order: the order of Key.
	sortBySeg(op.path)

	if o.RequestBody != nil {
		if o.RequestBody.Value == nil {
			return nil, errors.New("requestBody: unresolved reference")
		}
		b, err := compileBody(o.RequestBody.Value)
		if err != nil {
			return nil, fmt.Errorf("requestBody: %w", err)
		}
		op.body = b
	}
	return op, nil
}

func sortBySeg(ps []*param) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].seg < ps[j-1].seg; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

func compileParam(p *openapi3.Parameter) (*param, error) {
	want, ok := supportedStyle[p.In]
	if !ok {
		return nil, fmt.Errorf("location %q is not one of path, query, header, cookie", p.In)
	}
	if len(p.Content) > 0 {
		return nil, errors.New("content (a media-type-encoded parameter) is not supported: describe it with schema")
	}
	if p.Schema == nil || p.Schema.Value == nil {
		return nil, errors.New("no schema")
	}
	sm, err := p.SerializationMethod()
	if err != nil {
		return nil, err
	}
	if sm.Style != want {
		return nil, fmt.Errorf("style %s is not supported in %s (supported: %s)", sm.Style, p.In, want)
	}
	s := p.Schema.Value
	if err := enforceable(s); err != nil {
		return nil, fmt.Errorf("schema %w", err)
	}
	pl := &param{name: p.Name, in: p.In, required: p.Required, explode: sm.Explode, schema: s}
	typ, err := singleType(s)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	switch typ {
	case openapi3.TypeObject:
		return nil, errors.New("object parameters are not supported")
	case openapi3.TypeArray:
		if p.In == openapi3.ParameterInCookie {
			return nil, errors.New("array cookies are not supported")
		}
		pl.array = true
		if s.Items == nil || s.Items.Value == nil {
			break // items of any type: strings
		}
		it, err := singleType(s.Items.Value)
		if err != nil {
			return nil, fmt.Errorf("schema: items: %w", err)
		}
		if it == openapi3.TypeArray || it == openapi3.TypeObject {
			return nil, fmt.Errorf("schema: items of type %s are not supported", it)
		}
		pl.kind = kindOf(it)
	default:
		pl.kind = kindOf(typ)
		pl.check = compileCheck(s, pl.kind)
	}
	return pl, nil
}

// singleType is the one type a parameter's schema gives its values, "null"
// aside ("" for none). A schema that allows several, or composes others
// without a type of its own, is refused: the string a client sends could
// be converted several ways, and the check would depend on the guess.
func singleType(s *openapi3.Schema) (string, error) {
	var types []string
	if s.Type != nil {
		for _, t := range *s.Type {
			if t != openapi3.TypeNull {
				types = append(types, t)
			}
		}
	}
	switch {
	case len(types) > 1:
		return "", fmt.Errorf("several types %v: a parameter's schema must have one", types)
	case len(types) == 1:
		return types[0], nil
	case len(s.OneOf) > 0 || len(s.AnyOf) > 0 || len(s.AllOf) > 0 || s.Not != nil:
		return "", errors.New("oneOf/anyOf/allOf/not without a type: a parameter's schema must have one type")
	}
	return "", nil
}

func kindOf(typ string) kind {
	switch typ {
	case openapi3.TypeInteger:
		return kindInteger
	case openapi3.TypeNumber:
		return kindNumber
	case openapi3.TypeBoolean:
		return kindBoolean
	}
	return kindString
}
