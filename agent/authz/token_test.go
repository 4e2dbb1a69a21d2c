package authz

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/token"
	"github.com/warden-sidecar/warden/agent/token/tokentest"
	"github.com/warden-sidecar/warden/internal/secevent"
)

const (
	tokenIssuer   = "https://sts.example.test"
	tokenAudience = "accounts"
)

// accountPolicy lets a user write only their own account, and tells the
// app who the user is; GET /public needs no token.
const accountPolicy = `package warden.authz

default allow := false

allow := {"allow": true, "headers": {"X-User": input.token.user}} if {
	input.method == "PUT"
	input.path == concat("/", ["", "account", input.token.user])
	"teller" in input.token.roles
	"accounts:write" in input.token.scope
	input.token.aud == ["accounts"]
	not input.headers.authorization
	not input.headers["x-auth-token"]
}

allow if {
	input.method == "GET"
	input.path == "/public"
	not input.token
}
`

type tokenFixture struct {
	key      *tokentest.Key
	verifier *token.Verifier
}

func newTokenFixture(t testing.TB) *tokenFixture {
	t.Helper()
	k := tokentest.NewKey(t, "ES256", "k1")
	v, err := token.New(token.Options{
		Keys:      token.StaticKeys{"k1": {Public: k.Private.Public(), Alg: "ES256"}},
		Issuers:   []string{tokenIssuer},
		Audiences: []string{tokenAudience},
		ClockSkew: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &tokenFixture{key: k, verifier: v}
}

func (f *tokenFixture) mint(t testing.TB, user string, mod ...func(map[string]any)) string {
	t.Helper()
	c := tokentest.Claims(tokenIssuer, "id-"+user, tokenAudience, time.Hour)
	c["preferred_username"] = user
	c["realm_access"] = map[string]any{"roles": []string{"teller"}}
	c["scope"] = "openid accounts:write"
	for _, m := range mod {
		m(c)
	}
	return f.key.Mint(t, c)
}

// eventLine is the security event the authorizer logs for a refused token.
type eventLine struct {
	Event, Reason, Detail, RequestID string
}

func lastEvent(t *testing.T, log *bytes.Buffer) eventLine {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	var l struct {
		Event     string `json:"event"`
		Reason    string `json:"reason"`
		Detail    string `json:"detail"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &l); err != nil {
		t.Fatalf("event log %q: %v", log.String(), err)
	}
	return eventLine{l.Event, l.Reason, l.Detail, l.RequestID}
}

func TestTokenClaimsDecide(t *testing.T) {
	f := newTokenFixture(t)
	var decisions, events bytes.Buffer
	a := New(newEngine(t, accountPolicy), func() string { return ownID }, zerolog.New(&decisions),
		WithTokens(f.verifier, "Authorization", true), WithEventLog(secevent.New(&events, nil)))
	alice, bob := f.mint(t, "alice"), f.mint(t, "bob")

	decide := func(tok, path string) (pep.Verdict, string) {
		v := check(a, request("PUT", path, "Authorization", "Bearer "+tok), peerRequest(path))
		return v, header(v.AppHeaders, "X-User")
	}
	if v, user := decide(alice, "/account/alice"); v.Status != 0 || user != "alice" {
		t.Fatalf("alice on her account: %+v, X-User %q; decisions:\n%s", v, user, decisions.String())
	}
	if v, _ := decide(bob, "/account/alice"); v.Status != 403 {
		t.Errorf("bob on alice's account: %+v, want 403", v)
	}
	if v, _ := decide(alice, "/account/alice"); v.Status != 0 {
		t.Errorf("alice again: %+v", v)
	}
	if v, _ := decide(bob, "/account/alice"); v.Status != 403 {
		t.Errorf("bob after alice's allowed decision was cached: %+v, want 403", v)
	}

	// Alice's second decision came from the cache, bob's never did; the
	// claims are logged, the token never.
	var cached []bool
	for _, line := range strings.Split(strings.TrimSpace(decisions.String()), "\n") {
		var d struct {
			Warden struct {
				Cached bool `json:"cached"`
			} `json:"warden"`
			Input struct {
				Token map[string]any `json:"token"`
			} `json:"input"`
		}
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatal(err)
		}
		cached = append(cached, d.Warden.Cached)
		if d.Input.Token["user"] == nil {
			t.Errorf("decision log line without the token's claims: %s", line)
		}
	}
	if want := []bool{false, false, true, true}; !slices.Equal(cached, want) {
		t.Errorf("cached %v, want %v (bob's first, then each user's own cached decision)", cached, want)
	}
	// One policy_denied per denial (bob's two, the second from the cache),
	// none for alice's allowed requests, with the verified subject.
	var denied []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(events.String()), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("event %q: %v", line, err)
		}
		denied = append(denied, ev)
	}
	if len(denied) != 2 {
		t.Fatalf("%d events, want 2 policy_denied:\n%s", len(denied), events.String())
	}
	for i, ev := range denied {
		for k, want := range map[string]any{
			"event_type": "security", "event": "policy_denied", "severity": "medium", "reason": "default_deny",
			"token_subject": "id-bob", "source_ip": "10.0.0.9", "peer_id": "spiffe://warden.test/ns/default/sa/client",
			"request_id": "req-1", "method": "PUT", "path": "/account/alice", "status": float64(403), "cached": i == 1,
		} {
			if ev[k] != want {
				t.Errorf("policy_denied %d: %s = %v, want %v", i, k, ev[k], want)
			}
		}
	}
	for _, tok := range []string{alice, bob} {
		sig := tok[strings.LastIndexByte(tok, '.')+1:]
		if strings.Contains(decisions.String(), sig) || strings.Contains(events.String(), sig) {
			t.Errorf("a log holds the token")
		}
	}
}

// Every refused token gets 401 with the Bearer challenge; the reason goes
// to the event log only.
func TestTokenRefusals(t *testing.T) {
	f := newTokenFixture(t)
	expired := f.mint(t, "alice", func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })
	tests := []struct {
		name     string
		required bool
		headers  []string
		uri      string
		want     token.Reason // "" : reaches the policy
		status   int
	}{
		{"required token missing is refused", true, nil, "/account/alice", token.ReasonMissing, 401},
		{"Basic credentials are no bearer token", true, []string{"Authorization", "Basic YWxpY2U6cHc="}, "/account/alice", token.ReasonMissing, 401},
		{"a token in the query string is never read", true, nil, "/account/alice?access_token=" + f.mint(t, "alice"), token.ReasonMissing, 401},
		{"expired token is refused", true, []string{"Authorization", "Bearer " + expired}, "/account/alice", token.ReasonExpired, 401},
		{"garbage after Bearer is malformed", true, []string{"Authorization", "Bearer abc"}, "/account/alice", token.ReasonMalformed, 401},
		{"empty bearer token is malformed", true, []string{"Authorization", "Bearer "}, "/account/alice", token.ReasonMalformed, 401},
		{"two Authorization headers are refused", true, []string{"Authorization", "Bearer " + f.mint(t, "alice"), "Authorization", "Bearer " + f.mint(t, "bob")}, "/account/alice", token.ReasonMalformed, 401},
		{"optional token missing reaches the policy without input.token", false, nil, "/public", "", 0},
		{"optional token invalid is still refused", false, []string{"Authorization", "Bearer " + expired}, "/public", token.ReasonExpired, 401},
		{"scheme name is case-insensitive", true, []string{"Authorization", "bEaReR " + f.mint(t, "alice")}, "/account/alice", "", 0},
		{"spaces after the scheme are one separator", true, []string{"Authorization", "Bearer   " + f.mint(t, "alice")}, "/account/alice", "", 0},
		// Apps that split on any whitespace would find the expired token:
		// warden must not take these for another scheme.
		{"a tab after Bearer is malformed, even when optional", false, []string{"Authorization", "Bearer\t" + expired}, "/public", token.ReasonMalformed, 401},
		{"a no-break space after Bearer is malformed", false, []string{"Authorization", "Bearer\xa0" + expired}, "/public", token.ReasonMalformed, 401},
		{"whitespace inside the token is malformed", false, []string{"Authorization", "Bearer x \t" + expired}, "/public", token.ReasonMalformed, 401},
		{"another scheme named like Bearer is another scheme", false, []string{"Authorization", "Bearerish " + expired}, "/public", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events bytes.Buffer
			a := New(newEngine(t, accountPolicy), func() string { return ownID }, zerolog.New(io.Discard),
				WithTokens(f.verifier, "Authorization", tt.required), WithEventLog(secevent.New(&events, nil)))
			method := "PUT"
			if strings.HasPrefix(tt.uri, "/public") {
				method = "GET"
			}
			ctx := request(method, tt.uri, tt.headers...)
			path, _, _ := strings.Cut(tt.uri, "?")
			v := check(a, ctx, peerRequest(path))
			if v.Status != tt.status {
				t.Fatalf("verdict %+v, want %d; events: %s", v, tt.status, events.String())
			}
			challenge := header(v.ClientHeaders, "WWW-Authenticate")
			if tt.want == "" {
				if challenge != "" || events.Len() != 0 {
					t.Errorf("allowed request has a challenge %q or an event %s", challenge, events.String())
				}
				return
			}
			if v.Code != "unauthorized" || challenge != `Bearer error="invalid_token"` {
				t.Errorf("verdict %+v, WWW-Authenticate %q", v, challenge)
			}
			if ev := lastEvent(t, &events); ev.Event != "token_invalid" || ev.Reason != "token:"+string(tt.want) || ev.RequestID != "req-1" {
				t.Errorf("event %+v, want token_invalid token:%s", ev, tt.want)
			}
		})
	}
}

// WARDEN_JWT_HEADER names another header: the token is read from it (with
// or without "Bearer "), it never reaches the policy input, and
// Authorization is then not a token.
func TestTokenInAnotherHeader(t *testing.T) {
	f := newTokenFixture(t)
	var decisions bytes.Buffer
	a := New(newEngine(t, accountPolicy), func() string { return ownID }, zerolog.New(&decisions),
		WithTokens(f.verifier, "X-Auth-Token", true))
	for _, value := range []string{f.mint(t, "alice"), "Bearer " + f.mint(t, "alice")} {
		ctx := request("PUT", "/account/alice", "X-Auth-Token", value)
		if v := check(a, ctx, peerRequest("/account/alice")); v.Status != 0 {
			t.Errorf("token in X-Auth-Token (%.10s...): %+v", value, v)
		}
	}
	if strings.Contains(decisions.String(), "x-auth-token") {
		t.Errorf("the token header reached the input: %s", decisions.String())
	}
	ctx := request("PUT", "/account/alice", "Authorization", "Bearer "+f.mint(t, "alice"))
	if v := check(a, ctx, peerRequest("/account/alice")); v.Status != 401 {
		t.Errorf("token in Authorization while X-Auth-Token is configured: %+v, want 401", v)
	}
}

// BenchmarkCheckWithToken is the PEP's cost for a request with a token
// seen before and a cached decision: token lookup, input, decision cache,
// decision log line (with the claims).
func BenchmarkCheckWithToken(b *testing.B) {
	f := newTokenFixture(b)
	a := New(newEngine(b, accountPolicy), func() string { return ownID }, zerolog.New(io.Discard),
		WithTokens(f.verifier, "Authorization", true))
	ctx := request("PUT", "/account/alice", "Authorization", "Bearer "+f.mint(b, "alice"),
		"User-Agent", "bench", "Accept", "*/*")
	req := peerRequest("/account/alice")
	if v := check(a, ctx, req); v.Status != 0 {
		b.Fatal(v)
	}
	b.ReportAllocs()
	for b.Loop() {
		if v := check(a, ctx, req); v.Status != 0 {
			b.Fatal(v)
		}
	}
}
