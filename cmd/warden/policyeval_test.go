package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/internal/testenv"
)

// reportsPolicy: reports are for finance (a denial with the policy's
// reason), and finance gets them as CSV only (else the default denies).
const reportsPolicy = `package warden.authz

default allow := false

allow := {"allow": false, "status": 403, "reason": "reports are for finance"} if {
	startswith(input.path, "/reports/")
	not finance
}

allow if {
	startswith(input.path, "/reports/")
	finance
	input.query.format == ["csv"]
}

finance if startswith(input.headers["x-team"], "finance")
`

// policyEval runs `warden policy eval` with args and returns its stdout,
// stderr and exit status.
func policyEval(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(wardenBin, append([]string{"policy", "eval"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// Decisions read from the real binary's decision log are replayed offline
// by `warden policy eval` with the same bundle: the same outcome and
// reason, and OPA's explanation names the expression that failed.
func TestPolicyEvalReplaysLoggedDecisions(t *testing.T) {
	dir := policyDir(t, reportsPolicy)
	decisions := filepath.Join(t.TempDir(), "decisions.log")
	s := startSidecar(t, startApp(t, appOptions{}), "WARDEN_POLICY_BUNDLE="+dir, "WARDEN_DECISION_LOG="+decisions)
	key := randomSecret(t, "X-Api-Key value", "k3y-")

	cases := []struct {
		name     string
		req      string
		status   int    // what the client got
		exit     int    // policy eval's exit status
		reason   string // in the line and in the replay
		explains []string
		warns    []string
	}{
		{"denied with the policy's reason", rawGET("/reports/q3?format=csv", "X-Team: sales", "X-Api-Key: "+key), 403, 1,
			"reports are for finance", []string{`Fail startswith(`, `"finance")`, `"sales"`, "authz.rego:16"},
			[]string{"input.headers.x-api-key: logged as REDACTED"}},
		{"denied by default, with a repeated header", rawGET("/reports/q3?format=pdf", "X-Team: finance", "X-Team: audit"), 403, 1,
			"default_deny", []string{`Fail input.query.format = ["csv"]`, "authz.rego:13"}, nil},
		{"allowed", rawGET("/reports/q3?format=csv", "X-Team: finance", "X-Team: audit"), 200, 0, "", nil, nil},
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		got := s.send(t, c.req)
		if got.status != c.status {
			t.Fatalf("%s: got %s, want %d", c.name, got, c.status)
		}
		ids[i] = got.header.Get("X-Request-Id")
	}
	lines := map[string][]byte{}
	testenv.Poll(t, "the decision log lines", 15*time.Second, func() bool {
		b, _ := os.ReadFile(decisions)
		for _, line := range bytes.Split(b, []byte("\n")) {
			var l map[string]any
			if json.Unmarshal(line, &l) == nil {
				if id, _ := decision(l)["request_id"].(string); id != "" {
					lines[id] = line
				}
			}
		}
		return len(lines) >= len(cases)
	})

	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			line := lines[ids[i]]
			var logged map[string]any
			if err := json.Unmarshal(line, &logged); err != nil {
				t.Fatalf("line for %s: %v", ids[i], err)
			}
			if got, _ := decision(logged)["reason"].(string); got != c.reason {
				t.Errorf("the line's warden.reason is %q, want %q: %s", got, c.reason, line)
			}
			file := filepath.Join(t.TempDir(), "line.json")
			writeFile(t, file, string(line))

			stdout, stderr, code := policyEval(t, "--input", file, "--bundle", dir)
			if code != c.exit {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.exit, stdout, stderr)
			}
			first, explanation, _ := strings.Cut(stdout, "\n")
			var d struct {
				Allow    bool   `json:"allow"`
				Status   int    `json:"status"`
				Reason   string `json:"reason"`
				Revision string `json:"revision"`
			}
			if err := json.Unmarshal([]byte(first), &d); err != nil {
				t.Fatalf("first line %q: %v", first, err)
			}
			wantStatus := c.status
			if wantStatus == 200 {
				wantStatus = 0
			}
			if d.Allow != (c.exit == 0) || d.Status != wantStatus || d.Reason != c.reason || !strings.HasPrefix(d.Revision, "sha256:") {
				t.Errorf("decision %+v, want allow %v, status %d, reason %q", d, c.exit == 0, wantStatus, c.reason)
			}
			for _, want := range c.explains {
				if !strings.Contains(explanation, want) {
					t.Errorf("the explanation lacks %q:\n%s", want, explanation)
				}
			}
			for _, want := range c.warns {
				if !strings.Contains(stderr, "warning: "+want) {
					t.Errorf("stderr lacks the warning %q:\n%s", want, stderr)
				}
			}
			if c.warns == nil && stderr != "" {
				t.Errorf("warnings for a line replayed as the policy saw it:\n%s", stderr)
			}
			if strings.Contains(stdout+stderr, key) {
				t.Errorf("policy eval printed the API key")
			}
		})
	}

	// The repeated header is logged once, as the policy saw it.
	if !bytes.Contains(lines[ids[1]], []byte(`"x-team":"finance, audit"`)) {
		t.Errorf("repeated X-Team not logged joined: %s", lines[ids[1]])
	}
	// Explanations are offline only: the admin server has no endpoint.
	if code, _ := get(t, s.admin+"/policy/explain"); code != 404 {
		t.Errorf("GET /policy/explain: %d, want 404", code)
	}
}

// Usage and input errors exit 2 with one line; a bare input object is
// replayed against the embedded default bundle.
func TestPolicyEvalUsage(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	writeFile(t, bad, "this is not a decision log line\n")
	bare := filepath.Join(t.TempDir(), "bare.json")
	writeFile(t, bare, `{"method": "GET", "path": "/", "peer": {"spiffe_id": "spiffe://warden.local/ns/default/sa/client"}}`)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "--input is required"},
		{[]string{"--input", bare, "--explain", "why"}, `--explain "why": want fails, full or notes`},
		{[]string{"--input", filepath.Join(t.TempDir(), "missing.json")}, "no such file"},
		{[]string{"--input", bad}, "not a JSON object"},
		{[]string{"--input", bare, "--bundle", filepath.Join(t.TempDir(), "nowhere")}, "no such file"},
		{[]string{"--input", bare, "--decision", "warden/authz/nothing"}, "no rule defines the decision"},
		{[]string{"--input", bare, "extra"}, `unexpected argument "extra"`},
	} {
		stdout, stderr, code := policyEval(t, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || stdout != "" {
			t.Errorf("%q: exit %d, stderr %q, stdout %q; want 2 and one line with %q", tt.args, code, stderr, stdout, tt.want)
		}
	}
	// The default bundle allows any peer that passed WARDEN_ALLOWED_PEERS.
	if stdout, stderr, code := policyEval(t, "--input", bare); code != 0 || !strings.HasPrefix(stdout, `{"allow":true`) {
		t.Errorf("bare input with the default bundle: exit %d\n%s%s", code, stdout, stderr)
	}
}

// A replayed decision shows what the PEP would do besides allowing: the
// policy's rate_limit and block_for_seconds.
func TestPolicyEvalPrintsRateLimitAndBlock(t *testing.T) {
	dir := policyDir(t, `package warden.authz

default allow := false

allow := {"allow": true, "rate_limit": {"key": input.peer.spiffe_id, "per_second": 5, "burst": 10}} if input.path == "/limited"

allow := {"allow": false, "reason": "decoy", "block_for_seconds": 600} if input.path == "/wp-admin"
`)
	input := func(path string) string {
		f := filepath.Join(t.TempDir(), "input.json")
		writeFile(t, f, `{"method": "GET", "path": "`+path+`", "peer": {"spiffe_id": "spiffe://warden.local/ns/default/sa/client"}}`)
		return f
	}
	for _, tt := range []struct {
		path string
		code int
		want string
	}{
		{"/limited", 0, `"rate_limit":{"key":"spiffe://warden.local/ns/default/sa/client","per_second":5,"burst":10}}`},
		{"/wp-admin", 1, `,"block_for_seconds":600}`},
		{"/other", 1, `"reason":"default_deny"`},
	} {
		stdout, stderr, code := policyEval(t, "--input", input(tt.path), "--bundle", dir)
		first, _, _ := strings.Cut(stdout, "\n")
		if code != tt.code || !strings.Contains(first, tt.want) {
			t.Errorf("%s: exit %d, first line %s (stderr %q); want exit %d and %s", tt.path, code, first, stderr, tt.code, tt.want)
		}
		if tt.path == "/other" && strings.Contains(first, "rate_limit") || strings.Contains(first, "block_for_seconds\":0") {
			t.Errorf("%s: %s", tt.path, first)
		}
	}
}
