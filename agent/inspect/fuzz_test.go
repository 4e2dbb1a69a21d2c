package inspect

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"slices"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

var rules = []string{RuleSyntax, RuleInvalidUTF8, RuleMaxDepth, RuleMaxKeys, RuleMaxArray, RuleMaxString,
	RuleMaxNumber, RuleDuplicateKey, RuleDTD, RuleMaxAttributes, RuleMaxElements, RuleMaxText, RuleDuplicateAttribute}

// checkViolation holds what every violation must: a known rule, an offset
// in the body, a short Where.
func checkViolation(t *testing.T, v *Violation, body []byte) {
	t.Helper()
	if v == nil {
		return
	}
	if !slices.Contains(rules, v.Rule) || v.Offset < 0 || v.Offset > int64(len(body)) || len(v.Where) > maxWhere {
		t.Fatalf("%q: malformed violation %+v", body, v)
	}
}

// FuzzCheckJSON: CheckJSON never panics, and with limits too wide to matter
// its verdict is a JSON validator's, on two oracles that share none of its
// code path: jsontext's Value.IsValid (ReadValue, RFC 7493: what CheckJSON
// promises) and encoding/json.Valid (RFC 8259, which allows duplicate names
// and invalid UTF-8). In particular the duplicate check, CheckJSON's own,
// must find exactly the bodies jsontext finds.
func FuzzCheckJSON(f *testing.F) {
	for _, seed := range []string{
		`{"a":[1,2.5e-3,true,false,null,"x"],"b":{"c":"\u00e9\ud83d\ude00"}}`,
		`{"a":1,"\u0061":2}`,
		members(20),
		// 20 one-letter names: one changed byte makes a duplicate, past the
		// linear search, in the top object or a nested one.
		`{"a":0,"b":1,"c":2,"d":3,"e":4,"f":5,"g":6,"h":7,"i":8,"j":9,"k":0,"l":1,"m":2,"n":3,"o":4,"p":5,"q":6,"r":7,"s":8,"t":{"a":0,"b":1,"c":2,"d":3,"e":4,"f":5,"g":6,"h":7,"i":8,"j":9,"k":0,"l":1,"m":2,"n":3,"o":4,"p":5,"q":6,"r":7,"s":8,"t":9}}`,
		`[{"a":1},{"a":1}]`,
		"{\"a\":\"\xff\"}",
		`["\ud800"]`,
		`{} {}`,
		`[1,2`,
		`  `,
		nested(40, true),
	} {
		f.Add([]byte(seed))
	}
	wide := JSONLimits{MaxDepth: maxJSONDepth - 1, MaxKeys: 1 << 30, MaxArray: 1 << 30, MaxString: 1 << 30, MaxNumber: 1 << 30}
	def := DefaultJSONLimits()
	f.Fuzz(func(t *testing.T, body []byte) {
		v := wide.CheckJSON(body)
		checkViolation(t, v, body)
		d := def.CheckJSON(body)
		checkViolation(t, d, body)
		if v != nil && d == nil {
			t.Fatalf("%q: refused (%v) without limits, accepted with them", body, v)
		}

		value := jsontext.Value(body)
		if valid := value.IsValid(); (v == nil) != valid {
			t.Fatalf("%q: CheckJSON says %v, jsontext's IsValid %v", body, v, valid)
		}
		if v == nil {
			return
		}
		if value.IsValid(jsontext.AllowDuplicateNames(true)) && v.Rule != RuleDuplicateKey {
			t.Fatalf("%q: valid but for duplicate names, refused as %v", body, v)
		}
		if value.IsValid(jsontext.AllowInvalidUTF8(true)) && v.Rule != RuleInvalidUTF8 {
			t.Fatalf("%q: valid but for its UTF-8, refused as %v", body, v)
		}
		switch valid := json.Valid(body); {
		case v.Rule == RuleSyntax && valid:
			t.Fatalf("%q: refused as syntax (%v), but encoding/json finds it valid", body, v)
		case valid && v.Rule != RuleDuplicateKey && v.Rule != RuleInvalidUTF8 && v.Rule != RuleMaxDepth:
			t.Fatalf("%q: encoding/json finds it valid, refused as %v", body, v)
		}
	})
}

// FuzzCheckXML: CheckXML never panics, and what it accepts is one document
// that a strict encoding/xml Decoder reads to the end without an error, a
// directive, or a second root.
func FuzzCheckXML(f *testing.F) {
	for _, seed := range []string{
		`<?xml version="1.0"?><r xmlns:p="urn:x" p:a="1"><a>t&amp;&#x41;<![CDATA[<c>]]></a><!-- c --><?pi x?></r>`,
		billionLaughs,
		`<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><r>&xxe;</r>`,
		`<r a="1" a="2"/>`,
		`<r xmlns:p="u" xmlns:q="u" p:a="1" q:a="2"/>`,
		`<a/><b/>`,
		`<r><a></b></r>`,
		`<r>&#xD800;</r>`,
		"\ufeff<r/>",
		deepXML(40),
	} {
		f.Add([]byte(seed))
	}
	def := DefaultXMLLimits()
	f.Fuzz(func(t *testing.T, body []byte) {
		v := def.CheckXML(body)
		checkViolation(t, v, body)
		if v != nil {
			return
		}
		d := xml.NewDecoder(bytes.NewReader(body))
		depth, roots := 0, 0
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%q: accepted, but encoding/xml says %v", body, err)
			}
			switch tok.(type) {
			case xml.StartElement:
				if depth == 0 {
					roots++
				}
				depth++
			case xml.EndElement:
				depth--
			case xml.Directive:
				t.Fatalf("%q: accepted with a directive", body)
			}
		}
		if roots != 1 {
			t.Fatalf("%q: accepted with %d root elements", body, roots)
		}
	})
}
