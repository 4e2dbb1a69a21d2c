package inspect

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// XMLLimits bound what an XML body may hold. Every field must be positive
// (Validate); DefaultXMLLimits are issue 15's.
type XMLLimits struct {
	// MaxDepth bounds the nesting of elements: the root is at depth 1.
	MaxDepth int
	// MaxAttributes bounds the attributes of one element, namespace
	// declarations (xmlns, xmlns:p) included.
	MaxAttributes int
	// MaxElements bounds the elements of the document.
	MaxElements int
	// MaxText bounds one text node, in decoded bytes (references replaced,
	// line ends normalized): all the character data between two tags, CDATA
	// sections included and not cut by comments or processing instructions,
	// so that splitting a text into sections does not get it past the limit.
	// It bounds each attribute value too.
	MaxText int
}

// DefaultXMLLimits returns depth 32, 64 attributes per element, 100000
// elements and 65536-byte text nodes.
func DefaultXMLLimits() XMLLimits {
	return XMLLimits{MaxDepth: 32, MaxAttributes: 64, MaxElements: 100000, MaxText: 65536}
}

// Validate reports the first limit that is not positive.
func (l XMLLimits) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"MaxDepth", l.MaxDepth}, {"MaxAttributes", l.MaxAttributes}, {"MaxElements", l.MaxElements}, {"MaxText", l.MaxText}} {
		if f.v <= 0 {
			return fmt.Errorf("inspect: XML %s is %d: want a positive number", f.name, f.v)
		}
	}
	return nil
}

// xmlLevel is an open element, for the element path of a violation.
type xmlLevel struct {
	name     string // local name
	index    int    // position among the parent's element children, from 1
	children int    // element children read so far
}

// CheckXML reads body once as a stream of tokens; nil means it is one
// well-formed XML document within l, without a DTD.
//
// Well-formed here is encoding/xml's Strict mode (matched end tags, quoted
// attribute values, legal characters, no reference but to the five
// predefined entities and to characters) and what it lets through: the
// body must be UTF-8 (a declared encoding other than UTF-8 is refused, as
// encoding/xml has no reader for it), hold exactly one root element, no
// text but whitespace outside it, no attribute twice on an element
// (compared after namespace prefixes are resolved), an XML declaration
// only at the very start (after an optional byte order mark), and no
// character reference to a surrogate (see surrogateRef).
//
// Any <! directive, a DOCTYPE without entities included, is refused as
// "dtd" when it is read: nothing in a DTD is needed by an API body, and
// everything in one (internal or external entities, parameter entities, an
// external subset) is how XML parsers are attacked.
//
// Element paths name each open element by its local name, prefixes
// dropped, and every element under the root by its position among its
// parent's element children, from 1, whatever their names:
// "/order/items[2]/item[3]" is the third child element of the second child
// element of the root, and is named item. (Unlike XPath, where item[3] is
// the third child named item: counting all children needs no table of
// names per element.) An attribute is "/@name" after its element's path.
//
// encoding/xml cannot be reset and reused: each check allocates a decoder,
// and every token allocates (names, attribute values, the Token interface).
func (l XMLLimits) CheckXML(body []byte) *Violation {
	if !utf8.Valid(body) {
		return &Violation{Rule: RuleInvalidUTF8, Offset: firstInvalidUTF8(body)}
	}
	if off := surrogateRef(body); off >= 0 {
		return &Violation{Rule: RuleSyntax, Offset: off}
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	// NewDecoder's defaults, spelled out because the checks rely on them: no
	// entity map (an unknown reference is an error, never expanded) and no
	// charset reader (a document in another encoding is refused).
	d.Strict, d.Entity, d.CharsetReader = true, nil, nil
	var (
		levels   [32]xmlLevel // the default MaxDepth without a heap allocation
		stack    = levels[:0]
		elements int
		text     int  // decoded bytes of the text node being read
		rootDone bool // the root element has ended
	)
	for {
		off := d.InputOffset()
		tok, err := d.Token()
		if err == io.EOF {
			if !rootDone {
				return &Violation{Rule: RuleSyntax, Offset: off} // no root element
			}
			return nil
		}
		if err != nil {
			return &Violation{Rule: RuleSyntax, Where: xmlPath(stack, ""), Offset: d.InputOffset()}
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if rootDone {
				return &Violation{Rule: RuleSyntax, Where: xmlPath(stack, ""), Offset: off} // a second root
			}
			elements++
			index := 0
			if len(stack) > 0 {
				stack[len(stack)-1].children++
				index = stack[len(stack)-1].children
			}
			stack = append(stack, xmlLevel{name: t.Name.Local, index: index})
			switch {
			case len(stack) > l.MaxDepth:
				return &Violation{Rule: RuleMaxDepth, Where: xmlPath(stack, ""), Limit: l.MaxDepth, Offset: off}
			case elements > l.MaxElements:
				return &Violation{Rule: RuleMaxElements, Where: xmlPath(stack, ""), Limit: l.MaxElements, Offset: off}
			case len(t.Attr) > l.MaxAttributes:
				return &Violation{Rule: RuleMaxAttributes, Where: xmlPath(stack, ""), Limit: l.MaxAttributes, Offset: off}
			}
			for i, a := range t.Attr {
				if len(a.Value) > l.MaxText {
					return &Violation{Rule: RuleMaxText, Where: xmlPath(stack, a.Name.Local), Limit: l.MaxText, Offset: off}
				}
				for _, b := range t.Attr[:i] {
					if a.Name == b.Name {
						return &Violation{Rule: RuleDuplicateAttribute, Where: xmlPath(stack, a.Name.Local), Offset: off}
					}
				}
			}
			text = 0
		case xml.EndElement:
			stack = stack[:len(stack)-1]
			rootDone = len(stack) == 0
			text = 0
		case xml.CharData:
			if len(stack) == 0 {
				if !isXMLSpace(t) && !(off == 0 && bytes.HasPrefix(t, bom) && isXMLSpace(t[len(bom):])) {
					return &Violation{Rule: RuleSyntax, Offset: off} // text outside the root
				}
				continue
			}
			text += len(t)
			if text > l.MaxText {
				return &Violation{Rule: RuleMaxText, Where: xmlPath(stack, ""), Limit: l.MaxText, Offset: off}
			}
		case xml.Directive:
			return &Violation{Rule: RuleDTD, Where: xmlPath(stack, ""), Offset: off}
		case xml.ProcInst:
			// "xml" in any case is reserved for the declaration, which comes
			// first or not at all (XML 1.0, 2.6 and 2.8).
			if equalFold(t.Target, "xml") && (t.Target != "xml" || (off != 0 && !(off == int64(len(bom)) && bytes.HasPrefix(body, bom)))) {
				return &Violation{Rule: RuleSyntax, Where: xmlPath(stack, ""), Offset: off}
			}
		}
	}
}

// surrogateRef returns the offset of the first character reference to a
// surrogate ("&#xD800;" to "&#xDFFF;", in any form), or -1. XML forbids
// them (WFC: Legal Character) and parsers refuse them, but encoding/xml
// reads one as U+FFFD, so this looks for them first. It reads the body
// raw: the same characters in a CDATA section or comment, where they are
// no reference, are refused too, which no API body should meet.
func surrogateRef(body []byte) int64 {
	for off := 0; ; off += 2 {
		i := bytes.Index(body[off:], charRef)
		if i < 0 {
			return -1
		}
		off += i
		j, base := off+2, uint64(10)
		if j < len(body) && body[j] == 'x' {
			j, base = j+1, 16
		}
		var n uint64
		k := j
		for ; k < len(body); k++ {
			d := hexDigit(body[k])
			if d < 0 || uint64(d) >= base {
				break
			}
			n = min(n*base+uint64(d), 1<<32) // saturate: any larger number is no surrogate either
		}
		if k > j && k < len(body) && body[k] == ';' && n >= 0xd800 && n <= 0xdfff {
			return int64(off)
		}
	}
}

var charRef = []byte("&#")

func hexDigit(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// bom is U+FEFF in UTF-8, which may open a document.
var bom = []byte("\ufeff")

// isXMLSpace reports whether b is all XML white space (the S production).
func isXMLSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// xmlPath is the element path of stack, then of attr if not empty.
func xmlPath(stack []xmlLevel, attr string) string {
	var b []byte
	for i, lv := range stack {
		if len(b) > maxWhere {
			break
		}
		b = append(append(b, '/'), lv.name...)
		if i > 0 {
			b = append(strconv.AppendInt(append(b, '['), int64(lv.index), 10), ']')
		}
	}
	if attr != "" {
		b = append(append(b, "/@"...), attr...)
	}
	return clip(string(b))
}

// firstInvalidUTF8 is the offset of the first byte of b that does not
// start a valid UTF-8 sequence.
func firstInvalidUTF8(b []byte) int64 {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return int64(i)
		}
		i += n
	}
	return int64(len(b))
}
