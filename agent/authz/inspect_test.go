package authz

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/inspect"
	"github.com/warden-sidecar/warden/agent/openapi"
	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/bundle"
	"github.com/warden-sidecar/warden/internal/secevent"
)

const allowAll = "package warden.authz\nallow := true\n"

// The payments spec of agent/openapi's tests.
func paymentsSpec(t testing.TB) *openapi.Spec {
	t.Helper()
	s, err := openapi.Load("../openapi/testdata/payments.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func withBody(r *pep.Request, contentType, body string) *pep.Request {
	r.Headers = append(r.Headers, pep.Field{Name: []byte("Content-Type"), Value: []byte(contentType)})
	r.Body = []byte(body)
	return r
}

// The stages run in the order: the operation and its parameters,
// then the body limits, then the body's schema, then the policy; each
// refusal is logged with its rule and the policy never runs for it.
func TestInputStagesRunInOrder(t *testing.T) {
	var events, decisions bytes.Buffer
	spec := paymentsSpec(t)
	a := New(newEngine(t, allowAll), func() string { return ownID }, zerolog.New(&decisions),
		WithEventLog(secevent.New(&events, nil)), WithOpenAPI(func() *openapi.Spec { return spec }),
		WithJSONLimits(inspect.DefaultJSONLimits()), WithXMLLimits(inspect.DefaultXMLLimits()), WithPolicyBody(1024))
	bomb := strings.Repeat("[", 40) + strings.Repeat("]", 40)
	idem := []string{"X-Idempotency-Key", "8f14e45f-ceea-467a-9575-6f8e3c2d4b1a"}
	cases := []struct {
		name   string
		req    *pep.Request
		status int
		code   string
		event  string
		reason string // the event's
	}{
		{"a bomb to an unknown route: the route first", withBody(request("POST", "/nowhere"), "application/json", bomb), 404, "not_found", `"rule":"no_route"`, "openapi:no_route"},
		{"a bomb without the required header: parameters first", withBody(request("POST", "/payments"), "application/json", bomb), 400, "invalid_request", `"rule":"required"`, "openapi:required"},
		{"a bomb to a known route: limits before the schema", withBody(request("POST", "/payments", idem...), "application/json", bomb), 400, "invalid_body", `"rule":"max_depth"`, "body:max_depth"},
		{"a schema violation", withBody(request("POST", "/payments", idem...), "application/json", `{"amount":0,"currency":"EUR","to":"x"}`), 400, "invalid_request", `"rule":"exclusive_minimum"`, "openapi:exclusive_minimum"},
		{"allowed", withBody(request("POST", "/payments", idem...), "application/json", `{"amount":1,"currency":"EUR","to":"x"}`), 0, "", "", ""},
	}
	for _, c := range cases {
		events.Reset()
		decisions.Reset()
		v := check(a, c.req, peerRequest(string(c.req.RawPath)))
		if v.Status != c.status || v.Code != c.code {
			t.Errorf("%s: verdict %+v, want %d %q", c.name, v, c.status, c.code)
		}
		if c.status != 0 && decisions.Len() != 0 {
			t.Errorf("%s: the policy ran for a refused request: %s", c.name, decisions.String())
		}
		if c.event != "" && !strings.Contains(events.String(), c.event) {
			t.Errorf("%s: event log %q, want %s", c.name, events.String(), c.event)
		}
		if c.reason != "" && !strings.Contains(events.String(), `"reason":"`+c.reason+`"`) {
			t.Errorf("%s: event log %q, want the reason %s", c.name, events.String(), c.reason)
		}
	}
	if !strings.Contains(decisions.String(), `"operation":{"id":"createPayment","path_template":"/payments"}`) {
		t.Errorf("the decision log does not name the operation: %s", decisions.String())
	}
}

// BenchmarkCheckCachedInspected is BenchmarkCheckCached with the body
// limits on, as by default: a request without a body costs what it did.
func BenchmarkCheckCachedInspected(b *testing.B) {
	a := New(newEngine(b, policy), func() string { return ownID }, zerolog.New(io.Discard),
		WithJSONLimits(inspect.DefaultJSONLimits()), WithXMLLimits(inspect.DefaultXMLLimits()))
	ctx := request("GET", "/accounts/%61lice?expand=true", "X-Api-Version", "2", "User-Agent", "bench", "Accept", "*/*")
	req := peerRequest("/accounts/alice")
	b.ReportAllocs()
	for b.Loop() {
		if v := check(a, ctx, req); v.Status != 0 {
			b.Fatal(v)
		}
	}
}

// BenchmarkCheckOpenAPI is the whole pipeline for a typical API call: the
// operation matched, three parameters and a small JSON body checked, the
// body's limits, the cached decision.
func BenchmarkCheckOpenAPI(b *testing.B) {
	spec := paymentsSpec(b)
	a := New(newEngine(b, allowAll), func() string { return ownID }, zerolog.New(io.Discard),
		WithOpenAPI(func() *openapi.Spec { return spec }), WithJSONLimits(inspect.DefaultJSONLimits()))
	body := `{"amount":12.5,"currency":"EUR","to":"DE89370400440532013000"}`
	req := withBody(request("POST", "/accounts/9/payments?dry_run=true",
		"X-Idempotency-Key", "8f14e45f-ceea-467a-9575-6f8e3c2d4b1a"), "application/json", body)
	p := peerRequest("/accounts/9/payments")
	b.ReportAllocs()
	for b.Loop() {
		if v := check(a, req, p); v.Status != 0 {
			b.Fatal(fmt.Sprint(v))
		}
	}
}

// A verified signature reaches the decision log, and the logged line
// replays to the same input.signature.
func TestSignatureLoggedAndReplayed(t *testing.T) {
	var log bytes.Buffer
	a := New(newEngine(t, allowAll), func() string { return ownID }, zerolog.New(&log))
	st := a.states.Get().(*state)
	defer a.states.Put(st)
	st.in = bundle.Input{Method: "GET", Path: "/", Signature: &bundle.Signature{KeyID: "gateway", Alg: "ed25519",
		Created: 1700000000, Components: []string{"@method", "@target-uri"}}}
	input := zerolog.Dict()
	a.logInput(input, st, nil)
	out := zerolog.New(&log)
	out.Log().Dict("input", input).Send()
	got, err := ReadLoggedInput(log.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if sig := got.Input.Signature; sig == nil || sig.KeyID != "gateway" || sig.Alg != "ed25519" || sig.Created != 1700000000 ||
		strings.Join(sig.Components, ",") != "@method,@target-uri" {
		t.Errorf("replayed signature %+v from %s", sig, log.String())
	}
}
