package bundle

import (
	"fmt"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestQueryParsing(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"", `{}`},
		{"a=1&a=2&b", `{"a": ["1", "2"], "b": [""]}`},
		{"a+b=c%20d&e=%2B", `{"a b": ["c d"], "e": ["+"]}`},
		{"%zz=%4&x=%", `{"%zz": ["%4"], "x": ["%"]}`},
		{"&&=x&", `{"": ["x"]}`},
		{"a=1;b=2", `{"a": ["1;b=2"]}`},
		{"a==b", `{"a": ["=b"]}`},
		{"%00=%ff", `{"\u0000": ["\ufffd"]}`},
	}
	for _, tt := range tests {
		got := queryValue(tt.raw)
		want := ast.MustParseTerm(tt.want).Value
		if tt.raw == "%00=%ff" {
			// OPA's parser cannot write an invalid UTF-8 string; compare by hand.
			v := got.(ast.Object).Get(ast.StringTerm("\x00"))
			if v == nil || v.Value.(*ast.Array).Elem(0).Value.(ast.String) != "\xff" {
				t.Errorf("query %q = %v", tt.raw, got)
			}
			continue
		}
		if got.Compare(want) != 0 {
			t.Errorf("query %q = %v; want %v", tt.raw, got, want)
		}
	}
}

func TestRepeatedHeadersAreJoined(t *testing.T) {
	var hundred []Header
	var values []string
	for i := range 100 {
		hundred = append(hundred, Header{Name: "x-forwarded-for", Value: fmt.Sprintf("10.0.0.%d", i)})
		values = append(values, fmt.Sprintf("10.0.0.%d", i))
	}
	hundred = append(hundred, Header{Name: "accept", Value: "*/*"})
	tests := []struct {
		name string
		in   []Header
		want ast.Value
	}{
		{"names seen once keep their values", []Header{{Name: "accept", Value: "a"}, {Name: "x", Value: "1"}},
			ast.MustParseTerm(`{"accept": "a", "x": "1"}`).Value},
		{"repeated names are joined in order, empty values included", []Header{{Name: "accept", Value: "a"}, {Name: "x", Value: "1"}, {Name: "accept", Value: "b"}, {Name: "accept", Value: ""}},
			ast.MustParseTerm(`{"accept": "a, b, ", "x": "1"}`).Value},
		{"only empty values still get their separators", []Header{{Name: "a", Value: ""}, {Name: "a", Value: ""}, {Name: "a", Value: ""}},
			ast.MustParseTerm(`{"a": ", , "}`).Value},
		{"a hundred copies of one header make one value", hundred,
			ast.NewObject(
				ast.Item(ast.StringTerm("x-forwarded-for"), ast.StringTerm(strings.Join(values, ", "))),
				ast.Item(ast.StringTerm("accept"), ast.StringTerm("*/*")))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := headersValue(tt.in); got.Compare(tt.want) != 0 {
				t.Fatalf("headers = %v; want %v", got, tt.want)
			}
		})
	}
}

// FuzzQuery feeds untrusted request parts to the input builder and the cache
// key: they must never panic, and what needs no unescaping comes through as is.
func FuzzQuery(f *testing.F) {
	for _, seed := range []string{"", "a=1&a=2&b", "%", "%%", "%2", "%zz=%4", "+&+=+", "=&=", "a=%E2%82%AC", "\xff=\x00", strings.Repeat("&", 64)} {
		f.Add(seed, "x-h", "v")
	}
	f.Fuzz(func(t *testing.T, raw, name, value string) {
		in := &Input{RawQuery: raw, Headers: []Header{{Name: name, Value: value}, {Name: name, Value: raw}}, Token: map[string]any{"q": raw}}
		v, err := inputValue(in)
		if err != nil {
			t.Fatal(err)
		}
		_ = appendKey(nil, &keySpec{fields: fInput, headers: []string{name}}, in)
		_ = appendKey(nil, &keySpec{headers: []string{name}}, in)
		q := queryValue(raw).(ast.Object)
		if !strings.ContainsAny(raw, "%+") {
			n := 0
			for pair := range strings.SplitSeq(raw, "&") {
				if pair != "" {
					n++
				}
			}
			total := 0
			q.Foreach(func(_, vs *ast.Term) { total += vs.Value.(*ast.Array).Len() })
			if total != n {
				t.Fatalf("query %q: %d values for %d pairs", raw, total, n)
			}
		}
		h := v.(ast.Object).Get(ast.StringTerm("headers")).Value.(ast.Object).Get(ast.StringTerm(name))
		if h == nil || string(h.Value.(ast.String)) != value+", "+raw {
			t.Fatalf("header %q = %v", name, h)
		}
	})
}
