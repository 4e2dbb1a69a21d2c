package openapi

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxJSONDepth bounds nesting, to bound the decoder's stack; warden's JSON
// threat checker bounds it tighter before a body gets here.
const maxJSONDepth = 512

// jsonError is a body that is not JSON as this decoder reads it.
type jsonError struct {
	rule, detail string
	path         []string // reversed: innermost key first
}

func (e *jsonError) violation() *Violation {
	name := "/"
	if len(e.path) > 0 {
		var b strings.Builder
		for i := len(e.path) - 1; i >= 0; i-- {
			b.WriteByte('/')
			b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(e.path[i]))
		}
		name = b.String()
	}
	return &Violation{Status: 400, Code: CodeInvalid, In: "body", Name: name, Rule: e.rule, Detail: e.detail}
}

// decodeJSON decodes one JSON value, with nothing but whitespace around
// it, into map[string]any, []any, string, json.Number, bool or nil: what
// encoding/json with UseNumber makes (FuzzDecodeJSON holds it to that), in
// a third of its time.
//
// It is stricter than encoding/json where two readers of the body could
// disagree, since the policy reads this decoding and the app its own: an
// object with a key twice is refused (encoding/json keeps the last, many
// parsers the first), and so are invalid UTF-8 and lone surrogate escapes
// (encoding/json turns both into U+FFFD, other parsers fail or keep the
// bytes).
func decodeJSON(b []byte) (any, *jsonError) {
	d := decoder{b: b}
	d.space()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.space()
	if d.i != len(d.b) {
		return nil, d.syntax("data after the JSON value")
	}
	return v, nil
}

type decoder struct {
	b []byte
	i int
}

func (d *decoder) syntax(detail string) *jsonError {
	return &jsonError{rule: "json", detail: detail + " at offset " + strconv.Itoa(d.i)}
}

func (d *decoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) value(depth int) (any, *jsonError) {
	if d.i >= len(d.b) {
		return nil, d.syntax("unexpected end")
	}
	switch c := d.b[d.i]; {
	case c == '{':
		if depth >= maxJSONDepth {
			return nil, &jsonError{rule: "depth", detail: "nested deeper than " + strconv.Itoa(maxJSONDepth)}
		}
		return d.object(depth + 1)
	case c == '[':
		if depth >= maxJSONDepth {
			return nil, &jsonError{rule: "depth", detail: "nested deeper than " + strconv.Itoa(maxJSONDepth)}
		}
		return d.array(depth + 1)
	case c == '"':
		return d.string()
	case c == '-' || (c >= '0' && c <= '9'):
		start := d.i
		d.i++
		for d.i < len(d.b) && strings.IndexByte("0123456789.eE+-", d.b[d.i]) >= 0 {
			d.i++
		}
		if !isJSONNumber(d.b[start:d.i]) {
			d.i = start
			return nil, d.syntax("malformed number")
		}
		return json.Number(d.b[start:d.i]), nil
	case d.literal("true"):
		return true, nil
	case d.literal("false"):
		return false, nil
	case d.literal("null"):
		return nil, nil
	}
	return nil, d.syntax("unexpected character")
}

func (d *decoder) literal(s string) bool {
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

func (d *decoder) object(depth int) (any, *jsonError) {
	d.i++ // '{'
	m := map[string]any{}
	d.space()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return m, nil
	}
	for {
		d.space()
		if d.i >= len(d.b) || d.b[d.i] != '"' {
			return nil, d.syntax("expected a key")
		}
		k, err := d.string()
		if err != nil {
			return nil, err
		}
		key := k.(string)
		d.space()
		if d.i >= len(d.b) || d.b[d.i] != ':' {
			return nil, d.syntax("expected ':'")
		}
		d.i++
		d.space()
		v, err := d.value(depth)
		if err != nil {
			err.path = append(err.path, key)
			return nil, err
		}
		if _, dup := m[key]; dup {
			return nil, &jsonError{rule: "duplicate", detail: "a key appears twice in an object", path: []string{key}}
		}
		m[key] = v
		d.space()
		if d.i >= len(d.b) {
			return nil, d.syntax("unexpected end")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return m, nil
		default:
			return nil, d.syntax("expected ',' or '}'")
		}
	}
}

func (d *decoder) array(depth int) (any, *jsonError) {
	d.i++ // '['
	a := []any{}
	d.space()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		return a, nil
	}
	for {
		d.space()
		v, err := d.value(depth)
		if err != nil {
			err.path = append(err.path, strconv.Itoa(len(a)))
			return nil, err
		}
		a = append(a, v)
		d.space()
		if d.i >= len(d.b) {
			return nil, d.syntax("unexpected end")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case ']':
			d.i++
			return a, nil
		default:
			return nil, d.syntax("expected ',' or ']'")
		}
	}
}

// string decodes a string at d.i (its opening quote).
func (d *decoder) string() (any, *jsonError) {
	d.i++
	start := d.i
	// Fast path: no escape, ASCII or valid UTF-8.
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c == '"' {
			s := d.b[start:d.i]
			if !utf8.Valid(s) {
				return nil, d.syntax("invalid UTF-8 in a string")
			}
			d.i++
			return string(s), nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return nil, d.syntax("control character in a string")
		}
		d.i++
	}
	buf := append([]byte(nil), d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			if !utf8.Valid(buf) {
				return nil, d.syntax("invalid UTF-8 in a string")
			}
			d.i++
			return string(buf), nil
		case c < 0x20:
			return nil, d.syntax("control character in a string")
		case c != '\\':
			buf = append(buf, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.b) {
			break
		}
		e := d.b[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return nil, d.syntax("malformed \\u escape")
			}
			if utf16.IsSurrogate(r) {
				// Only a high surrogate followed by a low one is a rune.
				lo := rune(-1)
				if r < 0xdc00 && d.i+1 < len(d.b) && d.b[d.i] == '\\' && d.b[d.i+1] == 'u' {
					d.i += 2
					lo, ok = d.hex4()
					if !ok {
						return nil, d.syntax("malformed \\u escape")
					}
				}
				if r = utf16.DecodeRune(r, lo); r == utf8.RuneError {
					return nil, d.syntax("lone surrogate escape in a string")
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return nil, d.syntax("unknown escape in a string")
		}
	}
	return nil, d.syntax("unterminated string")
}

func (d *decoder) hex4() (rune, bool) {
	if len(d.b)-d.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range d.b[d.i : d.i+4] {
		h := unhex(c)
		if h < 0 {
			return 0, false
		}
		r = r<<4 | rune(h)
	}
	d.i += 4
	return r, true
}
