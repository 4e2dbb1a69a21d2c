package openapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeJSON holds the body decoder to encoding/json: what it accepts,
// encoding/json (UseNumber) accepts and decodes to the same value; what it
// refuses that encoding/json accepts is one of its deliberate refusals.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		goodPayment, `{}`, `[]`, `[1,-0,0.5e-3,1E+2]`, `"\u00e9\ud83d\ude00\n\"\\\/"`, `{"a":{"b":[null,true,false]}}`,
		` {"a" : 1 } `, `{"a":1,"a":2}`, `"\ud800"`, `"\udc00\ud800"`, "\"\xff\"", `01`, `1.`, `-`, `{"a":1}x`, `[1,]`, `{,}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, jerr := decodeJSON(b)
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var want any
		serr := d.Decode(&want)
		if serr == nil {
			// encoding/json stops after one value; trailing data is ours to see.
			if len(bytes.TrimLeft(b[d.InputOffset():], " \t\r\n")) > 0 {
				serr = errTrailing
			}
		}
		switch {
		case jerr == nil && serr != nil:
			t.Fatalf("accepted %q, which encoding/json refuses (%v)", b, serr)
		case jerr == nil && !reflect.DeepEqual(got, want):
			t.Fatalf("%q decodes to %#v; encoding/json: %#v", b, got, want)
		case jerr != nil && serr == nil && !deliberate(b, jerr):
			t.Fatalf("refused %q (%s: %s), which encoding/json accepts", b, jerr.rule, jerr.detail)
		}
	})
}

var errTrailing = errors.New("data after the value")

// deliberate reports whether a refusal is one of the decoder's own: a
// duplicate key, invalid UTF-8, a lone surrogate, nesting too deep.
func deliberate(b []byte, err *jsonError) bool {
	return err.rule == "duplicate" || err.rule == "depth" || !utf8.Valid(b) ||
		bytes.Contains(bytes.ToLower(b), []byte(`\ud`)) // a surrogate escape, lone or not
}

// FuzzValidate throws arbitrary paths, queries, headers and bodies at the
// payments spec: nothing panics, and an answer is either a Violation or an
// operation, never both or neither.
func FuzzValidate(f *testing.F) {
	f.Add("GET", "/accounts/42", "/accounts/%34%32", "limit=1&status=pending", "session=abcdefghijklmnop", "application/json", []byte(nil))
	f.Add("POST", "/accounts/9/payments", "/accounts/9/payments", "dry_run=true", "", "application/json", []byte(goodPayment))
	f.Add("GET", "/accounts/a/b", "/accounts/a%2Fb", "tag=a&tag=b&ids=1,2", "", "", []byte(nil))
	f.Add("POST", "/payments", "//payments/", "%", "a=1;session", "application/merge-patch+json", []byte(`{"a":`))
	s := testSpec(f, "payments.yaml")
	f.Fuzz(func(t *testing.T, method, path, raw, query, cookie, ct string, body []byte) {
		r := &Request{Method: []byte(method), Path: []byte(path), RawPath: []byte(raw), RawQuery: []byte(query), Body: body}
		if ct != "" {
			r.ContentType = []byte(ct)
		}
		r.Headers = append(r.Headers, fieldOf("Cookie", cookie), fieldOf("X-Idempotency-Key", uuid), fieldOf("X-Trace-Sampled", cookie))
		op, _, v := s.Validate(r)
		if (op == nil) == (v == nil) {
			t.Fatalf("operation %+v and violation %+v", op, v)
		}
		if v != nil && (v.Status == 0 || v.Code == "" || v.Rule == "") {
			t.Fatalf("incomplete violation %+v", v)
		}
	})
}
