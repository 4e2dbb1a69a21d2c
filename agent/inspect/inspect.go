package inspect

import (
	"strconv"
	"unicode/utf8"
)

// Kind of a body, from its Content-Type and first bytes.
type Kind uint8

// The kinds of body Classify tells apart.
const (
	None Kind = iota // not a body this package checks
	JSON
	XML
)

func (k Kind) String() string {
	switch k {
	case JSON:
		return "json"
	case XML:
		return "xml"
	}
	return "none"
}

// Classify returns the kind of body: by media type (case-insensitive,
// parameters ignored: application/json, */*+json → JSON; application/xml,
// text/xml, */*+xml → XML); with no Content-Type at all (nil, empty or
// blank), JSON when the body starts with '{' or '[' after JSON whitespace;
// otherwise None.
//
// The media type is the type and subtype tokens at the start of the header
// value; whatever follows them is ignored, parameters or not: a lenient app
// that reads "application/json, text/plain" or "application/json x" as JSON
// must not get it uninspected. A value that does not start with a
// type/subtype pair is None, as a body of no type that does not look like
// JSON is: the app has no reason to parse either as JSON or XML.
func Classify(contentType, body []byte) Kind {
	ct := trimOWS(contentType)
	if len(ct) == 0 {
		if startsJSON(body) {
			return JSON
		}
		return None
	}
	typ, sub, ok := mediaType(ct)
	switch {
	case !ok:
		return None
	case hasSuffixFold(sub, "+json"), equalFold(typ, "application") && equalFold(sub, "json"):
		return JSON
	case hasSuffixFold(sub, "+xml"), equalFold(sub, "xml") && (equalFold(typ, "application") || equalFold(typ, "text")):
		return XML
	}
	return None
}

// startsJSON reports whether b starts with '{' or '[' after JSON whitespace.
func startsJSON(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{', '[':
			return true
		}
		return false
	}
	return false
}

// mediaType splits the type/subtype tokens (RFC 9110, 8.3.1) at the start
// of ct.
func mediaType(ct []byte) (typ, sub []byte, ok bool) {
	i := 0
	for i < len(ct) && isTokenChar(ct[i]) {
		i++
	}
	if i == 0 || i == len(ct) || ct[i] != '/' {
		return nil, nil, false
	}
	typ = ct[:i]
	j := i + 1
	for j < len(ct) && isTokenChar(ct[j]) {
		j++
	}
	if j == i+1 {
		return nil, nil, false
	}
	return typ, ct[i+1 : j], true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold is an ASCII case-insensitive compare with a lower-case lower,
// without the allocation of bytes.ToLower.
func equalFold[T ~string | ~[]byte](b T, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func hasSuffixFold(b []byte, lower string) bool {
	return len(b) >= len(lower) && equalFold(b[len(b)-len(lower):], lower)
}

// The rules a Violation names. They are stable: logs and alerts match them.
const (
	RuleSyntax             = "syntax"              // not one well-formed JSON value or XML document (truncated, trailing data, several values or roots, an empty body)
	RuleInvalidUTF8        = "invalid_utf8"        // bytes that are not UTF-8 or, in JSON, a \u escape of a lone surrogate
	RuleMaxDepth           = "max_depth"           // objects and arrays, or elements, nested too deep
	RuleMaxKeys            = "max_keys"            // too many members in one JSON object
	RuleMaxArray           = "max_array"           // too many elements in one JSON array
	RuleMaxString          = "max_string"          // a JSON string or member name too long
	RuleMaxNumber          = "max_number"          // a JSON number too long
	RuleDuplicateKey       = "duplicate_key"       // a member name twice in one JSON object, compared decoded
	RuleDTD                = "dtd"                 // an XML document type declaration or other <! directive
	RuleMaxAttributes      = "max_attributes"      // too many attributes on one XML element
	RuleMaxElements        = "max_elements"        // too many XML elements in the document
	RuleMaxText            = "max_text"            // an XML text node or attribute value too long
	RuleDuplicateAttribute = "duplicate_attribute" // an attribute twice on one XML element
)

// Violation says which rule a body broke and where; it is for the log only.
// It holds no string value, text or attribute value of the body.
type Violation struct {
	Rule   string // one of the Rule constants
	Where  string // a JSON pointer ("/items/3/name"), or the XML element path ("/order/items[2]/item[3]"); at most maxWhere bytes
	Limit  int    // the limit broken, 0 when the rule has none
	Offset int64  // byte offset in the body where it was found
}

func (v *Violation) Error() string {
	b := append(make([]byte, 0, 64+len(v.Where)), "inspect: "...)
	b = append(b, v.Rule...)
	if v.Limit > 0 {
		b = strconv.AppendInt(append(b, " (limit "...), int64(v.Limit), 10)
		b = append(b, ')')
	}
	if v.Where != "" {
		b = strconv.AppendQuote(append(b, " in "...), v.Where)
	}
	b = strconv.AppendInt(append(b, " at offset "...), v.Offset, 10)
	return string(b)
}

// maxWhere bounds Violation.Where: names come from the body, and a log line
// is no place for a 64 KiB member name.
const maxWhere = 256

// clip cuts s to maxWhere bytes on a rune boundary, ending in "..." when it
// was cut.
func clip(s string) string {
	if len(s) <= maxWhere {
		return s
	}
	n := maxWhere - len("...")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
