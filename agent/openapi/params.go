package openapi

import (
	"bytes"
	"math"
	"strconv"
	"unsafe"
)

// scalar is a parameter's value converted by its kind, without
// allocating: s aliases the request.
type scalar struct {
	i int64
	f float64
	b bool
	s []byte
}

func (p *param) typeViolation(want string) *Violation {
	return &Violation{Status: 400, Code: CodeInvalid, In: p.in, Name: p.name, Rule: "type", Detail: "not " + want}
}

// parse converts one value (or array item) by the parameter's kind.
// Integers and numbers take JSON's grammar, so that warden and the app
// read one number: no '+', no leading zeros, no hex, no "NaN" or "Inf".
func (p *param) parse(b []byte) (scalar, *Violation) {
	switch p.kind {
	case kindInteger:
		i, ok := parseInt(b)
		if !ok {
			return scalar{}, p.typeViolation("an integer (decimal digits, optional '-', no leading zero, within 64 bits)")
		}
		return scalar{i: i}, nil
	case kindNumber:
		if !isJSONNumber(b) {
			return scalar{}, p.typeViolation("a number (JSON syntax)")
		}
		// b is a JSON number, so ParseFloat only fails out of range; the
		// string does not outlive the call.
		f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 64)
		if err != nil || math.IsInf(f, 0) {
			return scalar{}, p.typeViolation("a number within float64's range")
		}
		return scalar{f: f}, nil
	case kindBoolean:
		switch string(b) {
		case "true":
			return scalar{b: true}, nil
		case "false":
			return scalar{}, nil
		}
		return scalar{}, p.typeViolation(`a boolean ("true" or "false")`)
	}
	return scalar{s: b}, nil
}

func (p *param) box(sc scalar) any {
	switch p.kind {
	case kindInteger:
		return sc.i
	case kindNumber:
		return sc.f
	case kindBoolean:
		return sc.b
	}
	return string(sc.s)
}

// valid checks a value: a scalar against its schema, or an array (its
// items comma-separated) against the array's schema.
func (p *param) valid(b []byte) *Violation {
	if p.array {
		items, v := p.appendItems(nil, b)
		if v != nil {
			return v
		}
		return p.checkArray(items)
	}
	sc, v := p.parse(b)
	if v != nil {
		return v
	}
	if p.check != nil {
		return p.check.run(p, sc)
	}
	return p.visit(p.box(sc))
}

// value is valid that also returns the typed value, for path parameters.
func (p *param) value(b []byte) (any, *Violation) {
	if p.array {
		items, v := p.appendItems(nil, b)
		if v != nil {
			return nil, v
		}
		if v := p.checkArray(items); v != nil {
			return nil, v
		}
		if items == nil {
			items = []any{}
		}
		return items, nil
	}
	sc, v := p.parse(b)
	if v != nil {
		return nil, v
	}
	val := p.box(sc)
	if p.check != nil {
		v = p.check.run(p, sc)
	} else {
		v = p.visit(val)
	}
	return val, v
}

// item converts one array item; the array's schema checks them together.
func (p *param) item(b []byte) (any, *Violation) {
	sc, v := p.parse(b)
	if v != nil {
		return nil, v
	}
	return p.box(sc), nil
}

// appendItems appends the comma-separated items of b (simple style, or
// form with explode=false); in a header, spaces around each are trimmed
// (RFC 9110 lists). An empty b is no items.
func (p *param) appendItems(items []any, b []byte) ([]any, *Violation) {
	if p.in == "header" {
		b = bytes.TrimSpace(b)
	}
	if len(b) == 0 {
		return items, nil
	}
	for {
		part, rest, more := bytes.Cut(b, []byte{','})
		if p.in == "header" {
			part = bytes.TrimSpace(part)
		}
		it, v := p.item(part)
		if v != nil {
			return nil, v
		}
		items = append(items, it)
		if !more {
			return items, nil
		}
		b = rest
	}
}

func (p *param) checkArray(items []any) *Violation {
	if items == nil {
		items = []any{}
	}
	return p.visit(items)
}

// parseInt parses an optional '-' and decimal digits without a leading
// zero, within int64.
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if u > (math.MaxUint64-9)/10 {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	switch {
	case neg && u <= 1<<63:
		return -int64(u), true // for 1<<63, int64 wraps to MinInt64, its own negation
	case !neg && u <= math.MaxInt64:
		return int64(u), true
	}
	return 0, false
}

// isJSONNumber reports whether b is a number in JSON's grammar.
func isJSONNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	return i == len(b)
}
