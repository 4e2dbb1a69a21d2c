package main

// Input threat protection (issue 15), attacked end to end: each hostile
// body is sent over real mTLS to the real binary with a recording app
// behind it; the client gets the contract's status and code, the app never
// sees the request, and the log names the rule, never the body.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// post is a POST of body to path with the given Content-Type ("" for none)
// and extra header lines.
func post(path, contentType, body string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: app.local\r\nContent-Length: %d\r\n", path, len(body))
	if contentType != "" {
		b.WriteString("Content-Type: " + contentType + "\r\n")
	}
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

// inputAttack is one hostile request and what warden must answer.
type inputAttack struct {
	name   string
	req    string
	status int
	code   string
	rule   string // the rule the log line must name ("" for no check)
}

// runInputAttacks sends each attack on a connection of its own, each to a
// path of its own, and checks the answer, that the app never saw it, and
// the security event's rule.
// runInputAttacks sends each attack and checks that the app never saw it
// and that it was refused with exactly one input_refused event whose reason
// is stage (body: or openapi:) and the attack's rule.
func runInputAttacks(t *testing.T, s *sidecar, app *recordingApp, stage string, attacks []inputAttack) {
	t.Helper()
	for _, a := range attacks {
		got := s.send(t, a.req)
		wantRefused(t, a.name, got, a.status, a.code)
		target := strings.Fields(a.req)[1]
		if n := app.receivedTarget(target); n != 0 {
			t.Errorf("%s: the app received %s %d times", a.name, target, n)
		}
		if a.rule != "" {
			ev := s.find(t, func(l map[string]any) bool {
				return l["event"] == "input_refused" && l["request_id"] == got.header.Get("X-Request-Id")
			})
			if ev["reason"] != stage+a.rule || ev["rule"] != a.rule || ev["path"] != strings.SplitN(target, "?", 2)[0] ||
				ev["event_type"] != "security" || ev["severity"] != "medium" {
				t.Errorf("%s: input_refused %v, want reason %s%s and path %s", a.name, ev, stage, a.rule, target)
			}
			s.wantOnce(t, "input_refused", got.header.Get("X-Request-Id"))
		}
	}
}

func nested(open, close string, n int) string {
	return strings.Repeat(open, n) + strings.Repeat(close, n)
}

func jsonObject(keys int, prefix string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%s%d":%d`, prefix, i, i)
	}
	b.WriteByte('}')
	return b.String()
}

func TestAttackJSONBodies(t *testing.T) {
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_MAX_REQUEST_BODY_BYTES=1048576")
	long := strings.Repeat("a", 65537)
	attacks := []inputAttack{
		{"33 levels of arrays", post("/j/deep", "application/json", nested("[", "]", 33)), 400, "invalid_body", "max_depth"},
		{"33 levels of objects", post("/j/deep-objects", "application/json", strings.Repeat(`{"a":`, 33)+"1"+strings.Repeat("}", 33)), 400, "invalid_body", "max_depth"},
		{"1001 keys", post("/j/keys", "application/json", jsonObject(1001, "k")), 400, "invalid_body", "max_keys"},
		{"10001 array elements", post("/j/array", "application/json", "["+strings.Repeat("0,", 10000)+"0]"), 400, "invalid_body", "max_array"},
		{"a 65537-byte string", post("/j/string", "application/json", `{"a":"`+long+`"}`), 400, "invalid_body", "max_string"},
		{"a 65537-byte name", post("/j/name", "application/json", `{"`+long+`":1}`), 400, "invalid_body", "max_string"},
		{"a 65-digit number", post("/j/number", "application/json", `{"n":`+strings.Repeat("9", 65)+`}`), 400, "invalid_body", "max_number"},
		{"duplicate keys", post("/j/dup", "application/json", `{"role":"user","role":"admin"}`), 400, "invalid_body", "duplicate_key"},
		{"escaped duplicate keys", post("/j/dup-escaped", "application/json", `{"role":"user","r\u006fle":"admin"}`), 400, "invalid_body", "duplicate_key"},
		{"invalid UTF-8", post("/j/utf8", "application/json", "{\"a\":\"\xff\xfe\"}"), 400, "invalid_body", "invalid_utf8"},
		{"truncated", post("/j/truncated", "application/json", `{"a":[1,2`), 400, "invalid_body", ""},
		{"two values", post("/j/two", "application/json", `{"a":1}{"a":2}`), 400, "invalid_body", ""},
		{"a +json type", post("/j/problem", "application/problem+json; charset=utf-8", nested("[", "]", 40)), 400, "invalid_body", "max_depth"},
		{"no type, a JSON bomb", post("/j/untyped", "", "  "+nested("[", "]", 40)), 400, "invalid_body", "max_depth"},
		{"gzip-encoded JSON", post("/j/gzip", "application/json", "\x1f\x8b\x08\x00", "Content-Encoding: gzip"), 415, "unsupported_media_type", "content_encoding"},
		// fasthttp would keep the last, another parser the first.
		{"two Content-Types", post("/j/two-types", "application/json", nested("[", "]", 40), "Content-Type: text/plain"), 400, "bad_request", ""},
		{"chunked deep", "POST /j/chunked HTTP/1.1\r\nHost: app.local\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", 80, nested("[", "]", 40)), 400, "invalid_body", "max_depth"},
	}
	runInputAttacks(t, s, app, "body:", attacks)

	// What is within the limits reaches the app, byte for byte.
	fine := []struct{ name, ct, body string }{
		{"32 levels", "application/json", nested("[", "]", 32)},
		{"1000 keys", "application/json", jsonObject(1000, "k")},
		{"a 65536-byte string", "application/json", `"` + long[1:] + `"`},
		{"text/plain is not JSON", "text/plain", nested("[", "]", 40)},
	}
	for i, f := range fine {
		path := fmt.Sprintf("/j/fine/%d", i)
		got := s.send(t, post(path, f.ct, f.body))
		if got.status != 200 {
			t.Errorf("%s: %s, want 200", f.name, got)
			continue
		}
		if r := app.last(t); r.target != path || string(r.body) != f.body {
			t.Errorf("%s: the app got %s with %d body bytes, want %s with %d", f.name, r.target, len(r.body), path, len(f.body))
		}
	}

	// The violation's details go to the log, never to the client.
	got := s.send(t, post("/j/where", "application/json", `{"items":[{"name":"`+long+`"}]}`))
	if strings.Contains(got.body, "items") || strings.Contains(got.body, "65536") {
		t.Errorf("the client learned the violation: %s", got)
	}
	l := s.find(t, func(l map[string]any) bool { return l["event"] == "input_refused" && l["path"] == "/j/where" })
	if l["where"] != "/items/0/name" || l["limit"] != float64(65536) {
		t.Errorf("log line %v: want where /items/0/name and limit 65536", l)
	}
	if strings.Contains(s.rawLog(), long[:100]) {
		t.Error("the log holds the body")
	}
}

func TestJSONProtectionOff(t *testing.T) {
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_JSON_PROTECTION=off")
	body := `{"role":"user","role":"admin"}`
	if got := s.send(t, post("/off", "application/json", body)); got.status != 200 || string(app.last(t).body) != body {
		t.Errorf("WARDEN_JSON_PROTECTION=off: %s", got)
	}
}

const billionLaughs = `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>`

func TestAttackXMLBodies(t *testing.T) {
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_MAX_REQUEST_BODY_BYTES=4194304")
	attrs := func(n int) string {
		var b strings.Builder
		b.WriteString("<a")
		for i := range n {
			fmt.Fprintf(&b, ` x%d="1"`, i)
		}
		b.WriteString("/>")
		return b.String()
	}
	attacks := []inputAttack{
		{"billion laughs", post("/x/laughs", "application/xml", billionLaughs), 400, "invalid_body", "dtd"},
		{"external entity", post("/x/xxe", "text/xml", `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>`), 400, "invalid_body", "dtd"},
		{"parameter entity", post("/x/pe", "application/soap+xml", `<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd"> %p;]><r/>`), 400, "invalid_body", "dtd"},
		{"an entity without a DTD", post("/x/undefined", "application/xml", `<r>&x;</r>`), 400, "invalid_body", ""},
		{"33 levels", post("/x/deep", "application/xml", nested("<a>", "</a>", 33)), 400, "invalid_body", "max_depth"},
		{"65 attributes", post("/x/attrs", "application/xml", attrs(65)), 400, "invalid_body", "max_attributes"},
		{"100001 elements", post("/x/elements", "application/xml", "<r>"+strings.Repeat("<e/>", 100000)+"</r>"), 400, "invalid_body", "max_elements"},
		{"a 65537-byte text", post("/x/text", "application/xml", "<r>"+strings.Repeat("a", 65537)+"</r>"), 400, "invalid_body", "max_text"},
		{"mismatched tags", post("/x/mismatch", "application/xml", "<a><b></a></b>"), 400, "invalid_body", ""},
	}
	runInputAttacks(t, s, app, "body:", attacks)

	ok := `<?xml version="1.0"?><order id="7"><item sku="a">2</item></order>`
	if got := s.send(t, post("/x/fine", "application/xml", ok)); got.status != 200 || string(app.last(t).body) != ok {
		t.Errorf("a plain XML body: %s", got)
	}
}

func TestXMLProtectionOff(t *testing.T) {
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_XML_PROTECTION=off")
	if got := s.send(t, post("/off", "application/xml", billionLaughs)); got.status != http.StatusOK {
		t.Errorf("WARDEN_XML_PROTECTION=off: %s", got)
	}
}

// paymentsSpec is the realistic spec of agent/openapi's tests.
const paymentsSpec = "../../agent/openapi/testdata/payments.yaml"

const idem = "X-Idempotency-Key: 8f14e45f-ceea-467a-9575-6f8e3c2d4b1a"

func TestAttackOpenAPI(t *testing.T) {
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_OPENAPI_SPEC="+paymentsSpec)
	payment := `{"amount":12.5,"currency":"EUR","to":"DE89370400440532013000"}`
	attacks := []inputAttack{
		{"unknown route", rawGET("/admin/users"), 404, "not_found", "no_route"},
		{"unknown method", "PUT /payments HTTP/1.1\r\nHost: app.local\r\nContent-Length: 0\r\n\r\n", 404, "not_found", "method"},
		{"trailing slash", rawGET("/accounts/7/"), 404, "not_found", "no_route"},
		{"wrong type in the path", rawGET("/accounts/abc"), 400, "invalid_request", "type"},
		{"out of range in the path", rawGET("/accounts/0"), 400, "invalid_request", "minimum"},
		{"exclusive bound", rawGET("/statements/2100"), 400, "invalid_request", "exclusive_maximum"},
		{"pattern miss", rawGET("/accounts/7/payments/pay_ABC"), 400, "invalid_request", "pattern"},
		{"query out of range", rawGET("/accounts/7/payments?limit=1000"), 400, "invalid_request", "maximum"},
		{"enum miss", rawGET("/accounts/7/payments?status=stolen"), 400, "invalid_request", "enum"},
		{"format miss", rawGET("/accounts/7/payments?since=yesterday"), 400, "invalid_request", "format"},
		{"a scalar sent twice", rawGET("/accounts/7/payments?limit=1&limit=1000"), 400, "invalid_request", "duplicate"},
		{"missing required cookie", rawGET("/accounts/me"), 400, "invalid_request", "required"},
		{"missing required header", post("/payments", "application/json", payment), 400, "invalid_request", "required"},
		{"header format miss", post("/payments", "application/json", payment, "X-Idempotency-Key: not-a-uuid"), 400, "invalid_request", "format"},
		{"amount 0 (exclusive minimum)", post("/payments", "application/json", `{"amount":0,"currency":"EUR","to":"x"}`, idem), 400, "invalid_request", "exclusive_minimum"},
		{"amount over the maximum", post("/payments", "application/json", `{"amount":10000.01,"currency":"EUR","to":"x"}`, idem), 400, "invalid_request", "maximum"},
		{"extra property", post("/payments", "application/json", `{"amount":1,"currency":"EUR","to":"x","admin":true}`, idem), 400, "invalid_request", ""},
		{"missing property", post("/payments", "application/json", `{"amount":1,"currency":"EUR"}`, idem), 400, "invalid_request", ""},
		{"currency pattern", post("/payments", "application/json", `{"amount":1,"currency":"euro","to":"x"}`, idem), 400, "invalid_request", "pattern"},
		{"no body", post("/payments", "application/json", "", idem), 400, "invalid_request", "required"},
		{"another media type", post("/payments", "text/plain", payment, idem), 415, "unsupported_media_type", ""},
		// The route and parameters are checked before the body limits.
		{"a bomb to an unknown route", post("/nowhere", "application/json", nested("[", "]", 40)), 404, "not_found", "no_route"},
		{"a bomb to a known route", post("/payments", "application/json", nested("[", "]", 40), idem), 400, "invalid_body", ""},
	}
	runInputAttacks(t, s, app, "openapi:", attacks)

	for _, ok := range []struct{ name, req, target string }{
		{"an account", rawGET("/accounts/7"), "/accounts/7"},
		{"the static route beats the template", rawGET("/accounts/me", "Cookie: session=0123456789abcdef"), "/accounts/me"},
		{"payments with a query", rawGET("/accounts/7/payments?limit=10&status=settled&tag=a&tag=b"), "/accounts/7/payments?limit=10&status=settled&tag=a&tag=b"},
		{"a payment", post("/payments", "application/json", payment, idem), "/payments"},
	} {
		if got := s.send(t, ok.req); got.status != 200 || app.last(t).target != ok.target {
			t.Errorf("%s: %s, want 200 and the app to receive %s", ok.name, got, ok.target)
		}
	}
	// The log names the parameter and the rule, never the value.
	s.send(t, rawGET("/accounts/7/payments?limit=31337"))
	l := s.find(t, func(l map[string]any) bool {
		return l["event"] == "input_refused" && l["in"] == "query" && l["name"] == "limit" && l["rule"] == "maximum"
	})
	if strings.Contains(fmt.Sprint(l), "31337") {
		t.Errorf("the log line holds the value: %v", l)
	}
}

// The policy decides on the API's own names and on the body's values.
const operationPolicy = `package warden.authz
default allow := false
allow if {
	input.operation.id == "getAccount"
	input.operation.path_params.id == 7
}
allow if {
	input.operation.id == "createPayment"
	input.parsed_body.amount <= 100
	input.parsed_body.to == input.headers["x-owner"]
}
`

func TestPolicyOperationAndParsedBody(t *testing.T) {
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_OPENAPI_SPEC="+paymentsSpec, "WARDEN_POLICY_BODY=json",
		"WARDEN_POLICY_BODY_MAX_BYTES=128", "WARDEN_POLICY_BUNDLE="+policyDir(t, operationPolicy))
	pay := func(amount, to string) string {
		return fmt.Sprintf(`{"amount":%s,"currency":"EUR","to":"%s"}`, amount, to)
	}
	cases := []struct {
		name   string
		req    string
		status int
	}{
		{"account 7 (an integer path parameter)", rawGET("/accounts/7"), 200},
		{"account 8", rawGET("/accounts/8"), 403},
		{"a small payment to the owner", post("/payments", "application/json", pay("100", "alice"), idem, "X-Owner: alice"), 200},
		{"a large payment", post("/payments", "application/json", pay("100.5", "alice"), idem, "X-Owner: alice"), 403},
		{"a payment to another", post("/payments", "application/json", pay("5", "mallory"), idem, "X-Owner: alice"), 403},
		// Padding the body past what the policy may read does not hide it.
		{"a padded body", post("/payments", "application/json", pay("5", "alice")[:len(pay("5", "alice"))-1]+`,"memo":"`+strings.Repeat(" ", 100)+`"}`, idem, "X-Owner: alice"), 413},
	}
	for _, c := range cases {
		target := strings.Fields(c.req)[1]
		before := app.receivedTarget(target)
		got := s.send(t, c.req)
		if got.status != c.status {
			t.Errorf("%s: %s, want %d", c.name, got, c.status)
		}
		if reached := app.receivedTarget(target) > before; reached != (c.status == 200) {
			t.Errorf("%s: the app received it: %v", c.name, reached)
		}
	}
	// The same payment twice: a decision on a body is not cached without
	// the policy's cache_ttl_seconds.
	s.send(t, post("/payments", "application/json", pay("1", "alice"), idem, "X-Owner: alice"))
	s.send(t, post("/payments", "application/json", pay("1", "alice"), idem, "X-Owner: alice"))
	n := 0
	for _, l := range s.logLines() {
		if w := decision(l); w["event"] == "decision" && w["cached"] == true {
			if in, _ := l["input"].(map[string]any); in != nil && in["path"] == "/payments" {
				n++
			}
		}
	}
	if n != 0 {
		t.Errorf("%d decisions on a body came from the cache", n)
	}
}

// logLines returns a copy of the log lines read so far.
func (p *process) logLines() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.logs...)
}
