package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDefaultBundle(t *testing.T) {
	e := newEngine(t, Options{CacheSize: 100, CacheTTL: time.Minute})
	if _, err := e.Decide(context.Background(), request("GET", "/")); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Decide before any load: err = %v; want ErrNotReady", err)
	}
	e.mustLoad(t)
	st := e.Status()
	if !st.Active || st.Revision != "default-1" || st.Source != "embedded:bundle/default" || st.LoadedAt.IsZero() ||
		!reflect.DeepEqual(st.CacheKey, []string{"peer.spiffe_id", "destination"}) {
		t.Fatalf("status = %+v", st)
	}
	if d := decide(t, e.Engine, request("POST", "/anything")); !d.Allow || d.Revision != "default-1" {
		t.Fatalf("an authenticated peer is refused by the default policy: %+v", d)
	}
	anon := request("GET", "/")
	anon.PeerID = ""
	if d := decide(t, e.Engine, anon); d.Allow {
		t.Fatalf("a request without a peer id is allowed by the default policy: %+v", d)
	}
	// Polling the embedded bundle finds nothing new.
	e.mustLoad(t)
	if n := e.activations.Load(); n != 1 {
		t.Fatalf("%d activations; want 1", n)
	}
}

func TestDefaultBundleNeedsNoSignature(t *testing.T) {
	k := newKey(t, "ES256")
	e := newEngine(t, Options{VerificationKeyPath: k.verifyPath})
	e.mustLoad(t)
	if st := e.Status(); st.Revision != "default-1" {
		t.Fatalf("status = %+v", st)
	}
}

func TestDecisionResults(t *testing.T) {
	tests := []struct {
		name    string
		rego    string
		in      *Input
		want    Decision // Revision and Cached are not compared
		wantErr string
		cached  bool // whether a second identical request is served from the cache
	}{
		{
			name: "a true boolean allows and is cached",
			rego: allowGET, in: request("GET", "/"),
			want: Decision{Allow: true}, cached: true,
		},
		{
			name: "a false boolean denies without error and is cached",
			rego: allowGET, in: request("DELETE", "/"),
			want: Decision{Allow: false}, cached: true,
		},
		{
			name: "an object carries status, reason and headers",
			rego: `package warden.authz
allow := {"allow": false, "status": 401, "reason": "no token", "headers": {"x-b": "2", "x-a": "1"}}`,
			in:     request("GET", "/"),
			want:   Decision{Status: 401, Reasons: []string{"no token"}, Reason: "no token", Headers: []Header{{Name: "x-a", Value: "1"}, {Name: "x-b", Value: "2"}}},
			cached: true,
		},
		{
			name: "a reason may be a list of strings, and is cached with the decision",
			rego: `package warden.authz
allow := {"allow": false, "reason": ["not the owner", "", "outside office hours"]}`,
			in:     request("GET", "/"),
			want:   Decision{Reasons: []string{"not the owner", "outside office hours"}, Reason: "not the owner; outside office hours"},
			cached: true,
		},
		{
			name: "a reason may be a set of strings, as partial rules make them",
			rego: `package warden.authz
reasons contains "b: no role" if input.method == "GET"
reasons contains "a: no scope" if input.method == "GET"
allow := {"allow": count(reasons) == 0, "reason": reasons}`,
			in:     request("GET", "/"),
			want:   Decision{Reasons: []string{"a: no scope", "b: no role"}, Reason: "a: no scope; b: no role"},
			cached: true,
		},
		{
			name: "an empty reason list is no reason",
			rego: `package warden.authz
allow := {"allow": false, "reason": []}`,
			in: request("GET", "/"), want: Decision{}, cached: true,
		},
		{
			name: "a reason list holding a number denies with an error",
			rego: `package warden.authz
allow := {"allow": true, "reason": ["ok", 7]}`,
			in: request("GET", "/"), want: Decision{}, wantErr: "reason[1] is the number 7, want a string",
		},
		{
			name: "a reason object denies with an error",
			rego: `package warden.authz
allow := {"allow": true, "reason": {"why": "x"}}`,
			in: request("GET", "/"), want: Decision{}, wantErr: "reason is an object, want a string or a list of strings",
		},
		{
			name: "an allowing object adds headers upstream",
			rego: `package warden.authz
allow := {"allow": true, "headers": {"x-user": input.peer.spiffe_id}}`,
			in:     request("GET", "/"),
			want:   Decision{Allow: true, Headers: []Header{{Name: "x-user", Value: "spiffe://example.org/client"}}},
			cached: true,
		},
		{
			name: "cache_ttl_seconds 0 is not cached",
			rego: `package warden.authz
allow := {"allow": true, "cache_ttl_seconds": 0}`,
			in: request("GET", "/"), want: Decision{Allow: true}, cached: false,
		},
		{
			name: "cache_ttl_seconds keeps the decision cached",
			rego: `package warden.authz
allow := {"allow": true, "cache_ttl_seconds": 30}`,
			in: request("GET", "/"), want: Decision{Allow: true}, cached: true,
		},
		{
			name: "block_for_seconds is kept with the decision, cached or not",
			rego: `package warden.authz
allow := {"allow": false, "block_for_seconds": 600}`,
			in: request("GET", "/"), want: Decision{BlockFor: 10 * time.Minute}, cached: true,
		},
		{
			name: "block_for_seconds is capped at a day",
			rego: `package warden.authz
allow := {"allow": false, "block_for_seconds": 1000000}`,
			in: request("GET", "/"), want: Decision{BlockFor: 24 * time.Hour}, cached: true,
		},
		{
			name: "a negative block_for_seconds denies with an error",
			rego: `package warden.authz
allow := {"allow": true, "block_for_seconds": -1}`,
			in: request("GET", "/"), want: Decision{}, wantErr: "block_for_seconds is the number -1, want a non-negative integer",
		},
		{
			name: "an undefined decision denies without error",
			rego: `package warden.authz
allow if input.method == "NEVER"`,
			in: request("GET", "/"), want: Decision{}, cached: true,
		},
		{
			name: "a string allow denies with an error",
			rego: `package warden.authz
allow := {"allow": "yes"}`,
			in: request("GET", "/"), want: Decision{}, wantErr: "allow is a string",
		},
		{
			name: "an object without allow denies with an error",
			rego: `package warden.authz
allow := {"status": 200}`,
			in: request("GET", "/"), want: Decision{}, wantErr: "allow is missing",
		},
		{
			name: "a string status denies with an error",
			rego: `package warden.authz
allow := {"allow": true, "status": "403"}`,
			in: request("GET", "/"), want: Decision{}, wantErr: "status is a string",
		},
		{
			name: "a header value with CRLF denies with an error",
			rego: `package warden.authz
allow := {"allow": true, "headers": {"x-a": "1\r\nx-admin: true"}}`,
			in: request("GET", "/"), want: Decision{}, wantErr: "control character",
		},
		{
			name: "a numeric header value denies with an error",
			rego: `package warden.authz
allow := {"allow": true, "headers": {"x-a": 1}}`,
			in: request("GET", "/"), want: Decision{}, wantErr: `header "x-a" is the number 1`,
		},
		{
			name: "a string result denies with an error",
			rego: `package warden.authz
allow := "yes"`,
			in: request("GET", "/"), want: Decision{}, wantErr: "result is a string",
		},
		{
			name: "conflicting values deny with an evaluation error, never cached",
			rego: `package warden.authz
allow := true if input.method == "GET"
allow := false if input.path == "/conflict"`,
			in: request("GET", "/conflict"), want: Decision{}, wantErr: "conflict",
		},
		{
			name: "every input field reaches the policy",
			rego: `package warden.authz
default allow := false
allow if {
	input.method == "GET"
	input.path == "/a/b"
	input.raw_path == "/a%2Fb"
	input.query == {"x": ["1", "2 3"], "flag": [""], "%zz": ["%4"]}
	input.headers == {"accept": "a, b", "x-one": "1"}
	input.transaction == "tx-9"
	input.sender == "10.0.0.7"
	input.peer == {"spiffe_id": "spiffe://example.org/c", "trust_domain": "example.org"}
	input.destination == {"spiffe_id": "spiffe://example.org/app"}
	input.token.sub == "alice"
	input.token.aud == ["app"]
}`,
			in: &Input{
				Method: "GET", Path: "/a/b", RawPath: "/a%2Fb", RawQuery: "x=1&x=2+3&flag&&%zz=%4",
				Headers:     []Header{{Name: "accept", Value: "a"}, {Name: "x-one", Value: "1"}, {Name: "accept", Value: "b"}},
				Transaction: "tx-9", Sender: "10.0.0.7",
				PeerID: "spiffe://example.org/c", PeerTrustDomain: "example.org",
				DestinationID: "spiffe://example.org/app",
				Token:         map[string]any{"sub": "alice", "aud": []any{"app"}}, TokenKey: "k1",
			},
			want: Decision{Allow: true}, cached: true,
		},
		{
			name: "input.token is absent without a token",
			rego: `package warden.authz
default allow := false
allow if not input.token`,
			in: request("GET", "/"), want: Decision{Allow: true}, cached: true,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "b.tar.gz")
			rev := fmt.Sprintf("case-%d", i)
			writeTarball(t, path, build(t, rev, policy(tt.rego), nil))
			e := newEngine(t, Options{Source: path, CacheSize: 100, CacheTTL: time.Minute})
			e.mustLoad(t)
			for round := range 2 {
				d, err := e.Decide(context.Background(), tt.in)
				switch {
				case tt.wantErr == "" && err != nil:
					t.Fatalf("Decide: %v", err)
				case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
					t.Fatalf("Decide: err = %v; want one with %q", err, tt.wantErr)
				}
				if d.Revision != rev {
					t.Fatalf("revision %q; want %q", d.Revision, rev)
				}
				if wantCached := round == 1 && tt.cached; d.Cached != wantCached {
					t.Fatalf("round %d: Cached = %v; want %v", round, d.Cached, wantCached)
				}
				d.Revision, d.Cached = "", false
				if !reflect.DeepEqual(d, tt.want) {
					t.Fatalf("round %d: decision %+v; want %+v", round, d, tt.want)
				}
			}
		})
	}
}

func TestDirectorySource(t *testing.T) {
	dir := t.TempDir()
	writeDir(t, dir, build(t, "r1", policy(allowGET), nil))
	e := newEngine(t, Options{Source: dir})
	e.mustLoad(t)
	if d := decide(t, e.Engine, request("GET", "/")); !d.Allow || d.Revision != "r1" {
		t.Fatalf("r1: %+v", d)
	}

	// Unchanged: nothing happens.
	e.mustLoad(t)
	// Rewritten with the same content (new mtimes): nothing is activated.
	writeDir(t, dir, build(t, "r1", policy(allowGET), nil))
	e.mustLoad(t)
	if n := e.activations.Load(); n != 1 {
		t.Fatalf("%d activations for one revision", n)
	}

	writeDir(t, dir, build(t, "r2", policy(allowPOST), nil))
	e.mustLoad(t)
	if d := decide(t, e.Engine, request("GET", "/")); d.Allow || d.Revision != "r2" {
		t.Fatalf("r2: %+v", d)
	}
}

func TestRevisionDefaultsToContentDigest(t *testing.T) {
	dir := t.TempDir()
	writeDir(t, dir, build(t, "", policy(allowGET), nil))
	e := newEngine(t, Options{Source: dir})
	e.mustLoad(t)
	rev := e.Status().Revision
	if !strings.HasPrefix(rev, "sha256:") || len(rev) != len("sha256:")+12 {
		t.Fatalf("revision %q; want sha256: and 12 hex digits", rev)
	}
	writeDir(t, dir, build(t, "", policy(allowPOST), nil))
	e.mustLoad(t)
	if rev2 := e.Status().Revision; rev2 == rev || !strings.HasPrefix(rev2, "sha256:") {
		t.Fatalf("revision went from %q to %q", rev, rev2)
	}
}

// A ConfigMap volume publishes its files through a "..data" symlink that the
// kubelet swaps atomically; warden must read through it and see the swap.
func TestConfigMapVolumeLayout(t *testing.T) {
	dir := t.TempDir()
	publish := func(version string, tgz []byte) {
		t.Helper()
		real := filepath.Join(dir, "..2026_"+version)
		if err := os.Mkdir(real, 0o755); err != nil {
			t.Fatal(err)
		}
		writeDir(t, real, tgz)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(real), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		for name := range unpackArchive(t, tgz) {
			link := filepath.Join(dir, name)
			if _, err := os.Lstat(link); err == nil {
				continue
			}
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish("1", build(t, "cm-1", policy(allowGET), nil))
	e := newEngine(t, Options{Source: dir})
	e.mustLoad(t)
	if st := e.Status(); st.Revision != "cm-1" {
		t.Fatalf("status %+v", st)
	}
	publish("2", build(t, "cm-2", policy(allowPOST), nil))
	e.mustLoad(t)
	if d := decide(t, e.Engine, request("POST", "/")); !d.Allow || d.Revision != "cm-2" {
		t.Fatalf("after the swap: %+v", d)
	}
}

func TestTarballSource(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.tgz")
	writeTarball(t, path, build(t, "t1", policy(allowGET), nil))
	e := newEngine(t, Options{Source: path})
	e.mustLoad(t)
	if d := decide(t, e.Engine, request("GET", "/")); !d.Allow || d.Revision != "t1" {
		t.Fatalf("t1: %+v", d)
	}
	e.mustLoad(t)
	writeTarball(t, path, build(t, "t2", policy(allowPOST), nil))
	e.mustLoad(t)
	if d := decide(t, e.Engine, request("GET", "/")); d.Allow || d.Revision != "t2" {
		t.Fatalf("t2: %+v", d)
	}
	if n := e.activations.Load(); n != 2 {
		t.Fatalf("%d activations; want 2", n)
	}
}

func TestURLSource(t *testing.T) {
	srv := newBundleServer(t)
	b1 := build(t, "u1", policy(allowGET), nil)
	srv.set(b1)
	e := newEngine(t, Options{Source: srv.URL + "/bundles/authz.tar.gz", CacheSize: 100, CacheTTL: time.Minute})
	e.mustLoad(t)
	if d := decide(t, e.Engine, request("GET", "/")); !d.Allow || d.Revision != "u1" || d.Cached {
		t.Fatalf("u1: %+v", d)
	}
	if d := decide(t, e.Engine, request("GET", "/")); !d.Cached {
		t.Fatalf("second identical request not cached: %+v", d)
	}

	// Polling an unchanged bundle costs a 304 and no body.
	for range 3 {
		e.mustLoad(t)
	}
	if r, nm, sent := srv.requests.Load(), srv.notMod.Load(), srv.sent.Load(); r != 4 || nm != 3 || sent != int64(len(b1)) {
		t.Fatalf("requests %d, 304s %d, body bytes %d; want 4, 3, %d", r, nm, sent, len(b1))
	}

	// A new revision activates and the cache of the old one is gone.
	srv.set(build(t, "u2", policy(allowGET), nil))
	e.mustLoad(t)
	if d := decide(t, e.Engine, request("GET", "/")); !d.Allow || d.Revision != "u2" || d.Cached {
		t.Fatalf("first decision of u2: %+v", d)
	}
	if n := e.activations.Load(); n != 2 {
		t.Fatalf("%d activations; want 2", n)
	}
}

func TestURLSourceWithoutETagActivatesOnlyNewContent(t *testing.T) {
	srv := newBundleServer(t)
	srv.noETag = true
	srv.set(build(t, "n1", policy(allowGET), nil))
	e := newEngine(t, Options{Source: srv.URL})
	e.mustLoad(t)
	e.mustLoad(t)
	if n := e.activations.Load(); n != 1 || srv.requests.Load() != 2 {
		t.Fatalf("%d activations, %d requests; want 1, 2", n, srv.requests.Load())
	}
}

func TestRejectedBundlesKeepTheActiveRevision(t *testing.T) {
	good := build(t, "good", policy(allowGET), nil)
	tests := []struct {
		name  string
		serve func(t *testing.T, srv *bundleServer)
		want  string
		stage string
	}{
		{
			name: "broken Rego",
			serve: func(t *testing.T, srv *bundleServer) {
				srv.set(packArchive(t, map[string][]byte{
					".manifest":  []byte(`{"revision": "broken", "roots": ["warden"]}`),
					"authz.rego": []byte("package warden.authz\nallow if {\n"),
				}))
			},
			want: "rego_parse_error", stage: "parse",
		},
		{
			name: "no rule defines the decision",
			serve: func(t *testing.T, srv *bundleServer) {
				srv.set(build(t, "norule", policy("package warden.authz\nsomething_else := true\n"), nil))
			},
			want: "no rule defines the decision data.warden.authz.allow", stage: "compile",
		},
		{
			name: "data outside the manifest's roots",
			serve: func(t *testing.T, srv *bundleServer) {
				srv.set(packArchive(t, map[string][]byte{
					".manifest":  []byte(`{"revision": "roots", "roots": ["warden"]}`),
					"authz.rego": []byte(allowGET),
					"data.json":  []byte(`{"elsewhere": {"x": 1}}`),
				}))
			},
			want: "do not permit data at path", stage: "parse",
		},
		{
			name:  "server error",
			serve: func(t *testing.T, srv *bundleServer) { srv.fail(http.StatusInternalServerError) },
			want:  "GET: 500 Internal Server Error", stage: "fetch",
		},
		{
			name:  "garbage instead of a tarball",
			serve: func(t *testing.T, srv *bundleServer) { srv.set([]byte("<html>not a bundle</html>")) },
			want:  "archive read failed", stage: "read",
		},
		{
			name: "a gzip bomb",
			serve: func(t *testing.T, srv *bundleServer) {
				srv.set(packArchive(t, map[string][]byte{"data.json": make([]byte, maxBundleBytes+1)}))
			},
			want: "bundle expands to more than 64 MiB", stage: "read",
		},
		{
			name: "a delta bundle",
			serve: func(t *testing.T, srv *bundleServer) {
				srv.set(packArchive(t, map[string][]byte{
					".manifest":  []byte(`{"revision": "delta", "roots": ["warden"]}`),
					"patch.json": []byte(`{"data": [{"op": "upsert", "path": "/warden/x", "value": 1}]}`),
				}))
			},
			want: "delta bundles are not supported", stage: "parse",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newBundleServer(t)
			srv.set(good)
			e := newEngine(t, Options{Source: srv.URL, CacheSize: 10, CacheTTL: time.Minute})
			e.mustLoad(t)

			tt.serve(t, srv)
			e.mustReject(t, tt.want)
			var le *LoadError
			if err := e.Load(context.Background()); !errors.As(err, &le) || le.Stage != tt.stage {
				t.Fatalf("stage of %v; want %s", err, tt.stage)
			}
			if d := decide(t, e.Engine, request("GET", "/")); !d.Allow || d.Revision != "good" {
				t.Fatalf("the good revision stopped deciding: %+v", d)
			}
			if n := e.errs.Load(); tt.stage != "fetch" && n != 1 {
				t.Fatalf("OnError called %d times for one bad bundle polled twice; want 1", n)
			}

			// The source recovers: the error is cleared.
			srv.set(good)
			e.mustLoad(t)
			if st := e.Status(); st.LastError != "" || st.Revision != "good" {
				t.Fatalf("after recovery: %+v", st)
			}
		})
	}
}

func TestRunPollsAndStops(t *testing.T) {
	dir := t.TempDir()
	writeDir(t, dir, build(t, "p1", policy(allowGET), nil))
	e := newEngine(t, Options{Source: dir, PollInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()

	eventually(t, "the first revision", e.Ready)
	writeDir(t, dir, build(t, "p2", policy(allowPOST), nil))
	eventually(t, "the second revision", func() bool { return e.Status().Revision == "p2" })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestRunRetriesTheFirstLoad(t *testing.T) {
	srv := newBundleServer(t)
	srv.set(build(t, "late", policy(allowGET), nil))
	srv.fail(http.StatusServiceUnavailable)
	e := newEngine(t, Options{Source: srv.URL, PollInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()

	eventually(t, "a failed first attempt", func() bool { return e.Status().LastError != "" })
	if e.Ready() {
		t.Fatal("ready without a bundle")
	}
	srv.set(build(t, "late", policy(allowGET), nil))
	eventually(t, "the retried load", e.Ready)
	if st := e.Status(); st.Revision != "late" || st.LastError != "" {
		t.Fatalf("status %+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestRunGivesUpWithTheContext(t *testing.T) {
	e := newEngine(t, Options{Source: filepath.Join(t.TempDir(), "missing")})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.Run(ctx); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("Run: %v; want the load error", err)
	}
}

// Decide runs in goroutines while revisions swap: every decision must be the
// one its reported revision makes (odd revisions allow GET, even ones POST),
// so no request ever sees one revision's cache with another's policy.
func TestDecideWhileRevisionsSwap(t *testing.T) {
	dir := t.TempDir()
	bundles := make([][]byte, 8)
	for i := range bundles {
		p := allowGET
		if i%2 == 1 {
			p = allowPOST
		}
		bundles[i] = build(t, fmt.Sprintf("rev-%d", i), policy(p), nil)
	}
	writeDir(t, dir, bundles[0])
	e := newEngine(t, Options{Source: dir, CacheSize: 64, CacheTTL: time.Minute})
	e.mustLoad(t)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				in := request("GET", fmt.Sprintf("/%d", (i+g)%16))
				d, err := e.Decide(context.Background(), in)
				if err != nil {
					errs <- err
					return
				}
				var n int
				if _, err := fmt.Sscanf(d.Revision, "rev-%d", &n); err != nil || d.Allow != (n%2 == 0) {
					errs <- fmt.Errorf("revision %q decided allow=%v", d.Revision, d.Allow)
					return
				}
			}
		}()
	}
	for i := 1; i < 24; i++ {
		writeDir(t, dir, bundles[i%len(bundles)])
		e.mustLoad(t)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestStatusJSON(t *testing.T) {
	loaded := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b, _ := json.Marshal(Status{Source: "/p", Revision: "r", LoadedAt: loaded, Active: true})
	if want := `{"source":"/p","revision":"r","loaded_at":"2026-01-02T03:04:05Z","active":true}`; string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(Status{Source: "/p", LastError: "bundle: /p: read: x", LastErrorAt: loaded})
	if want := `{"source":"/p","revision":"","last_error":"bundle: /p: read: x","last_error_at":"2026-01-02T03:04:05Z","active":false}`; string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	dir := t.TempDir()
	rsaKey := newKey(t, "RS256")
	secret := filepath.Join(dir, "secret")
	writeFile(t, secret, []byte("not pem"))
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, nil)
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"an ftp source", Options{Source: "ftp://example.org/b.tar.gz"}, "want an http(s):// URL"},
		{"a negative poll interval", Options{PollInterval: -time.Second}, "poll interval -1s is negative"},
		{"a negative cache size", Options{CacheSize: -1}, "cache size -1 is negative"},
		{"a negative cache TTL", Options{CacheTTL: -time.Second}, "cache TTL -1s is negative"},
		{"a negative cache byte bound", Options{CacheBytes: -1}, "cache bytes -1 is negative"},
		{"a negative evaluation timeout", Options{EvalTimeout: -time.Millisecond}, "evaluation timeout -1ms is negative"},
		{"an empty rule path segment", Options{Decision: "warden//allow"}, `decision "warden//allow" is not a rule path`},
		{"an algorithm without a key", Options{VerificationAlg: "RS256"}, "without a verification key"},
		{"a missing key file", Options{VerificationKeyPath: filepath.Join(dir, "nope")}, "no such file"},
		{"an empty key file", Options{VerificationKeyPath: empty}, "the file is empty"},
		{"a private key", Options{VerificationKeyPath: rsaKey.signing}, "holds a private key"},
		{"an RSA key for ES256", Options{VerificationKeyPath: rsaKey.verifyPath, VerificationAlg: "ES256"}, "does not sign ES256"},
		{"a secret for RS256", Options{VerificationKeyPath: secret, VerificationAlg: "RS256"}, "needs a PEM public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "bundle: ") {
				t.Fatalf("New: %v; want bundle: ... %q", err, tt.want)
			}
		})
	}
}

// A bundle URL may carry a password and, when signed, a credential in its
// query. The real URL is what is fetched, but only scheme://host/path may
// show: in Status, in what OnActivate and OnError receive, in errors.
func TestURLCredentialsNeverShow(t *testing.T) {
	const (
		user     = "alice-bundle-reader"
		password = "pa55-hunter2"
		sig      = "5ec2e7519fa7d0c3b2a1"
		cred     = "AKIAEXAMPLE20260101"
		query    = "X-Amz-Credential=" + cred + "&X-Amz-Signature=" + sig
	)
	secrets := []string{user, password, sig, cred}
	refused := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}
	good := build(t, "signed-1", policy(allowGET), nil)
	tests := []struct {
		name    string
		handler http.HandlerFunc // nil: nothing listens
		wantErr string
	}{
		{name: "a bundle served", handler: func(w http.ResponseWriter, r *http.Request) {
			if u, p, _ := r.BasicAuth(); u != user || p != password || r.URL.Query().Get("X-Amz-Signature") != sig {
				http.Error(w, "unsigned", http.StatusForbidden)
				return
			}
			w.Write(good)
		}},
		{name: "404", handler: http.NotFound, wantErr: "GET: 404 Not Found"},
		{name: "connection refused", wantErr: "connection refused"},
		{name: "a redirect to a signed URL that refuses connections", wantErr: "connection refused", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://"+refused(t)+"/b.tar.gz?"+query, http.StatusFound)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := refused(t)
			if tt.handler != nil {
				srv := httptest.NewServer(tt.handler)
				t.Cleanup(srv.Close)
				addr = srv.Listener.Addr().String()
			}
			var shown []string
			var mu sync.Mutex
			show := func(s string) {
				mu.Lock()
				shown = append(shown, s)
				mu.Unlock()
			}
			status := func(st Status) {
				b, err := json.Marshal(st)
				if err != nil {
					t.Fatal(err)
				}
				show(string(b))
			}
			e, err := New(Options{
				Source:     "http://" + user + ":" + password + "@" + addr + "/bundles/b.tar.gz?" + query,
				OnActivate: status,
				OnError:    func(err error) { show(err.Error()) },
			})
			if err != nil {
				t.Fatal(err)
			}
			err = e.Load(context.Background())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Load: %v; want an error with %q", err, tt.wantErr)
			case err != nil:
				show(err.Error())
			}
			st := e.Status()
			status(st)
			if want := "http://" + addr + "/bundles/b.tar.gz"; st.Source != want {
				t.Fatalf("Status.Source = %q; want %q", st.Source, want)
			}
			if st.Active != (tt.wantErr == "") || len(shown) < 2 {
				t.Fatalf("status %+v, reported %q", st, shown)
			}
			for _, s := range shown {
				for _, secret := range secrets {
					if strings.Contains(s, secret) {
						t.Errorf("%q shows %q", s, secret)
					}
				}
			}
		})
	}
}

// New does not quote a URL it cannot parse. (That fetch errors quoting the
// URL other than net/http's own are rewritten is internal/fetch's
// TestErrorsThatQuoteASecretAreRewritten.)
func TestNewDoesNotQuoteAURLItCannotParse(t *testing.T) {
	_, err := New(Options{Source: "https://u:pw-s3cret@example.org:port/b.tar.gz?sig=sig-s3cret"})
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "bundle: source is not a valid URL") {
		t.Fatalf("New: %v", err)
	}
}
