package signature

import (
	"testing"

	"github.com/warden-sidecar/warden/agent/pep"
)

// The component values of RFC 9421 section 2's examples, one base line
// each.
func TestComponentValues(t *testing.T) {
	fields := func(kv ...string) []pep.Field {
		var fs []pep.Field
		for i := 0; i < len(kv); i += 2 {
			fs = append(fs, pep.Field{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
		}
		return fs
	}
	post := &Request{Method: []byte("POST"), Scheme: "https", Authority: []byte("www.example.com"), RawTarget: []byte("/path?param=value")}
	for _, tc := range []struct {
		name string
		r    *Request
		c    component
		want string // the base line
	}{
		{"2.2.1 @method", post, component{name: "@method"}, `"@method": POST`},
		{"2.2.2 @target-uri", post, component{name: "@target-uri"}, `"@target-uri": https://www.example.com/path?param=value`},
		{"2.2.3 @authority", post, component{name: "@authority"}, `"@authority": www.example.com`},
		{"2.2.3 @authority: lower case, no default port", &Request{Scheme: "https", Authority: []byte("WWW.Example.com:443")},
			component{name: "@authority"}, `"@authority": www.example.com`},
		{"2.2.3 @authority: another port stays", &Request{Scheme: "https", Authority: []byte("www.example.com:8443")},
			component{name: "@authority"}, `"@authority": www.example.com:8443`},
		{"2.2.4 @scheme", &Request{Scheme: "HTTP"}, component{name: "@scheme"}, `"@scheme": http`},
		{"2.2.5 @request-target, origin form", post, component{name: "@request-target"}, `"@request-target": /path?param=value`},
		{"2.2.5 @request-target, absolute form", &Request{RawTarget: []byte("https://www.example.com/path?param=value")},
			component{name: "@request-target"}, `"@request-target": https://www.example.com/path?param=value`},
		{"2.2.5 @request-target, asterisk form", &Request{RawTarget: []byte("*")}, component{name: "@request-target"}, `"@request-target": *`},
		{"2.2.6 @path", post, component{name: "@path"}, `"@path": /path`},
		{"2.2.6 @path of an absolute form without a path", &Request{RawTarget: []byte("https://www.example.com?a=b")},
			component{name: "@path"}, `"@path": /`},
		{"2.2.7 @query", &Request{RawTarget: []byte("/path?param=value&foo=bar&baz=bat%2Dman")},
			component{name: "@query"}, `"@query": ?param=value&foo=bar&baz=bat%2Dman`},
		{"2.2.7 @query without a query", &Request{RawTarget: []byte("/path")}, component{name: "@query"}, `"@query": ?`},
		{"2.2.7 @query, a bare string", &Request{RawTarget: []byte("/path?queryString")}, component{name: "@query"}, `"@query": ?queryString`},
		{"2.2.8 @query-param baz", &Request{RawTarget: []byte("/path?param=value&foo=bar&baz=batman&qux=")},
			component{name: "@query-param", qpName: "baz"}, `"@query-param";name="baz": batman`},
		{"2.2.8 @query-param, an empty value", &Request{RawTarget: []byte("/path?param=value&foo=bar&baz=batman&qux=")},
			component{name: "@query-param", qpName: "qux"}, `"@query-param";name="qux": `},
		{"2.2.8 @query-param, a newline re-encoded", &Request{RawTarget: []byte("/parameters?var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something")},
			component{name: "@query-param", qpName: "var"}, `"@query-param";name="var": this%20is%20a%20big%0Amultiline%20value`},
		{"2.2.8 @query-param, + as %20", &Request{RawTarget: []byte("/parameters?var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something")},
			component{name: "@query-param", qpName: "bar"}, `"@query-param";name="bar": with%20plus%20whitespace`},
		{"2.2.8 @query-param, a name re-encoded", &Request{RawTarget: []byte("/parameters?var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something")},
			component{name: "@query-param", qpName: "fa%C3%A7ade%22%3A%20"}, `"@query-param";name="fa%C3%A7ade%22%3A%20": something`},
		{"2.1 a field's leading and trailing whitespace", &Request{Headers: fields("X-OWS-Header", "   Leading and trailing whitespace.   ")},
			component{name: "x-ows-header"}, `"x-ows-header": Leading and trailing whitespace.`},
		{"2.1 a field in two lines", &Request{Headers: fields("Cache-Control", "max-age=60", "Cache-Control", "   must-revalidate")},
			component{name: "cache-control"}, `"cache-control": max-age=60, must-revalidate`},
		{"2.1 a dictionary field as it is", &Request{Headers: fields("Example-Dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c)")},
			component{name: "example-dict"}, `"example-dict": a=1,    b=2;x=1;y=2,   c=(a   b   c)`},
		{"2.1 an empty field", &Request{Headers: fields("X-Empty-Header", " ")}, component{name: "x-empty-header"}, `"x-empty-header": `},
		{"2.1.3 bs, two lines", &Request{Headers: fields("Example-Header", "value, with, lots", "Example-Header", "of, commas")},
			component{name: "example-header", bs: true}, `"example-header";bs: :dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:`},
		{"2.1.3 bs, one line", &Request{Headers: fields("Example-Header", "value, with, lots, of, commas")},
			component{name: "example-header", bs: true}, `"example-header";bs: :dmFsdWUsIHdpdGgsIGxvdHMsIG9mLCBjb21tYXM=:`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, err := appendBase(nil, tc.r, []component{tc.c}, "()")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(base), tc.want+"\n"+`"@signature-params": ()`; got != want {
				t.Errorf("base\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// Components whose value cannot be derived from a request are errors
// (RFC 9421 2.5), never an empty or guessed value.
func TestComponentValueErrors(t *testing.T) {
	q := func(target string) *Request { return &Request{RawTarget: []byte(target)} }
	for _, tc := range []struct {
		name string
		r    *Request
		c    component
	}{
		{"a field the request lacks", &Request{}, component{name: "date"}},
		{"@path of OPTIONS *", q("*"), component{name: "@path"}},
		{"@query of CONNECT's authority form", q("www.example.com:80"), component{name: "@query"}},
		{"a query parameter the query lacks", q("/p?a=1"), component{name: "@query-param", qpName: "b"}},
		{"a query parameter given twice", q("/p?a=1&b=2&a=3"), component{name: "@query-param", qpName: "a"}},
		{"a query parameter whose name is not UTF-8", q("/p?%FF=1"), component{name: "@query-param", qpName: "%FF"}},
		{"a query parameter whose value is not UTF-8", q("/p?a=%C3"), component{name: "@query-param", qpName: "a"}},
		{"no method", &Request{}, component{name: "@method"}},
		{"a control character in the target", q("/p\x01"), component{name: "@path"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if base, err := appendBase(nil, tc.r, []component{tc.c}, "()"); err == nil {
				t.Errorf("base %q", base)
			}
		})
	}
}
