package bundle

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// maskEngine serves a bundle with both policies, cached.
func maskEngine(t *testing.T, files map[string]string) *testEngine {
	t.Helper()
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	writeTarball(t, path, build(t, "m1", files, nil))
	e := newEngine(t, Options{Source: path, CacheSize: 100, CacheTTL: time.Minute})
	e.mustLoad(t)
	return e
}

func TestDecisionLogMask(t *testing.T) {
	allowGET := authz(`default allow := false`, `allow if input.method == "GET"`)
	withKey := func(in *Input) *Input {
		in.Headers = append(in.Headers, Header{Name: "x-api-key", Value: "k-123"})
		return in
	}
	tests := []struct {
		name  string
		files map[string]string
		in    *Input
		want  []string
		err   string // of the decision itself
	}{
		{
			name:  "no mask policy masks nothing",
			files: map[string]string{"authz.rego": allowGET},
			in:    request("GET", "/"),
		},
		{
			name: "paths and remove operations, sorted; upserts ignored",
			files: withMask(allowGET, maskPolicy(
				`mask contains "/input/headers/x-api-key"`,
				`mask contains {"op": "remove", "path": "/input/token"}`,
				`mask contains {"op": "upsert", "path": "/input/sender", "value": "hidden"}`,
				`mask contains "/nd_builtin_cache"`,
			)),
			in:   request("GET", "/"),
			want: []string{"/input/headers/x-api-key", "/input/token"},
		},
		{
			name: "the mask reads the decision",
			files: withMask(allowGET, maskPolicy(
				`mask contains "/input/path" if input.result == false`,
			)),
			in:   request("DELETE", "/secret"),
			want: []string{"/input/path"},
		},
		{
			name: "the mask reads the input, present",
			files: withMask(allowGET, maskPolicy(
				`mask contains "/input/headers/x-api-key" if input.input.headers["x-api-key"]`,
			)),
			in:   withKey(request("GET", "/")),
			want: []string{"/input/headers/x-api-key"},
		},
		{
			name: "the mask reads the input, absent",
			files: withMask(allowGET, maskPolicy(
				`mask contains "/input/headers/x-api-key" if input.input.headers["x-api-key"]`,
			)),
			in: request("GET", "/"),
		},
		{
			name: "a mask in data",
			files: map[string]string{
				".manifest":            `{"roots": ["warden", "system/log"]}`,
				"authz.rego":           allowGET,
				"system/log/data.json": `{"mask": ["/input/headers/x-api-key"]}`,
			},
			in:   request("GET", "/"),
			want: []string{"/input/headers/x-api-key"},
		},
		{
			name: "an erring mask masks the whole input and the decision stands",
			files: withMask(allowGET, maskPolicy(
				`mask := ["/input/a"] if input.input.method == "GET"`,
				`mask := ["/input/b"] if input.input.path == "/"`,
			)),
			in:   request("GET", "/"),
			want: []string{"/input"},
		},
		{
			name:  "a mask that is not a set masks the whole input",
			files: withMask(allowGET, maskPolicy(`mask := "/input/headers"`)),
			in:    request("GET", "/"),
			want:  []string{"/input"},
		},
		{
			name:  "a path outside the event masks the whole input",
			files: withMask(allowGET, maskPolicy(`mask contains "/elsewhere/x"`)),
			in:    request("GET", "/"),
			want:  []string{"/input"},
		},
		{
			name:  "a path without its slash masks the whole input",
			files: withMask(allowGET, maskPolicy(`mask contains "input/headers"`)),
			in:    request("GET", "/"),
			want:  []string{"/input"},
		},
		{
			name:  "an operation OPA does not know masks the whole input",
			files: withMask(allowGET, maskPolicy(`mask contains {"op": "hash", "path": "/input/path"}`)),
			in:    request("GET", "/"),
			want:  []string{"/input"},
		},
		{
			name: "a decision in error is masked too",
			files: withMask(authz(`allow := true if input.method == "GET"`, `allow := false if input.path == "/"`),
				maskPolicy(`mask contains "/input/path" if not input.result`)),
			in:   request("GET", "/"),
			want: []string{"/input/path"},
			err:  "conflict",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := maskEngine(t, tt.files)
			for round := range 2 {
				d, err := e.Decide(context.Background(), tt.in)
				switch {
				case tt.err == "" && err != nil:
					t.Fatalf("Decide: %v", err)
				case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
					t.Fatalf("Decide: %v; want an error with %q", err, tt.err)
				}
				if !reflect.DeepEqual(d.Mask, tt.want) {
					t.Fatalf("round %d (cached %v): Mask = %q; want %q", round, d.Cached, d.Mask, tt.want)
				}
			}
		})
	}
}

// The mask is cached with the decision, so requests that differ in what
// the mask reads must not share an entry even if the decision ignores it.
func TestMaskIsPartOfTheCachedDecision(t *testing.T) {
	e := maskEngine(t, withMask(authz(`allow if input.method == "GET"`), maskPolicy(
		`mask contains "/input/headers/x-api-key" if input.input.headers["x-api-key"]`,
	)))
	with := request("GET", "/")
	with.Headers = append(with.Headers, Header{Name: "x-api-key", Value: "k-123"})
	without := request("GET", "/")
	if d := decide(t, e.Engine, with); d.Cached || len(d.Mask) != 1 {
		t.Fatalf("first decision %+v", d)
	}
	if d := decide(t, e.Engine, without); d.Cached || d.Mask != nil {
		t.Fatalf("a request without the key got %+v", d)
	}
	if d := decide(t, e.Engine, with); !d.Cached || len(d.Mask) != 1 {
		t.Fatalf("the cached decision lost its mask: %+v", d)
	}
	if st := e.Status(); !reflect.DeepEqual(st.CacheKey, []string{"method", "headers.x-api-key"}) {
		t.Fatalf("CacheKey %q", st.CacheKey)
	}
}
