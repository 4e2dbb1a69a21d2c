package bundle

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A decision's rate_limit is read, kept with the decision in the cache, and
// a malformed one is an error (the PEP denies: fail closed).
func TestDecisionRateLimit(t *testing.T) {
	tests := []struct {
		name    string
		limit   string // the rate_limit member of the decision
		want    RateLimit
		wantErr string
	}{
		{"key, rate and burst", `{"key": concat("|", [input.peer.spiffe_id, input.path]), "per_second": 5, "burst": 10}`,
			RateLimit{Key: "spiffe://example.org/client|/x", PerSecond: 5, Burst: 10}, ""},
		{"the burst defaults to the rate", `{"key": "k", "per_second": 3}`, RateLimit{Key: "k", PerSecond: 3, Burst: 3}, ""},
		{"not an object", `"5/s"`, RateLimit{}, "rate_limit is a string, want an object"},
		{"no key", `{"per_second": 1}`, RateLimit{}, "rate_limit.key is missing or null, want a string"},
		{"an empty key", `{"key": "", "per_second": 1}`, RateLimit{}, "rate_limit.key is empty"},
		{"a key too long", `{"key": concat("", [sprintf("%d", [x]) | some x in numbers.range(1, 600)]), "per_second": 1}`, RateLimit{}, "at most 512 allowed"},
		{"a number key", `{"key": 7, "per_second": 1}`, RateLimit{}, "rate_limit.key is the number 7, want a string"},
		{"no rate", `{"key": "k"}`, RateLimit{}, "rate_limit.per_second is missing or null, want a whole number from 1"},
		{"a zero rate", `{"key": "k", "per_second": 0}`, RateLimit{}, "rate_limit.per_second is the number 0"},
		{"a fractional rate", `{"key": "k", "per_second": 0.5}`, RateLimit{}, "rate_limit.per_second is the number 0.5"},
		{"a rate too high", `{"key": "k", "per_second": 1000000001}`, RateLimit{}, "rate_limit.per_second is the number 1000000001"},
		{"a negative burst", `{"key": "k", "per_second": 1, "burst": -1}`, RateLimit{}, "rate_limit.burst is the number -1"},
		{"a misspelt member", `{"key": "k", "persecond": 1}`, RateLimit{}, `rate_limit has an unknown member "persecond"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rego := "package warden.authz\nallow := {\"allow\": true, \"rate_limit\": " + tt.limit + "}\n"
			path := filepath.Join(t.TempDir(), "b.tar.gz")
			writeTarball(t, path, build(t, "rl", policy(rego), nil))
			e := newEngine(t, Options{Source: path, CacheSize: 100, CacheTTL: time.Minute})
			e.mustLoad(t)
			in := request("GET", "/x")
			for round := range 2 {
				d, err := e.Decide(context.Background(), in)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) || d.Allow || d.Cached {
						t.Fatalf("round %d: %+v, %v; want a denial with %q, uncached", round, d, err, tt.wantErr)
					}
					continue
				}
				if err != nil || !d.Allow || d.RateLimit != tt.want || d.Cached != (round == 1) {
					t.Fatalf("round %d: %+v, %v; want allowed with %+v, cached the second time", round, d, err, tt.want)
				}
			}
		})
	}
}
