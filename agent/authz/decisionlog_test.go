package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/bundle"
	"github.com/warden-sidecar/warden/internal/redact"
)

// decisionLine is a decision log line: OPA's decision log schema, with
// warden's fields under "warden".
type decisionLine struct {
	DecisionID string                               `json:"decision_id"`
	Timestamp  string                               `json:"timestamp"`
	Path       string                               `json:"path"`
	Bundles    map[string]struct{ Revision string } `json:"bundles"`
	Input      map[string]any                       `json:"input"`
	Result     *struct {
		Allow  bool     `json:"allow"`
		Status int      `json:"status"`
		Reason []string `json:"reason"`
	} `json:"result"`
	Erased  []string         `json:"erased"`
	Metrics map[string]int64 `json:"metrics"`
	Warden  struct {
		Event      string   `json:"event"`
		RequestID  string   `json:"request_id"`
		Allow      bool     `json:"allow"`
		Status     int      `json:"status"`
		Reason     *string  `json:"reason"`
		Cached     bool     `json:"cached"`
		EvalS      *float64 `json:"eval_s"`
		SampleRate *float64 `json:"sample_rate"`
		Error      string   `json:"error"`
	} `json:"warden"`
}

func (l decisionLine) reason() string {
	if l.Warden.Reason == nil {
		return "<none>"
	}
	return *l.Warden.Reason
}

// lines parses every line of a decision log.
func lines(t testing.TB, log *bytes.Buffer) []decisionLine {
	t.Helper()
	var out []decisionLine
	for _, s := range strings.Split(strings.TrimSpace(log.String()), "\n") {
		if s == "" {
			continue
		}
		var l decisionLine
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatalf("decision log line %q: %v", s, err)
		}
		out = append(out, l)
	}
	return out
}

// only parses the one line of a decision log.
func only(t testing.TB, log *bytes.Buffer) decisionLine {
	t.Helper()
	ls := lines(t, log)
	if len(ls) != 1 {
		t.Fatalf("%d decision log lines, want 1: %s", len(ls), log.String())
	}
	return ls[0]
}

var uuid = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// A line parses into OPA's decision log fields, so that OPA's tools and
// the SIEM parsers written for them read it; warden's own are under
// "warden", and nothing else is at the top level.
func TestDecisionLogLineFollowsOPAsSchema(t *testing.T) {
	var log bytes.Buffer
	a := New(newEngine(t, policy), func() string { return ownID }, zerolog.New(&log))
	before := time.Now()
	check(a, request("GET", "/hidden?q=1", "X-Api-Version", "2"), peerRequest("/hidden"))
	after := time.Now()

	var top map[string]json.RawMessage
	if err := json.Unmarshal(log.Bytes(), &top); err != nil {
		t.Fatalf("%s: %v", log.String(), err)
	}
	for name := range top {
		if !slices.Contains([]string{"decision_id", "timestamp", "path", "bundles", "input", "result", "metrics", "warden"}, name) {
			t.Errorf("top-level field %q is not OPA's: %s", name, log.String())
		}
	}
	l := only(t, &log)
	ts, err := time.Parse(time.RFC3339Nano, l.Timestamp)
	if err != nil || ts.Before(before.Add(-time.Microsecond)) || ts.After(after) || !strings.HasSuffix(l.Timestamp, "Z") {
		t.Errorf("timestamp %q (%v), want RFC 3339 in UTC between %v and %v", l.Timestamp, err, before, after)
	}
	if !uuid.MatchString(l.DecisionID) {
		t.Errorf("decision_id %q, want a UUID", l.DecisionID)
	}
	if l.Path != "warden/authz/allow" || !strings.HasPrefix(l.Bundles["warden"].Revision, "sha256:") {
		t.Errorf("path %q, bundles %+v", l.Path, l.Bundles)
	}
	if l.Input["path"] != "/hidden" || l.Input["query"] != "q=1" || l.Input["headers"].(map[string]any)["x-api-version"] != "2" ||
		l.Input["peer"].(map[string]any)["spiffe_id"] != "spiffe://warden.test/ns/default/sa/client" {
		t.Errorf("input %v", l.Input)
	}
	if l.Result == nil || l.Result.Allow || l.Result.Status != 404 || l.Result.Reason != nil {
		t.Errorf("result %+v, want the policy's {allow: false, status: 404}", l.Result)
	}
	if l.Metrics["timer_rego_query_eval_ns"] <= 0 {
		t.Errorf("metrics %v, want timer_rego_query_eval_ns of the evaluation", l.Metrics)
	}
	w := l.Warden
	if w.Event != "decision" || w.RequestID != "req-1" || w.Allow || w.Status != 404 || l.reason() != "default_deny" ||
		w.Cached || w.EvalS == nil || w.SampleRate != nil {
		t.Errorf("warden %+v reason %s", w, l.reason())
	}

	// The same request again: from the cache, no evaluation, another id.
	log.Reset()
	check(a, request("GET", "/hidden?q=1", "X-Api-Version", "2"), peerRequest("/hidden"))
	l2 := only(t, &log)
	if !l2.Warden.Cached || len(l2.Metrics) != 0 || l2.DecisionID == l.DecisionID || !uuid.MatchString(l2.DecisionID) {
		t.Errorf("cached line: cached %v, metrics %v, decision_id %q after %q", l2.Warden.Cached, l2.Metrics, l2.DecisionID, l.DecisionID)
	}
}

// WARDEN_DECISION_LOG_SAMPLE applies to the allowed decisions from the
// cache only, and those lines say so; every denial and every decision the
// policy computed is logged.
func TestDecisionLogSampling(t *testing.T) {
	const rego = `package warden.authz
default allow := false
allow := {"allow": true} if input.path == "/cached"
allow := {"allow": true, "cache_ttl_seconds": 0} if input.path == "/fresh"
`
	const n = 2000
	for _, tt := range []struct {
		rate     float64
		min, max int // sampled lines of n
	}{
		// The first of the n is evaluated, the rest come from the cache.
		{0.1, 150, 250}, // binomial(1999, 0.1): 200 ± 13.4 (sd)
		{0, 0, 0},
		{1, n - 1, n - 1},
	} {
		var log bytes.Buffer
		a := New(newEngine(t, rego), func() string { return ownID }, zerolog.New(&log),
			WithDecisionLogSample(tt.rate), WithSampleSource(rand.NewPCG(1, 2)))
		for range n {
			check(a, request("GET", "/cached"), peerRequest("/cached"))
		}
		for range 100 {
			check(a, request("GET", "/fresh"), peerRequest("/fresh"))
			check(a, request("GET", "/denied"), peerRequest("/denied"))
		}
		var sampled, first, fresh, denied, deniedCached int
		for _, l := range lines(t, &log) {
			switch path := l.Input["path"]; {
			case path == "/cached" && l.Warden.Cached:
				if l.Warden.SampleRate == nil || *l.Warden.SampleRate != tt.rate {
					t.Fatalf("rate %v: a sampled-class line without sample_rate %v: %+v", tt.rate, tt.rate, l.Warden)
				}
				sampled++
			case l.Warden.SampleRate != nil:
				t.Fatalf("rate %v: %s, a line always logged, has a sample_rate", tt.rate, path)
			case path == "/cached":
				first++
			case path == "/fresh":
				fresh++
			case path == "/denied":
				denied++
				if l.Warden.Cached {
					deniedCached++
				}
			}
		}
		t.Logf("rate %v: %d of %d allowed cached decisions logged", tt.rate, sampled, n)
		if sampled < tt.min || sampled > tt.max {
			t.Errorf("rate %v: %d of %d allowed cached decisions logged, want %d to %d", tt.rate, sampled, n, tt.min, tt.max)
		}
		if first != 1 || fresh != 100 || denied != 100 || deniedCached != 99 {
			t.Errorf("rate %v: %d+%d uncached allowed and %d denied (%d cached) decisions logged, want every one: 1+100, 100 (99)",
				tt.rate, first, fresh, denied, deniedCached)
		}
	}
}

// The default source (math/rand/v2's per-thread generator) samples too.
func TestDecisionLogSamplingDefaultSource(t *testing.T) {
	var log bytes.Buffer
	a := New(newEngine(t, allowAll), func() string { return ownID }, zerolog.New(&log), WithDecisionLogSample(0.5))
	for range 1000 {
		check(a, request("GET", "/"), peerRequest("/"))
	}
	// 1 uncached + binomial(999, 0.5): 500 ± 16 (sd); the bounds are 10 sd.
	if n := len(lines(t, &log)); n < 340 || n > 660 {
		t.Errorf("%d of 1000 lines at rate 0.5", n)
	}
}

// Each denial says why: the policy's reason (a string or a list), or
// warden's own when the policy gave none.
func TestDecisionLogReasons(t *testing.T) {
	tests := []struct {
		name, rego  string
		allow       bool
		status      int
		reason      string   // warden.reason
		policyGave  []string // result.reason
		noResult    bool
		errContains string
	}{
		{name: "a list of reasons is kept, and joined for warden.reason",
			rego:  `allow := {"allow": false, "status": 403, "reason": ["not the owner", "outside office hours"]}`,
			allow: false, status: 403, reason: "not the owner; outside office hours", policyGave: []string{"not the owner", "outside office hours"}},
		{name: "a set of reasons, as partial rules make them",
			rego: `reasons contains "no scope" if input.method == "GET"
allow := {"allow": count(reasons) == 0, "reason": reasons}`,
			status: 403, reason: "no scope", policyGave: []string{"no scope"}},
		{name: "a string reason",
			rego:   `allow := {"allow": false, "status": 401, "reason": "no rule matched"}`,
			status: 401, reason: "no rule matched", policyGave: []string{"no rule matched"}},
		{name: "false without a reason is warden's default_deny",
			rego:   `allow := false`,
			status: 403, reason: "default_deny"},
		{name: "an undefined decision is default_deny",
			rego:   `allow if input.method == "NEVER"`,
			status: 403, reason: "default_deny"},
		{name: "an allowed decision keeps the policy's reason",
			rego:  `allow := {"allow": true, "reason": "public path"}`,
			allow: true, reason: "public path", policyGave: []string{"public path"}},
		{name: "an allowed decision without a reason has none",
			rego:  `allow := true`,
			allow: true, reason: "<none>"},
		{name: "an evaluation error is policy_error, with the error",
			rego: `allow := true if input.method == "GET"
allow := false if input.method == "GET"`,
			status: 403, reason: "policy_error", noResult: true, errContains: "conflict"},
		{name: "a malformed reason is policy_error",
			rego:   `allow := {"allow": true, "reason": [1]}`,
			status: 403, reason: "policy_error", noResult: true, errContains: "reason[0] is the number 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			a := New(newEngine(t, "package warden.authz\n"+tt.rego+"\n"), func() string { return ownID }, zerolog.New(&log))
			v := check(a, request("GET", "/x"), peerRequest("/x"))
			if (v.Status == 0) != tt.allow || !tt.allow && v.Status != tt.status {
				t.Errorf("verdict %+v, want allow %v status %d", v, tt.allow, tt.status)
			}
			l := only(t, &log)
			if l.Warden.Allow != tt.allow || l.Warden.Status != tt.status || l.reason() != tt.reason {
				t.Errorf("warden: allow %v status %d reason %q; want %v %d %q", l.Warden.Allow, l.Warden.Status, l.reason(), tt.allow, tt.status, tt.reason)
			}
			switch {
			case tt.noResult && l.Result != nil:
				t.Errorf("result %+v of a decision in error", l.Result)
			case !tt.noResult && (l.Result == nil || !slices.Equal(l.Result.Reason, tt.policyGave)):
				t.Errorf("result %+v, want the policy's reasons %q", l.Result, tt.policyGave)
			}
			if !strings.Contains(l.Warden.Error, tt.errContains) || (tt.errContains == "") != (l.Warden.Error == "") {
				t.Errorf("error %q, want one with %q", l.Warden.Error, tt.errContains)
			}
		})
	}
}

func TestDecisionLogReasonWithoutABundle(t *testing.T) {
	e, err := bundle.New(bundle.Options{Source: t.TempDir(), PollInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	a := New(e, func() string { return ownID }, zerolog.New(&log))
	check(a, request("GET", "/"), peerRequest("/"))
	if l := only(t, &log); l.reason() != "policy_not_ready" || l.Warden.Status != 403 || l.Result != nil || len(l.Bundles) != 0 {
		t.Errorf("line %+v, reason %s; want policy_not_ready", l, l.reason())
	}
}

// A mask of /result erases the policy's reason wherever it is logged, and
// the policy's status and headers; warden's own reasons and what the
// client got stay.
func TestDecisionLogMaskOfTheResult(t *testing.T) {
	for _, tt := range []struct{ rego, reason string }{
		{`allow := {"allow": false, "status": 404, "reason": "account 4242 is frozen", "headers": {"x-a": "1"}}`, "<none>"},
		{`allow := false`, "default_deny"},
	} {
		e := engineWith(t, map[string]string{
			"authz.rego": "package warden.authz\n" + tt.rego + "\n",
			"mask.rego":  "package system.log\nmask contains \"/result\"\n",
		}, bundle.Options{})
		var log bytes.Buffer
		a := New(e, func() string { return ownID }, zerolog.New(&log))
		check(a, request("GET", "/x"), peerRequest("/x"))
		l := only(t, &log)
		if strings.Contains(log.String(), "4242") || l.Result == nil || l.Result.Allow || l.Result.Status != 0 {
			t.Errorf("%s: the policy's result is in the line: %s", tt.rego, log.String())
		}
		if l.reason() != tt.reason || l.Warden.Status == 0 || !slices.Equal(l.Erased, []string{"/result"}) {
			t.Errorf("%s: reason %s, status %d, erased %q; want reason %s, the client's status, /result erased", tt.rego, l.reason(), l.Warden.Status, l.Erased, tt.reason)
		}
	}
}

// replayPolicy allows only the exact input the test sends: the replay of
// its logged line is allowed only if the line gives the policy the same
// input document.
const replayPolicy = `package warden.authz

default allow := {"allow": false, "reason": "the input differs"}

allow := {"allow": true, "headers": {"x-api-key-seen": input.headers["x-api-key"]}} if {
	input.method == "GET"
	input.path == "/accounts/alice"
	input.raw_path == "/accounts/%61lice"
	input.query == {"x": ["1", "2 3"], "flag": [""], "%zz": ["%4"], "access_token": ["s3cret"]}
	input.headers == {"host": "app", "accept": "text/html, application/json", "x-tenant": "a, b, c", "x-one": "1", "x-api-key": "k3y"}
	input.transaction == "req-1"
	input.sender == "10.0.0.9"
	input.peer == {"spiffe_id": "spiffe://warden.test/ns/default/sa/client", "trust_domain": "warden.test"}
	input.destination == {"spiffe_id": "` + ownID + `"}
	not input.token
}
`

// A logged line gives back the input the policy saw: the query parsed from
// its logged string, repeated headers joined as the policy saw them; what
// the log does not keep (credentials) is named.
func TestDecisionLogReplaysTheInput(t *testing.T) {
	e := newEngine(t, replayPolicy)
	var log bytes.Buffer
	a := New(e, func() string { return ownID }, zerolog.New(&log))
	req := request("GET", "/accounts/%61lice?x=1&x=2+3&flag&&%zz=%4&access_token=s3cret",
		"Accept", "text/html", "X-Tenant", "a", "X-One", "1", "x-tenant", "b", "Accept", "application/json", "X-TENANT", "c", "X-Api-Key", "k3y")
	if v := check(a, req, peerRequest("/accounts/alice")); v.Status != 0 {
		t.Fatalf("the request itself: %+v; %s", v, log.String())
	}
	line := bytes.TrimSpace(log.Bytes())
	if s := string(line); !strings.Contains(s, `"accept":"text/html, application/json"`) || !strings.Contains(s, `"x-tenant":"a, b, c"`) ||
		strings.Count(s, `"x-tenant"`) != 1 || strings.Contains(s, "s3cret") || strings.Contains(s, "k3y") {
		t.Fatalf("repeated headers not logged once, joined, or a credential logged: %s", s)
	}

	l, err := ReadLoggedInput(line)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Line || l.Path != "warden/authz/allow" || l.RequestID != "req-1" || !l.Allow || l.Revision == "" {
		t.Errorf("line fields %+v", l)
	}
	var out strings.Builder
	r := Explain(context.Background(), e, l, bundle.ExplainFails, &out)
	// The credentials were logged as REDACTED: the replay is denied, and
	// says why.
	if r.Allow || r.Reason != "the input differs" || r.Status != 403 {
		t.Errorf("replay %+v, want the denial the REDACTED values cause", r)
	}
	for _, want := range []string{"input.query.access_token: logged as REDACTED", "input.headers.x-api-key: logged as REDACTED",
		"the line says allow true"} {
		if !slices.ContainsFunc(l.Warnings, func(w string) bool { return strings.Contains(w, want) }) {
			t.Errorf("warnings %q lack %q", l.Warnings, want)
		}
	}

	// With the real values put back, the replay allows: everything else
	// is the input the policy saw.
	l.Input.RawQuery = strings.Replace(l.Input.RawQuery, "access_token=REDACTED", "access_token=s3cret", 1)
	for i, h := range l.Input.Headers {
		if h.Name == "x-api-key" {
			l.Input.Headers[i].Value = "k3y"
		}
	}
	if r := Explain(context.Background(), e, l, bundle.ExplainFails, io.Discard); !r.Allow || r.Status != 0 || r.Error != "" {
		t.Errorf("replay with the credentials %+v; want allowed", r)
	}
}

// A bare input object is read too, its query as a string or an object;
// odd documents are errors, never a panic.
func TestReadLoggedInput(t *testing.T) {
	l, err := ReadLoggedInput([]byte(`{"method": "GET", "path": "/a", "query": {"b": ["2 3"], "a": ["1"]},
		"headers": {"X-One": "1"}, "token": {"sub": "alice", "exp": 1700000000}, "sender": "10.0.0.1",
		"operation": {"id": "get", "path_template": "/a/{id}", "path_params": {"id": 42}}, "parsed_body": {"n": 1}, "extra": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	in := l.Input
	if l.Line || in.Method != "GET" || in.RawQuery != "a=1&b=2+3" || len(in.Headers) != 1 || in.Headers[0] != (bundle.Header{Name: "x-one", Value: "1"}) ||
		in.Token["exp"] != json.Number("1700000000") || in.Operation == nil || in.Operation.PathParams["id"] != json.Number("42") ||
		in.ParsedBodyRaw != `{"n":1}` {
		t.Errorf("input %+v", in)
	}
	if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "input.extra: not part of warden's input") {
		t.Errorf("warnings %q", l.Warnings)
	}

	// Erased fields and the body are named.
	l, err = ReadLoggedInput([]byte(`{"input": {"method": "POST"}, "erased": ["/input/headers/x-account-id", "/input/parsed_body", "/input/query/page"], "warden": {"allow": false}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Warnings) != 3 || !strings.Contains(l.Warnings[0], "input.headers.x-account-id: erased from the log by the bundle's mask") ||
		!strings.Contains(l.Warnings[1], "input.parsed_body: the request's body is never logged") ||
		!strings.Contains(l.Warnings[2], "input.query: erased from the log by the bundle's mask (/input/query/page)") {
		t.Errorf("warnings %q", l.Warnings)
	}

	// A value that was not UTF-8 was logged with U+FFFD: named.
	l, err = ReadLoggedInput([]byte(`{"method": "GET", "headers": {"x-name": "Jos\ufffd"}}`))
	if err != nil || len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "input.headers.x-name: holds U+FFFD") {
		t.Errorf("warnings %q, %v", l.Warnings, err)
	}

	for _, bad := range []string{``, `null`, `[]`, `"x"`, `{"input": 3}`, `{"method": 3}`, `{"headers": {"a": 1}}`, `{"headers": []}`,
		`{"query": 1}`, `{"query": {"a": "1"}}`, `{"query": {"a": [1]}}`, `{"peer": "x"}`, `{"token": []}`, `{"operation": {"path_params": 1}}`,
		`{} {}`, `{"method": "GET"`} {
		if _, err := ReadLoggedInput([]byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "authz: ") {
			t.Errorf("%s: err %v, want an authz: error", bad, err)
		}
	}
}

func TestAppendSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0", 81234 * time.Nanosecond: "0.000081234", time.Second: "1", 1500 * time.Millisecond: "1.5",
		2*time.Second + 7: "2.000000007", -5: "0", 100 * time.Millisecond: "0.1",
	} {
		if got := string(appendSeconds(nil, d)); got != want {
			t.Errorf("%v: %s, want %s", d, got, want)
		}
	}
}

// FuzzDecisionLogRoundTrip: whatever the query and headers, the line
// parses, and reading it back gives the query the log keeps and each
// header name once, with the value the policy saw (joined when repeated;
// REDACTED for credentials). Values that are not UTF-8 are skipped: JSON
// cannot carry them, and the log writes U+FFFD instead.
func FuzzDecisionLogRoundTrip(f *testing.F) {
	f.Add("a=1&b=2+3&a=%zz", "Accept: a\nX-One: 1\naccept: b")
	f.Add("access_token=x&%61pi_key=y", "X-Api-Key: k\nAuthorization: Bearer t\nCookie: c\nX-Request-Id: r")
	f.Add("", "X-\"quoted\\: v\"\\\nx-\"QUOTED\\: w")
	f.Add("q=\x01", "X-Ctl: \x7f\ttab")
	e := engineWith(f, map[string]string{"authz.rego": allowAll}, bundle.Options{})
	f.Fuzz(func(t *testing.T, query, headerBlock string) {
		if !utf8.ValidString(query) || !utf8.ValidString(headerBlock) {
			t.Skip()
		}
		var log bytes.Buffer
		a := New(e, func() string { return ownID }, zerolog.New(&log))
		req := request("GET", "/x?"+query)
		want := map[string]string{"host": "app"}
		var order []string
		for _, line := range strings.Split(headerBlock, "\n") {
			name, value, ok := strings.Cut(line, ":")
			if !ok || name == "" {
				continue
			}
			value = strings.TrimSpace(value)
			req.Headers = append(req.Headers, pep.Field{Name: []byte(name), Value: []byte(value)})
			lower := strings.ToLower(name)
			if excluded([]byte(lower)) {
				continue
			}
			if redact.IsCredentialName(lower) {
				value = redacted
			}
			if prev, ok := want[lower]; ok && !redact.IsCredentialName(lower) {
				value = prev + ", " + value
			} else if !ok {
				order = append(order, lower)
			}
			want[lower] = value
		}
		check(a, req, peerRequest("/x"))
		l, err := ReadLoggedInput(bytes.TrimSpace(log.Bytes()))
		if err != nil {
			t.Fatalf("%v: %s", err, log.String())
		}
		if l.Input.RawQuery != redact.Query(query) || l.Input.Method != "GET" || l.Input.Transaction != "req-1" {
			t.Fatalf("input %+v from %s", l.Input, log.String())
		}
		got := map[string]string{}
		for _, h := range l.Input.Headers {
			if _, dup := got[h.Name]; dup {
				t.Fatalf("header %q twice in %s", h.Name, log.String())
			}
			got[h.Name] = h.Value
		}
		if !maps.Equal(got, want) {
			t.Fatalf("headers %q, want %q (from %q)", got, want, headerBlock)
		}
	})
}
