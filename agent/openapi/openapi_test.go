package openapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/warden-sidecar/warden/agent/pep"
)

// specs are loaded once per file: the tests only read them.
var specs = map[string]*Spec{}

func testSpec(tb testing.TB, file string) *Spec {
	tb.Helper()
	if s, ok := specs[file]; ok {
		return s
	}
	s, err := Load("testdata/" + file)
	if err != nil {
		tb.Fatal(err)
	}
	specs[file] = s
	return s
}

// req is a request as a test writes it.
type req struct {
	method, path, raw, query string
	headers                  []string // "Name: value"
	ct, body                 string
}

const (
	uuid    = "7c9e6679-7425-40de-944b-e07c2a1f0e1a"
	session = "s3ss10n-0123456789abcdef"
)

func (r req) build() *Request {
	out := &Request{Method: []byte(r.method), Path: []byte(r.path), RawQuery: []byte(r.query)}
	if r.method == "" {
		out.Method = []byte("GET")
	}
	if r.raw != "" {
		out.RawPath = []byte(r.raw)
	} else {
		out.RawPath = []byte(r.path)
	}
	for _, h := range r.headers {
		name, value, _ := strings.Cut(h, ":")
		out.Headers = append(out.Headers, pep.Field{Name: []byte(name), Value: []byte(strings.TrimSpace(value))})
	}
	if r.ct != "" {
		out.ContentType = []byte(r.ct)
	}
	if r.body != "" {
		out.Body = []byte(r.body)
	}
	return out
}

func payment(body string) req {
	return req{method: "POST", path: "/payments", headers: []string{"X-Idempotency-Key: " + uuid}, ct: "application/json", body: body}
}

const goodPayment = `{"amount": 12.5, "currency": "EUR", "to": "DE89370400440532013000"}`

// refusal is what a refused request must be refused with.
type refusal struct {
	status     int
	in, name   string
	rule, code string
}

func TestRefusals(t *testing.T) {
	for _, file := range []string{"payments.yaml", "payments-3.1.yaml"} {
		s := testSpec(t, file)
		for _, tc := range []struct {
			name string
			req  req
			want refusal
		}{
			{"unknown route is 404 no_route", req{path: "/transfers"}, refusal{404, "", "", "no_route", CodeNotFound}},
			{"wrong method on a known path is 404 method", req{method: "PUT", path: "/accounts/42"}, refusal{404, "", "", "method", CodeNotFound}},
			{"method is case-sensitive", req{method: "get", path: "/accounts/42"}, refusal{404, "", "", "method", CodeNotFound}},
			{"a trailing slash is another path", req{path: "/accounts/42/"}, refusal{404, "", "", "no_route", CodeNotFound}},
			{"an empty segment is no parameter", req{path: "/accounts/"}, refusal{404, "", "", "no_route", CodeNotFound}},
			{"a longer path than any template is no route", req{path: "/accounts/1/payments/pay_abcdefgh/x/y/z"}, refusal{404, "", "", "no_route", CodeNotFound}},

			{"path integer that is a word is refused", req{path: "/accounts/abc"}, refusal{400, "path", "id", "type", CodeInvalid}},
			{"path integer with a sign is refused", req{path: "/accounts/+1"}, refusal{400, "path", "id", "type", CodeInvalid}},
			{"path integer with a leading zero is refused", req{path: "/accounts/01"}, refusal{400, "path", "id", "type", CodeInvalid}},
			{"path integer past int64 is refused", req{path: "/accounts/9223372036854775808"}, refusal{400, "path", "id", "type", CodeInvalid}},
			{"path integer below minimum is refused", req{path: "/accounts/0"}, refusal{400, "path", "id", "minimum", CodeInvalid}},
			{"path integer negative is refused", req{path: "/accounts/-5"}, refusal{400, "path", "id", "minimum", CodeInvalid}},
			{"path pattern miss is refused", req{path: "/accounts/1/payments/pay_ABCDEFGH"}, refusal{400, "path", "payment", "pattern", CodeInvalid}},
			{"path pattern is anchored", req{path: "/accounts/1/payments/xpay_abcdefgh"}, refusal{400, "path", "payment", "pattern", CodeInvalid}},
			{"%2F keeps one segment, and its value is checked", req{path: "/accounts/a/b", raw: "/accounts/a%2Fb"}, refusal{400, "path", "id", "type", CodeInvalid}},
			{"%2F in a path warden had to normalize is refused", req{path: "/accounts/1", raw: "/x/../accounts/1%2F"}, refusal{400, "path", "", "encoding", CodeInvalid}},
			{"malformed percent-encoding in the path is refused", req{path: "/accounts/1", raw: "/accounts/%zz"}, refusal{400, "path", "", "encoding", CodeInvalid}},
			{"truncated percent-encoding in the path is refused", req{path: "/accounts/1", raw: "/accounts/1%2"}, refusal{400, "path", "", "encoding", CodeInvalid}},
			{"exclusive maximum exactly at the edge is refused", req{path: "/statements/2100"}, refusal{400, "path", "year", "exclusive_maximum", CodeInvalid}},
			{"inclusive minimum just below is refused", req{path: "/statements/1999"}, refusal{400, "path", "year", "minimum", CodeInvalid}},

			{"query integer above maximum is refused", req{path: "/accounts/1/payments", query: "limit=101"}, refusal{400, "query", "limit", "maximum", CodeInvalid}},
			{"query integer below minimum is refused", req{path: "/accounts/1/payments", query: "limit=0"}, refusal{400, "query", "limit", "minimum", CodeInvalid}},
			{"query integer as a float is refused", req{path: "/accounts/1/payments", query: "limit=1.5"}, refusal{400, "query", "limit", "type", CodeInvalid}},
			{"query enum miss is refused", req{path: "/accounts/1/payments", query: "status=lost"}, refusal{400, "query", "status", "enum", CodeInvalid}},
			{"query enum is case-sensitive", req{path: "/accounts/1/payments", query: "status=Pending"}, refusal{400, "query", "status", "enum", CodeInvalid}},
			{"query date-time format miss is refused", req{path: "/accounts/1/payments", query: "since=yesterday"}, refusal{400, "query", "since", "format", CodeInvalid}},
			{"query date-time with a 31st of February is refused", req{path: "/accounts/1/payments", query: "since=2024-02-31T00:00:00Z"}, refusal{400, "query", "since", "format", CodeInvalid}},
			{"duplicate scalar query parameter is refused", req{path: "/accounts/1/payments", query: "limit=5&limit=100"}, refusal{400, "query", "limit", "duplicate", CodeInvalid}},
			{"duplicate comma-separated array is refused", req{path: "/accounts/1/payments", query: "ids=1&ids=2"}, refusal{400, "query", "ids", "duplicate", CodeInvalid}},
			{"exploded array over maxItems is refused", req{path: "/accounts/1/payments", query: "tag=a&tag=b&tag=c&tag=d&tag=e&tag=f"}, refusal{400, "query", "tag", "max_items", CodeInvalid}},
			{"exploded array item over maxLength is refused", req{path: "/accounts/1/payments", query: "tag=a&tag=" + strings.Repeat("x", 17)}, refusal{400, "query", "tag/1", "max_length", CodeInvalid}},
			{"comma-separated array item of the wrong type is refused", req{path: "/accounts/1/payments", query: "ids=1,x,3"}, refusal{400, "query", "ids", "type", CodeInvalid}},
			{"comma-separated array item out of int32 is refused", req{path: "/accounts/1/payments", query: "ids=1,2147483648"}, refusal{400, "query", "ids/1", "format", CodeInvalid}},
			{"malformed percent-encoding in a declared value is refused", req{path: "/accounts/1/payments", query: "status=%zz"}, refusal{400, "query", "status", "encoding", CodeInvalid}},
			{"malformed percent-encoding in an undeclared value is refused", req{path: "/accounts/1/payments", query: "other=%e"}, refusal{400, "query", "other", "encoding", CodeInvalid}},
			{"malformed percent-encoding in a name is refused", req{path: "/accounts/1/payments", query: "a%g1=1"}, refusal{400, "query", "", "encoding", CodeInvalid}},
			{"invalid UTF-8 in a value is refused", req{path: "/accounts/1/payments", query: "status=%ff"}, refusal{400, "query", "status", "encoding", CodeInvalid}},
			{"a ';' in the query is refused", req{path: "/accounts/1/payments", query: "status=pending;limit=1000"}, refusal{400, "query", "", "encoding", CodeInvalid}},
			{"an encoded name is still the parameter", req{path: "/accounts/1/payments", query: "l%69mit=500"}, refusal{400, "query", "limit", "maximum", CodeInvalid}},
			{"exclusive minimum exactly at the edge is refused (query)", req{path: "/statements/2024", query: "ratio=0"}, refusal{400, "query", "ratio", "exclusive_minimum", CodeInvalid}},
			{"a number in hex is refused", req{path: "/statements/2024", query: "ratio=0x1p-2"}, refusal{400, "query", "ratio", "type", CodeInvalid}},
			{"NaN is not a number", req{path: "/statements/2024", query: "ratio=NaN"}, refusal{400, "query", "ratio", "type", CodeInvalid}},
			{"a number above maximum is refused", req{path: "/statements/2024", query: "ratio=1.0001"}, refusal{400, "query", "ratio", "maximum", CodeInvalid}},

			{"boolean header that is not a boolean is refused", req{path: "/accounts/1/payments", headers: []string{"X-Trace-Sampled: yes"}}, refusal{400, "header", "X-Trace-Sampled", "type", CodeInvalid}},
			{"header sent twice is refused", req{path: "/accounts/1/payments", headers: []string{"x-trace-sampled: true", "X-TRACE-SAMPLED: false"}}, refusal{400, "header", "X-Trace-Sampled", "duplicate", CodeInvalid}},
			{"missing required header is refused", req{method: "POST", path: "/payments", ct: "application/json", body: goodPayment}, refusal{400, "header", "X-Idempotency-Key", "required", CodeInvalid}},
			{"header uuid format miss is refused", req{method: "POST", path: "/payments", headers: []string{"X-Idempotency-Key: 7c9e6679-7425-40de-944b"}, ct: "application/json", body: goodPayment}, refusal{400, "header", "X-Idempotency-Key", "format", CodeInvalid}},

			{"missing required cookie is refused", req{path: "/accounts/me"}, refusal{400, "cookie", "session", "required", CodeInvalid}},
			{"a cookie of another name is not it", req{path: "/accounts/me", headers: []string{"Cookie: sessionx=" + session}}, refusal{400, "cookie", "session", "required", CodeInvalid}},
			{"short cookie is refused", req{path: "/accounts/me", headers: []string{"Cookie: theme=dark; session=short"}}, refusal{400, "cookie", "session", "min_length", CodeInvalid}},
			{"cookie sent twice is refused", req{path: "/accounts/me", headers: []string{"Cookie: session=" + session, "Cookie: session=" + session + "x"}}, refusal{400, "cookie", "session", "duplicate", CodeInvalid}},
			{"cookie too long is refused", req{path: "/statements/2024", headers: []string{"Cookie: lang=en-GB-x"}}, refusal{400, "cookie", "lang", "max_length", CodeInvalid}},

			{"missing required body is refused", req{method: "POST", path: "/payments", headers: []string{"X-Idempotency-Key: " + uuid}}, refusal{400, "body", "", "required", CodeInvalid}},
			{"a body without Content-Type is 415", req{method: "POST", path: "/payments", headers: []string{"X-Idempotency-Key: " + uuid}, body: goodPayment}, refusal{415, "body", "", "media_type", CodeUnsupported}},
			{"an unlisted media type is 415", func() req { r := payment(goodPayment); r.ct = "text/plain"; return r }(), refusal{415, "body", "", "media_type", CodeUnsupported}},
			{"a malformed media type is 415", func() req { r := payment(goodPayment); r.ct = "application json"; return r }(), refusal{415, "body", "", "media_type", CodeUnsupported}},
			{"body that is not JSON is refused", payment(`{"amount": 1,`), refusal{400, "body", "/", "json", CodeInvalid}},
			{"body with trailing data is refused", payment(goodPayment + `{}`), refusal{400, "body", "/", "json", CodeInvalid}},
			{"body with a duplicate key is refused", payment(`{"amount": 1, "currency": "EUR", "to": "x", "amount": 9999}`), refusal{400, "body", "/amount", "duplicate", CodeInvalid}},
			{"body with an extra property is refused", payment(`{"amount": 1, "currency": "EUR", "to": "x", "admin": true}`), refusal{400, "body", "/admin", "additional_properties", CodeInvalid}},
			{"body missing a required field is refused", payment(`{"amount": 1, "currency": "EUR"}`), refusal{400, "body", "/to", "required", CodeInvalid}},
			{"body field of the wrong type is refused", payment(`{"amount": "1", "currency": "EUR", "to": "x"}`), refusal{400, "body", "/amount", "type", CodeInvalid}},
			{"amount 0 with exclusiveMinimum 0 is refused", payment(`{"amount": 0, "currency": "EUR", "to": "x"}`), refusal{400, "body", "/amount", "exclusive_minimum", CodeInvalid}},
			{"amount above maximum is refused", payment(`{"amount": 10000.01, "currency": "EUR", "to": "x"}`), refusal{400, "body", "/amount", "maximum", CodeInvalid}},
			{"currency pattern miss is refused", payment(`{"amount": 1, "currency": "eur", "to": "x"}`), refusal{400, "body", "/currency", "pattern", CodeInvalid}},
			{"empty recipient is refused", payment(`{"amount": 1, "currency": "EUR", "to": ""}`), refusal{400, "body", "/to", "min_length", CodeInvalid}},
			{"recipient over maxLength is refused", payment(`{"amount": 1, "currency": "EUR", "to": "` + strings.Repeat("x", 35) + `"}`), refusal{400, "body", "/to", "max_length", CodeInvalid}},
			{"a readOnly property in a request is refused", payment(`{"id": "p1", "amount": 1, "currency": "EUR", "to": "x"}`), refusal{400, "body", "/id", "read_only", CodeInvalid}},
			{"a method matching no oneOf branch is refused", payment(`{"amount": 1, "currency": "EUR", "to": "x", "method": {"card": "1234", "iban": "DE89370400440532013000"}}`), refusal{400, "body", "/method", "one_of", CodeInvalid}},
			{"a lone surrogate in the body is refused", payment(`{"amount": 1, "currency": "EUR", "to": "\ud800"}`), refusal{400, "body", "/to", "json", CodeInvalid}},
		} {
			t.Run(file+"/"+tc.name, func(t *testing.T) {
				op, body, v := s.Validate(tc.req.build())
				if v == nil {
					t.Fatalf("allowed (operation %+v, body %v); want %+v", op, body, tc.want)
				}
				got := refusal{v.Status, v.In, v.Name, v.Rule, v.Code}
				if got != tc.want {
					t.Errorf("refused with %+v (%s); want %+v", got, v.Detail, tc.want)
				}
				if op != nil || body != nil {
					t.Errorf("a refusal returned operation %+v and body %v", op, body)
				}
			})
		}
	}
}

func TestAccepted(t *testing.T) {
	for _, file := range []string{"payments.yaml", "payments-3.1.yaml"} {
		s := testSpec(t, file)
		for _, tc := range []struct {
			name     string
			req      req
			id       string
			template string
			params   map[string]any
			body     any
		}{
			{"integer path parameter is typed", req{path: "/accounts/42"}, "getAccount", "/accounts/{id}", map[string]any{"id": int64(42)}, nil},
			{"largest int64 is an integer", req{path: "/accounts/9223372036854775807"}, "getAccount", "/accounts/{id}", map[string]any{"id": int64(9223372036854775807)}, nil},
			{"the literal route beats the template", req{path: "/accounts/me", headers: []string{"Cookie: session=" + session}}, "getMyAccount", "/accounts/me", nil, nil},
			{"the template serves what the literal route lacks", req{method: "DELETE", path: "/accounts/7", headers: []string{"Cookie: session=" + session}}, "closeAccount", "/accounts/{id}", map[string]any{"id": int64(7)}, nil},
			{"a literal segment does not hide a deeper template", req{path: "/accounts/5/payments/pay_abcdefgh"}, "getPayment", "/accounts/{id}/payments/{payment}", map[string]any{"id": int64(5), "payment": "pay_abcdefgh"}, nil},
			{"dot segments are resolved the way warden did", req{path: "/accounts/3", raw: "/accounts/./x/../3"}, "getAccount", "/accounts/{id}", map[string]any{"id": int64(3)}, nil},
			{"a percent-encoded path value is decoded", req{path: "/accounts/1/payments/pay_abcdefgh", raw: "/accounts/%31/payments/pay_%61bcdefgh"}, "getPayment", "/accounts/{id}/payments/{payment}", map[string]any{"id": int64(1), "payment": "pay_abcdefgh"}, nil},
			{"query parameters in range pass", req{path: "/accounts/1/payments", query: "limit=100&status=settled&since=2024-02-29T10:00:00%2B01:00&tag=a&tag=b+c&ids=1,2,3&unknown=1"}, "listPayments", "/accounts/{id}/payments", map[string]any{"id": int64(1)}, nil},
			{"edges of inclusive bounds pass", req{path: "/statements/2000", query: "ratio=1", headers: []string{"Cookie: lang=en"}}, "getStatement", "/statements/{year}", map[string]any{"year": int64(2000)}, nil},
			{"just inside exclusive bounds passes", req{path: "/statements/2099", query: "ratio=0.0001"}, "getStatement", "/statements/{year}", map[string]any{"year": int64(2099)}, nil},
			{"header names are case-insensitive", req{path: "/accounts/1/payments", headers: []string{"x-trace-sampled: false"}}, "listPayments", "/accounts/{id}/payments", map[string]any{"id": int64(1)}, nil},
			{"an empty query pair is skipped", req{path: "/accounts/1/payments", query: "&&limit=1&"}, "listPayments", "/accounts/{id}/payments", map[string]any{"id": int64(1)}, nil},
			{"a JSON body is decoded with numbers as json.Number", payment(`{"amount": 12.50, "currency": "EUR", "to": "DE89", "memo": null, "method": {"card": "1234"}}`), "createPayment", "/payments", nil,
				map[string]any{"amount": json.Number("12.50"), "currency": "EUR", "to": "DE89", "memo": nil, "method": map[string]any{"card": "1234"}}},
			{"media type parameters and case do not matter", func() req {
				r := payment(`{"amount": 1, "currency": "EUR", "to": "x"}`)
				r.ct = "Application/JSON; charset=utf-8"
				return r
			}(), "createPayment", "/payments", nil,
				map[string]any{"amount": json.Number("1"), "currency": "EUR", "to": "x"}},
			{"an optional body may be absent", req{method: "POST", path: "/payments/search"}, "searchPayments", "/payments/search", nil, nil},
			{"three parameters and a body", req{method: "POST", path: "/accounts/9/payments", query: "dry_run=true", headers: []string{"X-Idempotency-Key: " + uuid}, ct: "application/json", body: goodPayment}, "createAccountPayment", "/accounts/{id}/payments", map[string]any{"id": int64(9)},
				map[string]any{"amount": json.Number("12.5"), "currency": "EUR", "to": "DE89370400440532013000"}},
		} {
			t.Run(file+"/"+tc.name, func(t *testing.T) {
				op, body, v := s.Validate(tc.req.build())
				if v != nil {
					t.Fatalf("refused: %v", v)
				}
				if op.ID != tc.id || op.PathTemplate != tc.template || !reflect.DeepEqual(op.PathParams, tc.params) {
					t.Errorf("operation %q %q %#v; want %q %q %#v", op.ID, op.PathTemplate, op.PathParams, tc.id, tc.template, tc.params)
				}
				if !reflect.DeepEqual(body, tc.body) {
					t.Errorf("body %#v; want %#v", body, tc.body)
				}
				if !strings.HasPrefix(op.Key, s.Revision()) {
					t.Errorf("key %q does not start with the revision %q", op.Key, s.Revision())
				}
			})
		}
	}
}

// TestPercentEncodedSlashIsOneSegment uses a spec whose parameter is a
// string, so that "a/b" passes and the match itself is seen.
func TestPercentEncodedSlashIsOneSegment(t *testing.T) {
	s, err := Parse([]byte(`
openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /files/{name}:
    get:
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      responses: {'200': {description: ok}}
  /files/{name}/{rest}:
    get:
      operationId: deep
      parameters:
        - {name: name, in: path, required: true, schema: {type: string}}
        - {name: rest, in: path, required: true, schema: {type: string}}
      responses: {'200': {description: ok}}
`), "inline")
	if err != nil {
		t.Fatal(err)
	}
	op, _, v := s.Validate(req{path: "/files/a/b", raw: "/files/a%2Fb"}.build())
	if v != nil {
		t.Fatal(v)
	}
	if op.PathTemplate != "/files/{name}" || op.PathParams["name"] != "a/b" {
		t.Errorf("matched %s with %v; want /files/{name} with name a/b", op.PathTemplate, op.PathParams)
	}
	op, _, v = s.Validate(req{path: "/files/a/b"}.build())
	if v != nil || op.ID != "deep" {
		t.Errorf("an unencoded /files/a/b matched %+v, %v; want deep", op, v)
	}
}

func TestKeys(t *testing.T) {
	s := testSpec(t, "payments.yaml")
	s31 := testSpec(t, "payments-3.1.yaml")
	key := func(s *Spec, r req) string {
		t.Helper()
		op, _, v := s.Validate(r.build())
		if v != nil {
			t.Fatal(v)
		}
		return op.Key
	}
	a := key(s, req{path: "/accounts/42"})
	if b := key(s, req{path: "/accounts/42"}); a != b {
		t.Errorf("one operation, two keys: %q, %q", a, b)
	}
	for name, other := range map[string]string{
		"another parameter value":   key(s, req{path: "/accounts/43"}),
		"another template":          key(s, req{path: "/accounts/42/payments"}),
		"another document":          key(s31, req{path: "/accounts/42"}),
		"a string that looks alike": key(s, req{path: "/accounts/42/payments/pay_00000042"}),
	} {
		if other == a {
			t.Errorf("%s has the same key %q", name, a)
		}
	}
	// The key encodes values unambiguously: a string value cannot forge
	// the separator and a second value.
	p1 := key(s, req{path: "/accounts/1/payments/pay_abcdefgh"})
	p2 := key(s, req{path: "/accounts/1/payments/pay_abcdefgi"})
	if p1 == p2 {
		t.Errorf("different payments share key %q", p1)
	}
	if s.Revision() == s31.Revision() || len(s.Revision()) != 12 {
		t.Errorf("revisions %q and %q", s.Revision(), s31.Revision())
	}
}

func fieldOf(name, value string) pep.Field {
	return pep.Field{Name: []byte(name), Value: []byte(value)}
}
