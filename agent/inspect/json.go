package inspect

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"io"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// JSONLimits bound what a JSON body may hold. Every field must be positive
// (Validate); DefaultJSONLimits are issue 15's.
type JSONLimits struct {
	// MaxDepth bounds the nesting of objects and arrays: a top-level object
	// or array is at depth 1, so MaxDepth 1 allows {"a":1} but not {"a":{}}.
	MaxDepth int
	// MaxKeys bounds the members of one object.
	MaxKeys int
	// MaxArray bounds the elements of one array.
	MaxArray int
	// MaxString bounds a string value or member name, in bytes as written
	// between its quotes, escapes not decoded: the decoded string is never
	// longer, so the limit bounds what the app holds too, and the check needs
	// no decoding.
	MaxString int
	// MaxNumber bounds a number, in bytes as written (sign, digits, '.',
	// exponent).
	MaxNumber int
}

// DefaultJSONLimits returns depth 32, 1000 keys per object, 10000 elements
// per array, 65536-byte strings and 64-byte numbers.
func DefaultJSONLimits() JSONLimits {
	return JSONLimits{MaxDepth: 32, MaxKeys: 1000, MaxArray: 10000, MaxString: 65536, MaxNumber: 64}
}

// maxJSONDepth is jsontext's own nesting limit: it refuses to open a
// container at this depth plus one, as a syntax error, before MaxDepth
// could be checked, so MaxDepth must be below it.
const maxJSONDepth = 10000

// Validate reports the first limit that is not positive, or a MaxDepth of
// 10000 or more (the tokenizer's own bound).
func (l JSONLimits) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"MaxDepth", l.MaxDepth}, {"MaxKeys", l.MaxKeys}, {"MaxArray", l.MaxArray}, {"MaxString", l.MaxString}, {"MaxNumber", l.MaxNumber}} {
		if f.v <= 0 {
			return fmt.Errorf("inspect: JSON %s is %d: want a positive number", f.name, f.v)
		}
	}
	if l.MaxDepth >= maxJSONDepth {
		return fmt.Errorf("inspect: JSON MaxDepth is %d: want less than %d", l.MaxDepth, maxJSONDepth)
	}
	return nil
}

// jsonState is what one check needs, pooled so that a body within the
// limits costs no allocation: the decoder and the duplicate check keep
// their stacks and buffers between uses.
type jsonState struct {
	// buf hands the body to dec: a *bytes.Buffer is the one reader jsontext
	// parses in place, where any other is copied into its own buffer
	// (4 KiB, or larger to hold a long string whole).
	buf   bytes.Buffer
	dec   jsontext.Decoder
	names nameSet
}

var jsonStates = sync.Pool{New: func() any { return &jsonState{names: nameSet{seed: maphash.MakeSeed()}} }}

// decoderOptions leave duplicate names to nameSet (see there why). A
// package variable: options passed as literals would allocate per call.
var decoderOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true)}

// CheckJSON reads body once as a stream of tokens; nil means it is one
// valid JSON value (RFC 8259, with the stricter rules of I-JSON, RFC 7493:
// UTF-8 only, no lone surrogate escapes, no duplicate member names) within
// l.
//
// An empty body, or one of whitespace only, is not a JSON value and is
// refused as syntax: a caller that lets requests without a body through
// should not call CheckJSON for them. Limits are checked as tokens arrive,
// so the first violation in document order is the one reported, before the
// rest of the body is read.
func (l JSONLimits) CheckJSON(body []byte) *Violation {
	st := jsonStates.Get().(*jsonState)
	st.buf = *bytes.NewBuffer(body)
	st.dec.Reset(&st.buf, decoderOptions...)
	st.names.reset(body)
	v := l.check(st, body)
	// Keep no reference to the body in the pool.
	st.buf = bytes.Buffer{}
	st.dec.Reset(&st.buf)
	st.names.reset(nil)
	jsonStates.Put(st)
	return v
}

func (l JSONLimits) check(st *jsonState, body []byte) *Violation {
	dec := &st.dec
	for {
		prev := dec.InputOffset()
		if _, err := dec.ReadToken(); err != nil {
			if err == io.EOF { // before any token: nothing but whitespace
				return &Violation{Rule: RuleSyntax, Offset: int64(len(body))}
			}
			return jsonError(err, body, prev)
		}
		end := dec.InputOffset()
		depth := dec.StackDepth()
		// The token's last byte tells its kind (the tokenizer checked it):
		// cheaper than Token.Kind, and the token is not needed otherwise.
		switch c := body[end-1]; c {
		case '{', '[':
			if depth > l.MaxDepth {
				return l.violation(dec, RuleMaxDepth, l.MaxDepth, tokenStart(body, prev), false)
			}
			if c == '{' {
				st.names.push()
			}
			if depth > 1 {
				if kind, n := dec.StackIndex(depth - 1); kind == '[' && n > int64(l.MaxArray) {
					return l.violation(dec, RuleMaxArray, l.MaxArray, tokenStart(body, prev), false)
				}
			}
			continue
		case '}', ']':
			if c == '}' {
				st.names.pop()
			}
			if depth == 0 {
				return checkEOF(dec, body)
			}
			continue
		case '"':
			// end-prev is the token's length plus the whitespace and ','
			// or ':' before it: exact only when it matters.
			if end-prev-2 > int64(l.MaxString) && end-tokenStart(body, prev)-2 > int64(l.MaxString) {
				kind, n := dec.StackIndex(depth)
				return l.violation(dec, RuleMaxString, l.MaxString, tokenStart(body, prev), kind == '{' && n%2 == 1)
			}
			kind, n := dec.StackIndex(depth)
			if kind == '{' {
				if n%2 == 1 { // a member name
					if (n+1)/2 > int64(l.MaxKeys) {
						return l.violation(dec, RuleMaxKeys, l.MaxKeys, tokenStart(body, prev), false)
					}
					start := tokenStart(body, prev)
					if st.names.add(int(start), int(end)) {
						return l.violation(dec, RuleDuplicateKey, 0, start, false)
					}
				}
				continue
			}
			if kind == '[' && n > int64(l.MaxArray) {
				return l.violation(dec, RuleMaxArray, l.MaxArray, tokenStart(body, prev), false)
			}
		default: // a number, or true, false, null
			if c >= '0' && c <= '9' && end-prev > int64(l.MaxNumber) && end-tokenStart(body, prev) > int64(l.MaxNumber) {
				return l.violation(dec, RuleMaxNumber, l.MaxNumber, tokenStart(body, prev), false)
			}
			if kind, n := dec.StackIndex(depth); kind == '[' && n > int64(l.MaxArray) {
				return l.violation(dec, RuleMaxArray, l.MaxArray, tokenStart(body, prev), false)
			}
		}
		if depth == 0 { // a top-level string, number or literal
			return checkEOF(dec, body)
		}
	}
}

// checkEOF is called after the top-level value: one JSON text holds one
// value, and whatever follows but whitespace is refused, a second value
// (which jsontext's Decoder would read as a stream) included.
func checkEOF(dec *jsontext.Decoder, body []byte) *Violation {
	prev := dec.InputOffset()
	_, err := dec.ReadToken()
	switch serr, _ := err.(*jsontext.SyntacticError); {
	case err == io.EOF:
		return nil
	case serr != nil:
		return &Violation{Rule: RuleSyntax, Offset: serr.ByteOffset}
	}
	return &Violation{Rule: RuleSyntax, Offset: tokenStart(body, prev)}
}

// violation reports rule at the token just read. The pointer is the
// decoder's; for an overlong member name it is the object's, so that the
// name itself (cut or not) stays out of the log.
func (l JSONLimits) violation(dec *jsontext.Decoder, rule string, limit int, offset int64, name bool) *Violation {
	p := dec.StackPointer()
	if name {
		p = p.Parent()
	}
	return &Violation{Rule: rule, Where: clip(string(p)), Limit: limit, Offset: offset}
}

// jsonError turns a tokenizer error into a Violation.
func jsonError(err error, body []byte, prev int64) *Violation {
	serr, ok := err.(*jsontext.SyntacticError)
	if !ok { // jsontext reports I/O errors unwrapped; a bytes.Buffer has none
		return &Violation{Rule: RuleSyntax, Offset: tokenStart(body, prev)}
	}
	v := &Violation{Rule: RuleSyntax, Where: clip(string(serr.JSONPointer)), Offset: serr.ByteOffset}
	if serr.Err == errInvalidUTF8 && errInvalidUTF8 != nil ||
		serr.Err != io.ErrUnexpectedEOF && isSurrogateEscape(body, serr.ByteOffset) {
		v.Rule = RuleInvalidUTF8
	}
	return v
}

// errInvalidUTF8 is jsontext's error for invalid UTF-8 in a string. It is
// not exported (it lives in an internal package), so it is taken from the
// tokenizer once; TestJSONErrorSentinels fails if that stops working.
var errInvalidUTF8 = func() error {
	_, err := jsontext.NewDecoder(strings.NewReader("\"\xff\"")).ReadToken()
	if serr, ok := err.(*jsontext.SyntacticError); ok {
		return serr.Err
	}
	return nil
}()

// isSurrogateEscape reports whether body holds a \u escape of a surrogate
// at off, where jsontext reports a lone one: such an escape decodes to no
// character, and parsers disagree on what to make of it (U+FFFD, an
// error, or the surrogate kept as WTF-8), so it is refused as invalid UTF-8
// would be.
func isSurrogateEscape(body []byte, off int64) bool {
	if off < 0 || off > int64(len(body))-6 || body[off] != '\\' || body[off+1] != 'u' {
		return false
	}
	var r rune
	for _, c := range body[off+2 : off+6] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return false
		}
	}
	return r >= 0xd800 && r <= 0xdfff
}

// tokenStart is the offset of the token that follows offset prev, past the
// whitespace and the ',' or ':' before it.
func tokenStart(body []byte, prev int64) int64 {
	i := prev
	for i < int64(len(body)) {
		switch body[i] {
		case ' ', '\t', '\n', '\r', ',', ':':
			i++
			continue
		}
		break
	}
	return i
}
