package bundle

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// Explain decides as Decide does and shows why: in fails mode, the
// expression that failed, with its file and line.
func TestExplainNamesTheFailingExpression(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	writeTarball(t, path, build(t, "r1", policy(`package warden.authz
default allow := {"allow": false, "reason": "not a reader"}
allow := {"allow": true} if {
	input.method == "GET"
	startswith(input.path, "/books/")
}
`), nil))
	e := newEngine(t, Options{Source: path, CacheSize: 10, CacheTTL: 60e9})
	e.mustLoad(t)
	if p := e.DecisionPath(); p != "warden/authz/allow" {
		t.Errorf("DecisionPath %q", p)
	}
	var out strings.Builder
	d, err := e.Explain(context.Background(), request("GET", "/films/1"), ExplainFails, &out)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allow || d.Reason != "not a reader" || d.Revision != "r1" || d.Cached {
		t.Errorf("decision %+v", d)
	}
	// The path is a local variable after compilation: its value is shown.
	if s := out.String(); !strings.Contains(s, `Fail startswith(`) || !strings.Contains(s, `"/books/")`) ||
		!strings.Contains(s, `"/films/1"`) || !strings.Contains(s, "authz.rego:") || strings.Contains(s, `Fail input.method`) {
		t.Errorf("the explanation does not name the failing expression (and only it):\n%s", s)
	}

	out.Reset()
	if d, err = e.Explain(context.Background(), request("GET", "/books/1"), ExplainFull, &out); err != nil || !d.Allow {
		t.Fatalf("allowed request: %+v, %v", d, err)
	}
	if s := out.String(); !strings.Contains(s, "Exit data.warden.authz.allow") {
		t.Errorf("the full explanation lacks the rule's exit:\n%s", s)
	}
	if _, err := e.Explain(context.Background(), request("GET", "/"), "why", &out); err == nil {
		t.Error("an unknown mode was accepted")
	}
}

// Notes mode shows the policy's trace() notes.
func TestExplainNotes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	writeTarball(t, path, build(t, "r1", policy(`package warden.authz
default allow := false
allow if {
	trace(sprintf("method %s", [input.method]))
	input.method == "POST"
}
`), nil))
	e := newEngine(t, Options{Source: path})
	e.mustLoad(t)
	var out strings.Builder
	if d, err := e.Explain(context.Background(), request("GET", "/"), ExplainNotes, &out); err != nil || d.Allow {
		t.Fatalf("%+v, %v", d, err)
	}
	if s := out.String(); !strings.Contains(s, `Note "method GET"`) || strings.Contains(s, "Fail") {
		t.Errorf("notes:\n%s", s)
	}
}
