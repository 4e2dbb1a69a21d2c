package bundle

import (
	"context"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/tester"
)

// TestSegregationRego runs the Rego unit tests of the segregation library
// (testdata/segregation, opa test style) against the default bundle.
func TestSegregationRego(t *testing.T) {
	results, err := tester.Run(context.Background(), "default", "testdata/segregation")
	if err != nil {
		t.Fatal(err)
	}
	if len(results) == 0 {
		t.Fatal("no Rego tests ran")
	}
	for _, r := range results {
		if !r.Pass() {
			t.Errorf("%s.%s: %s", r.Package, r.Name, r.String())
			if r.Error != nil {
				t.Errorf("  error: %v", r.Error)
			}
		}
	}
}

// The default policy applies the segregation matrix: a forbidden call is
// denied with the reason "segregation", a cached one too, and IDs that follow
// no convention keep the default bundle's behaviour (allowed).
func TestDefaultBundleSegregation(t *testing.T) {
	e := newEngine(t, Options{CacheSize: 100, CacheTTL: time.Minute})
	e.mustLoad(t)
	const own = "spiffe://corp.example/env/prod/zone/internal/sa/api"
	tests := []struct {
		name, peer, own string
		allow           bool
	}{
		{"prod internal calls prod internal", "spiffe://corp.example/env/prod/zone/internal/sa/web", own, true},
		{"dev may not call prod", "spiffe://corp.example/env/dev/zone/internal/sa/web", own, false},
		{"test may not call prod", "spiffe://corp.example/env/test/zone/internal/sa/web", own, false},
		{"public may not call internal", "spiffe://corp.example/env/prod/zone/public/sa/web", own, false},
		{"a partner's internal zone is not ours", "spiffe://partner.example/env/prod/zone/internal/sa/web", own, false},
		{"a Kubernetes-style ID without namespace labels passes", "spiffe://corp.example/ns/default/sa/web", own, true},
		{"unlabelled peer and warden pass", "spiffe://corp.example/ns/default/sa/web", "spiffe://corp.example/ns/default/sa/app", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, cached := range []bool{false, true} {
				in := request("GET", "/x")
				in.PeerID, in.DestinationID = tt.peer, tt.own
				d := decide(t, e.Engine, in)
				if d.Cached != cached {
					t.Fatalf("cached = %v, want %v", d.Cached, cached)
				}
				if d.Allow != tt.allow {
					t.Fatalf("allow = %v, want %v (%+v)", d.Allow, tt.allow, d)
				}
				if want := map[bool]string{true: "", false: "segregation"}[tt.allow]; d.Reason != want {
					t.Fatalf("reason = %q, want %q", d.Reason, want)
				}
			}
		})
	}
}
