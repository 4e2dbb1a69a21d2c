package authz

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/inspect"
	"github.com/warden-sidecar/warden/agent/openapi"
	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/token"
)

// recorder is an Observer that writes down each call.
type recorder struct {
	calls []string
	took  []time.Duration
}

func (r *recorder) Token(reason token.Reason, present bool) {
	r.calls = append(r.calls, fmt.Sprintf("token reason=%q present=%t", reason, present))
}

func (r *recorder) Signature(reason string, present bool) {
	r.calls = append(r.calls, fmt.Sprintf("signature reason=%q present=%t", reason, present))
}

func (r *recorder) Decision(allow, cached bool, err error, took time.Duration) {
	r.calls = append(r.calls, fmt.Sprintf("decision allow=%t cached=%t failed=%t", allow, cached, err != nil))
	r.took = append(r.took, took)
}

func (r *recorder) InputRefused(stage pep.Stage, rule string) {
	r.calls = append(r.calls, fmt.Sprintf("refused %s %s", stage, rule))
}

// Each stage tells the observer its outcome once, with the reason or rule
// the log names, and a refused request never reaches the policy's count.
func TestObserverIsToldEachStagesOutcome(t *testing.T) {
	f := newTokenFixture(t)
	spec := paymentsSpec(t)
	obs := &recorder{}
	a := New(newEngine(t, paymentsPolicy), func() string { return ownID }, zerolog.New(io.Discard),
		WithTokens(f.verifier, "Authorization", false), WithObserver(obs),
		WithOpenAPI(func() *openapi.Spec { return spec }),
		WithJSONLimits(inspect.DefaultJSONLimits()), WithPolicyBody(64))
	alice := f.mint(t, "alice")
	idem := []string{"X-Idempotency-Key", "8f14e45f-ceea-467a-9575-6f8e3c2d4b1a"}
	pay := func(r *pep.Request) *pep.Request {
		return withBody(r, "application/json", `{"amount":1,"currency":"EUR","to":"x"}`)
	}
	bearer := func(tok string, r *pep.Request) *pep.Request {
		r.Headers = append(r.Headers, pep.Field{Name: []byte("Authorization"), Value: []byte("Bearer " + tok)})
		return r
	}
	steps := []struct {
		req  *pep.Request
		want []string
	}{
		{pay(bearer(alice, request("POST", "/payments", idem...))), []string{
			`token reason="" present=true`, "decision allow=true cached=false failed=false"}},
		{pay(bearer(alice, request("POST", "/payments", idem...))), []string{
			`token reason="" present=true`, "decision allow=true cached=true failed=false"}},
		{pay(request("POST", "/payments", idem...)), []string{
			`token reason="" present=false`, "decision allow=true cached=false failed=false"}},
		{bearer("not-a-jwt", request("POST", "/payments", idem...)), []string{`token reason="malformed" present=true`}},
		{request("GET", "/nowhere"), []string{`token reason="" present=false`, "refused openapi no_route"}},
		{withBody(request("POST", "/payments", idem...), "application/json", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"),
			[]string{`token reason="" present=false`, "refused body max_depth"}},
		{withBody(request("POST", "/payments", append(idem, "Content-Encoding", "gzip")...), "application/json", "{}"),
			[]string{`token reason="" present=false`, "refused body content_encoding"}},
		{withBody(request("POST", "/payments", idem...), "application/json", `{"amount":1,"currency":"EUR","to":"x","memo":"`+strings.Repeat("m", 64)+`"}`),
			[]string{`token reason="" present=false`, "refused body policy_body_max_bytes"}},
	}
	for i, s := range steps {
		obs.calls = nil
		check(a, s.req, peerRequest(string(s.req.RawPath)))
		if !slices.Equal(obs.calls, s.want) {
			t.Errorf("step %d: observer told %q, want %q", i, obs.calls, s.want)
		}
	}
	if len(obs.took) == 0 || obs.took[0] <= 0 {
		t.Errorf("an evaluation took %v", obs.took[0])
	}
}

// A denial and an evaluation error are told apart; both deny.
func TestObserverToldDenialsAndErrors(t *testing.T) {
	obs := &recorder{}
	a := New(newEngine(t, policy), func() string { return ownID }, zerolog.New(io.Discard), WithObserver(obs))
	for _, path := range []string{"/hidden", "/conflict"} {
		check(a, request("GET", path), peerRequest(path))
	}
	want := []string{"decision allow=false cached=false failed=false", "decision allow=false cached=false failed=true"}
	if !slices.Equal(obs.calls, want) {
		t.Errorf("observer told %q, want %q", obs.calls, want)
	}
}

// paymentsPolicy lets alice, and requests without a token, pay: its
// decisions are cached per user.
const paymentsPolicy = `package warden.authz
default allow := false
allow if {
	input.path == "/payments"
	input.token.user == "alice"
}
allow if {
	input.path == "/payments"
	not input.token
}
`
