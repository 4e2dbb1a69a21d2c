package openapi

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	"github.com/warden-sidecar/warden/agent/pep"
)

// Request is what the validator reads. Its slices alias the caller's
// buffers: valid during Validate only.
type Request struct {
	Method, Path, RawPath, RawQuery []byte // Path decoded and normalized, RawPath as sent, RawQuery without '?'
	Headers                         []pep.Field
	ContentType                     []byte // the Content-Type header's value, nil when absent
	Body                            []byte // nil when no body
}

// Operation is what the policy sees as input.operation. Validate may
// return one shared by every request to the operation: read-only.
type Operation struct {
	ID           string // operationId, "" when the document gives none
	PathTemplate string // "/accounts/{id}"
	// PathParams are typed by their schemas: int64 for integer, float64 for
	// number, bool, string; a []any of those for an array. nil when the
	// template has none.
	PathParams map[string]any
	// Key identifies the operation and its path parameters for the
	// decision cache, and includes the document's revision: equal Keys ⇔
	// equal operations of one document.
	Key string

	plan *operation // for CheckBody
}

// The codes of a Violation, as the client's JSON "error".
const (
	CodeNotFound    = "not_found"
	CodeInvalid     = "invalid_request"
	CodeUnsupported = "unsupported_media_type"
)

// Violation is a refused request, for the operator's log; it is never sent
// to the client, and never holds the offending value (values can be
// secrets).
type Violation struct {
	Status int    // 404, 400 or 415
	Code   string // CodeNotFound, CodeInvalid, CodeUnsupported
	In     string // "path", "query", "header", "cookie", "body"; "" when no operation matched
	Name   string // the parameter's name, or a JSON pointer into the body
	// Rule is what was broken: "no_route", "method", "encoding", "type",
	// "format", "minimum", "maximum", "exclusive_minimum",
	// "exclusive_maximum", "min_length", "max_length", "pattern", "enum",
	// "required", "duplicate", "media_type", "json", or a schema keyword
	// in snake case ("additional_properties", "one_of", ...).
	Rule   string
	Detail string
}

func (v *Violation) Error() string {
	s := "openapi: " + strconv.Itoa(v.Status) + " " + v.Code + ": " + v.Rule
	if v.In != "" {
		s += " in " + v.In
	}
	if v.Name != "" {
		s += " " + strconv.Quote(v.Name)
	}
	if v.Detail != "" {
		s += ": " + v.Detail
	}
	return s
}

var (
	noRoute  = &Violation{Status: 404, Code: CodeNotFound, Rule: "no_route", Detail: "no path template matches"}
	noMethod = &Violation{Status: 404, Code: CodeNotFound, Rule: "method", Detail: "the path has no operation for this method"}
)

// Validate matches the request to an operation and checks its parameters
// and body: Match, then CheckBody. On success it returns the operation
// (input.operation) and, when the operation takes a JSON body and one was
// sent, the decoded body (objects as map[string]any, numbers as
// json.Number), nil otherwise.
//
// A Violation it returns may be shared: read-only.
func (s *Spec) Validate(r *Request) (*Operation, any, *Violation) {
	op, v := s.Match(r)
	if v != nil {
		return nil, nil, v
	}
	body, v := op.CheckBody(r)
	if v != nil {
		return nil, nil, v
	}
	return op, body, nil
}

// Match matches the request to an operation and checks its path, query,
// header and cookie parameters: everything but the body, which the
// pipeline checks against its size and nesting limits before CheckBody
// decodes it.
func (s *Spec) Match(r *Request) (*Operation, *Violation) {
	var buf [maxSegments][]byte
	segs, v := splitPath(buf[:0], r)
	if v != nil {
		return nil, v
	}
	var pathFound bool
	op := s.root.lookup(segs, r.Method, &pathFound)
	if op == nil {
		if pathFound {
			return nil, noMethod
		}
		return nil, noRoute
	}
	out := &op.op
	if len(op.path) > 0 {
		out, v = op.pathParams(segs)
		if v != nil {
			return nil, v
		}
	}
	if v := op.checkQuery(r.RawQuery); v != nil {
		return nil, v
	}
	if v := op.checkHeaders(r.Headers); v != nil {
		return nil, v
	}
	return out, nil
}

// CheckBody checks the request's body against the operation Match
// returned for it, and returns the decoded JSON body, if any.
func (o *Operation) CheckBody(r *Request) (any, *Violation) {
	return o.plan.checkBody(r)
}

// pathParams checks the path parameters and returns the Operation with
// their typed values, and its Key.
func (op *operation) pathParams(segs [][]byte) (*Operation, *Violation) {
	out := &Operation{ID: op.op.ID, PathTemplate: op.op.PathTemplate, PathParams: make(map[string]any, len(op.path)), plan: op}
	var kb [128]byte // the key is built on the stack, then copied once
	key := append(kb[:0], op.key...)
	for _, p := range op.path {
		val, v := p.value(segs[p.seg])
		if v != nil {
			return nil, v
		}
		out.PathParams[p.name] = val
		key = appendKeyValue(append(key, 0), val)
	}
	out.Key = string(key)
	return out, nil
}

// appendKeyValue appends an unambiguous encoding of a parameter value: a
// type tag, then the value (strings quoted, so no value can imitate the
// separator or another type).
func appendKeyValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case int64:
		return strconv.AppendInt(append(b, 'i'), v, 10)
	case float64:
		return strconv.AppendFloat(append(b, 'f'), v, 'g', -1, 64)
	case bool:
		return strconv.AppendBool(append(b, 'b'), v)
	case string:
		return strconv.AppendQuote(append(b, 's'), v)
	case []any:
		b = strconv.AppendInt(append(b, 'a'), int64(len(v)), 10)
		for _, e := range v {
			b = appendKeyValue(append(b, ','), e)
		}
		return b
	}
	panic("openapi: unexpected path parameter value") // values come from param.value only
}

// checkQuery parses the query ('&'-separated name=value pairs, '+' a
// space, percent-decoded) and checks the operation's query parameters.
// Every pair must decode, whether declared or not, so that no parameter
// the app reads was unreadable here; a ';' is refused since some servers
// split on it (Go's net/http refuses it too). Undeclared parameters are
// allowed, as OpenAPI allows them. A parameter given twice whose schema is
// not an exploded array is refused: the app may read either copy.
func (op *operation) checkQuery(q []byte) *Violation {
	if bytes.IndexByte(q, ';') >= 0 {
		return &Violation{Status: 400, Code: CodeInvalid, In: "query", Rule: "encoding", Detail: "';' in the query: servers disagree on whether it separates parameters"}
	}
	var seenBuf [8]int
	seen := seenBuf[:0]
	if len(op.query) > len(seenBuf) {
		seen = make([]int, len(op.query))
	} else {
		seen = seenBuf[:len(op.query)]
	}
	var arrays [][]any // exploded arrays' items, per parameter; allocated when met
	var nameBuf [64]byte
	for len(q) > 0 {
		var pair []byte
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			pair, q = q, nil
		}
		if len(pair) == 0 {
			continue
		}
		rawName, rawValue, _ := bytes.Cut(pair, []byte{'='})
		name, ok := unescape(nameBuf[:0], rawName, true)
		if !ok || !utf8.Valid(name) {
			return &Violation{Status: 400, Code: CodeInvalid, In: "query", Rule: "encoding", Detail: "malformed percent-encoding or invalid UTF-8 in a parameter name"}
		}
		i := -1
		for j, p := range op.query {
			if p.name == string(name) {
				i = j
				break
			}
		}
		if i < 0 {
			if !validEscapes(rawValue) {
				return &Violation{Status: 400, Code: CodeInvalid, In: "query", Name: bounded(string(name)), Rule: "encoding", Detail: "malformed percent-encoding"}
			}
			continue
		}
		p := op.query[i]
		seen[i]++
		if seen[i] > 1 && !(p.array && p.explode) {
			return &Violation{Status: 400, Code: CodeInvalid, In: "query", Name: p.name, Rule: "duplicate", Detail: "given more than once"}
		}
		value, ok := unescape(nil, rawValue, true)
		if !ok || !utf8.Valid(value) {
			return &Violation{Status: 400, Code: CodeInvalid, In: "query", Name: p.name, Rule: "encoding", Detail: "malformed percent-encoding or invalid UTF-8"}
		}
		if p.array && p.explode {
			if arrays == nil {
				arrays = make([][]any, len(op.query))
			}
			item, v := p.item(value)
			if v != nil {
				return v
			}
			arrays[i] = append(arrays[i], item)
			continue
		}
		if v := p.valid(value); v != nil {
			return v
		}
	}
	for i, p := range op.query {
		switch {
		case seen[i] == 0 && p.required:
			return missing(p)
		case arrays != nil && arrays[i] != nil:
			if v := p.checkArray(arrays[i]); v != nil {
				return v
			}
		}
	}
	return nil
}

func missing(p *param) *Violation {
	return &Violation{Status: 400, Code: CodeInvalid, In: p.in, Name: p.name, Rule: "required", Detail: "required parameter is missing"}
}

// validEscapes reports whether every '%' in s starts a valid escape.
func validEscapes(s []byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0 {
				return false
			}
			i += 2
		}
	}
	return true
}

// checkHeaders checks the header and cookie parameters. Header names
// match case-insensitively; a header parameter sent on several lines is
// refused unless it is an array (whose lines are one comma-separated
// list, as RFC 9110 reads them). Cookies come from every Cookie header
// ("a=1; b=2"), their values taken as sent (not percent-decoded, as most
// servers read them); a cookie sent twice is refused.
func (op *operation) checkHeaders(hs []pep.Field) *Violation {
	for _, p := range op.header {
		var found []byte
		var n int
		var items []any
		for _, h := range hs {
			if !bytes.EqualFold(h.Name, []byte(p.name)) {
				continue
			}
			n++
			if p.array {
				var v *Violation
				if items, v = p.appendItems(items, h.Value); v != nil {
					return v
				}
				continue
			}
			if n > 1 {
				return &Violation{Status: 400, Code: CodeInvalid, In: "header", Name: p.name, Rule: "duplicate", Detail: "sent on more than one line"}
			}
			found = h.Value
		}
		switch {
		case n == 0:
			if p.required {
				return missing(p)
			}
		case p.array:
			if v := p.checkArray(items); v != nil {
				return v
			}
		default:
			if !utf8.Valid(found) {
				return &Violation{Status: 400, Code: CodeInvalid, In: "header", Name: p.name, Rule: "encoding", Detail: "invalid UTF-8"}
			}
			if v := p.valid(bytes.TrimSpace(found)); v != nil {
				return v
			}
		}
	}
	if len(op.cookie) == 0 {
		return nil
	}
	for _, p := range op.cookie {
		var found []byte
		var n int
		for _, h := range hs {
			if !bytes.EqualFold(h.Name, []byte("Cookie")) {
				continue
			}
			for c := h.Value; len(c) > 0; {
				var pair []byte
				if i := bytes.IndexByte(c, ';'); i >= 0 {
					pair, c = c[:i], c[i+1:]
				} else {
					pair, c = c, nil
				}
				name, value, ok := bytes.Cut(bytes.TrimSpace(pair), []byte{'='})
				if !ok || string(name) != p.name {
					continue
				}
				if n++; n > 1 {
					return &Violation{Status: 400, Code: CodeInvalid, In: "cookie", Name: p.name, Rule: "duplicate", Detail: "sent more than once"}
				}
				if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
					value = value[1 : len(value)-1]
				}
				found = value
			}
		}
		if n == 0 {
			if p.required {
				return missing(p)
			}
			continue
		}
		if !utf8.Valid(found) {
			return &Violation{Status: 400, Code: CodeInvalid, In: "cookie", Name: p.name, Rule: "encoding", Detail: "invalid UTF-8"}
		}
		if v := p.valid(found); v != nil {
			return v
		}
	}
	return nil
}
