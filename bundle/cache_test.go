package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/internal/cache"
)

// readsAllButTransaction reads every input field but the transaction, so
// that its decisions are keyed as every decision was before keys followed
// the policy.
const readsAllButTransaction = `package warden.authz
default allow := true
allow := false if input.method == "NONE"
allow := false if input.path == "NONE"
allow := false if input.raw_path == "NONE"
allow := false if input.query == "NONE"
allow := false if input.headers == "NONE"
allow := false if input.sender == "NONE"
allow := false if input.peer == "NONE"
allow := false if input.destination == "NONE"
allow := false if input.token == "NONE"
allow := false if input.operation == "NONE"
allow := false if input.parsed_body == "NONE"
allow := false if input.signature == "NONE"
`

// authz is a policy in package warden.authz with the rules given.
func authz(rules ...string) string {
	return "package warden.authz\n" + strings.Join(rules, "\n") + "\n"
}

// cachedEngine serves readsAllButTransaction from one tarball.
func cachedEngine(t *testing.T, size int, ttl time.Duration) *testEngine {
	t.Helper()
	return policyEngine(t, readsAllButTransaction, Options{CacheSize: size, CacheTTL: ttl})
}

// policyEngine serves one policy from a tarball, with opts.
func policyEngine(t *testing.T, rego string, opts Options) *testEngine {
	t.Helper()
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	writeTarball(t, path, build(t, "c1", policy(rego), nil))
	opts.Source = path
	e := newEngine(t, opts)
	e.mustLoad(t)
	return e
}

func fullInput() *Input {
	return &Input{
		Method: "GET", Path: "/items/42", RawPath: "/items/42", RawQuery: "a=1&b=2",
		Headers:     []Header{{Name: "accept", Value: "application/json"}, {Name: "x-tenant", Value: "blue"}},
		Transaction: "tx-1", Sender: "10.0.0.1",
		PeerID: "spiffe://example.org/a", PeerTrustDomain: "example.org",
		DestinationID: "spiffe://example.org/app",
		Token:         map[string]any{"sub": "alice"}, TokenKey: "tk-alice",
		Operation: &Operation{ID: "getItem", PathTemplate: "/items/{id}",
			PathParams: map[string]any{"id": int64(42)}, Key: "rev1|getItem|42"},
		Signature: &Signature{KeyID: "gateway-1", Alg: "ecdsa-p256-sha256", Created: 1700000000,
			Components: []string{"@method", "@target-uri"}},
	}
}

// Two inputs share a decision exactly when they agree on every field the
// policy reads.
func TestCacheKeyCoversWhatThePolicyReads(t *testing.T) {
	variants := []struct {
		name   string
		change func(in *Input)
	}{
		{"another transaction", func(in *Input) { in.Transaction = "tx-2" }},
		{"another method", func(in *Input) { in.Method = "POST" }},
		{"another path", func(in *Input) { in.Path = "/items/43" }},
		{"another raw path", func(in *Input) { in.RawPath = "/items/%34%32" }},
		{"another query", func(in *Input) { in.RawQuery = "a=1&b=3" }},
		{"another header value", func(in *Input) {
			in.Headers = []Header{{Name: "accept", Value: "application/json"}, {Name: "x-tenant", Value: "red"}}
		}},
		{"another header name", func(in *Input) {
			in.Headers = []Header{{Name: "accept", Value: "application/json"}, {Name: "x-tenanT", Value: "blue"}}
		}},
		{"one more header", func(in *Input) { in.Headers = append(in.Headers, Header{Name: "x-extra", Value: ""}) }},
		{"a header split differently", func(in *Input) {
			in.Headers = []Header{{Name: "accept", Value: "application/jsonx-tenant"}, {Name: "", Value: "blue"}}
		}},
		{"a header repeated", func(in *Input) { in.Headers = append(in.Headers, Header{Name: "x-tenant", Value: ""}) }},
		{"a header emptied", func(in *Input) {
			in.Headers = []Header{{Name: "accept", Value: "application/json"}, {Name: "x-tenant", Value: ""}}
		}},
		{"another sender", func(in *Input) { in.Sender = "10.0.0.2" }},
		{"another peer id", func(in *Input) { in.PeerID = "spiffe://example.org/b" }},
		{"another peer trust domain", func(in *Input) { in.PeerTrustDomain = "example.com" }},
		{"another destination", func(in *Input) { in.DestinationID = "spiffe://example.org/other" }},
		{"another token key", func(in *Input) { in.TokenKey = "tk-bob" }},
		{"no token", func(in *Input) { in.Token, in.TokenKey = nil, "" }},
		{"another operation", func(in *Input) {
			in.Operation = &Operation{ID: "getItem", PathTemplate: "/items/{id}",
				PathParams: map[string]any{"id": int64(43)}, Key: "rev1|getItem|43"}
		}},
		{"no operation", func(in *Input) { in.Operation = nil }},
		{"another signing key", func(in *Input) {
			in.Signature = &Signature{KeyID: "gateway-2", Alg: "ecdsa-p256-sha256", Created: 1700000000, Components: []string{"@method", "@target-uri"}}
		}},
		{"fewer signed components", func(in *Input) {
			in.Signature = &Signature{KeyID: "gateway-1", Alg: "ecdsa-p256-sha256", Created: 1700000000, Components: []string{"@method"}}
		}},
		{"signed a second later", func(in *Input) {
			in.Signature = &Signature{KeyID: "gateway-1", Alg: "ecdsa-p256-sha256", Created: 1700000001, Components: []string{"@method", "@target-uri"}}
		}},
		{"unsigned", func(in *Input) { in.Signature = nil }},
	}
	all := func(but ...string) map[string]bool {
		m := map[string]bool{}
		for _, v := range variants {
			m[v.name] = !slices.Contains(but, v.name)
		}
		return m
	}
	some := func(names ...string) map[string]bool {
		m := map[string]bool{}
		for _, n := range names {
			m[n] = true
		}
		return m
	}
	headerChanges := []string{"another header value", "another header name", "one more header",
		"a header split differently", "a header repeated", "a header emptied"}
	policies := []struct {
		name    string
		rego    string
		differs map[string]bool // the variants that must not share the base input's decision
	}{
		{"every field but the transaction", readsAllButTransaction, all("another transaction")},
		{"the input as a whole", authz("allow if is_object(input)"), all()},
		{"method and path", authz(`allow if { input.method == "GET"; startswith(input.path, "/items/") }`),
			some("another method", "another path")},
		{"one header by name", authz(`allow if input.headers["x-tenant"] == "blue"`),
			some("another header value", "another header name", "a header split differently", "a header repeated", "a header emptied")},
		{"every header", authz("allow if count(input.headers) > 1"), some(headerChanges...)},
		{"the token", authz(`allow if input.token.sub == "alice"`), some("another token key", "no token")},
		{"the peer's trust domain", authz(`allow if input.peer.trust_domain == "example.org"`), some("another peer trust domain")},
		{"the transaction", authz(`allow if input.transaction != ""`), some("another transaction")},
		{"the operation", authz(`allow if input.operation.path_params.id == 42`), some("another operation", "no operation")},
		{"the signing key", authz(`allow if input.signature.key_id == "gateway-1"`),
			some("another signing key", "fewer signed components", "unsigned")},
		{"when it was signed", authz(`allow if input.signature.created > 0`),
			some("another signing key", "fewer signed components", "signed a second later", "unsigned")},
	}
	for _, p := range policies {
		t.Run(p.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "b.tar.gz")
			writeTarball(t, path, build(t, "k", policy(p.rego), nil))
			for _, v := range variants {
				e := newEngine(t, Options{Source: path, CacheSize: 100, CacheTTL: time.Minute})
				e.mustLoad(t)
				spec := &e.state.Load().key
				in := fullInput()
				v.change(in)
				if same := bytes.Equal(appendKey(nil, spec, in), appendKey(nil, spec, fullInput())); same == p.differs[v.name] {
					t.Errorf("%s: key shared = %v; want %v", v.name, same, !same)
				}
				decide(t, e.Engine, fullInput())
				if d := decide(t, e.Engine, in); d.Cached == p.differs[v.name] {
					t.Errorf("%s: Cached = %v; want %v", v.name, d.Cached, !d.Cached)
				}
			}
		})
	}
}

func TestCacheSkipsATokenWithoutKey(t *testing.T) {
	e := cachedEngine(t, 100, time.Minute)
	in := fullInput()
	in.TokenKey = ""
	decide(t, e.Engine, in)
	if d := decide(t, e.Engine, in); d.Cached {
		t.Fatal("a token without TokenKey was served from the cache")
	}
	// A policy that never reads the token decides the same whatever it is.
	e = policyEngine(t, authz(`allow if input.method == "GET"`), Options{CacheSize: 100, CacheTTL: time.Minute})
	decide(t, e.Engine, in)
	if d := decide(t, e.Engine, in); !d.Cached {
		t.Fatal("a policy that does not read the token is not cached for a token without TokenKey")
	}
}

// A decision on a parsed body is cached only when the policy gives it a
// cache_ttl_seconds, and then only for that very body.
func TestCacheParsedBodyOnlyWithExplicitTTL(t *testing.T) {
	withBody := func(raw string, v any) *Input {
		in := fullInput()
		in.ParsedBodyRaw, in.ParsedBody = raw, v
		return in
	}
	small := withBody(`{"amount":5}`, map[string]any{"amount": json.Number("5")})
	large := withBody(`{"amount":5000}`, map[string]any{"amount": json.Number("5000")})

	e := policyEngine(t, authz(`allow if input.parsed_body.amount < 100`), Options{CacheSize: 100, CacheTTL: time.Minute})
	for range 2 {
		if d := decide(t, e.Engine, small); !d.Allow || d.Cached {
			t.Fatalf("small amount, no cache_ttl_seconds: %+v, want allowed and never cached", d)
		}
	}
	if d := decide(t, e.Engine, large); d.Allow {
		t.Fatalf("large amount allowed: %+v", d)
	}

	e = policyEngine(t, authz(`default allow := {"allow": false, "cache_ttl_seconds": 60}`,
		`allow := {"allow": true, "cache_ttl_seconds": 60} if input.parsed_body.amount < 100`),
		Options{CacheSize: 100, CacheTTL: time.Minute})
	decide(t, e.Engine, small)
	if d := decide(t, e.Engine, small); !d.Allow || !d.Cached {
		t.Fatalf("same body with cache_ttl_seconds: %+v, want allowed from the cache", d)
	}
	if d := decide(t, e.Engine, large); d.Allow || d.Cached {
		t.Fatalf("another body got the cached decision: %+v", d)
	}

	// A policy that does not read the body caches as usual.
	e = policyEngine(t, authz(`allow if input.method == "GET"`), Options{CacheSize: 100, CacheTTL: time.Minute})
	decide(t, e.Engine, small)
	if d := decide(t, e.Engine, large); !d.Cached {
		t.Fatalf("a policy that does not read parsed_body: %+v, want cached", d)
	}
}

func TestCacheEntriesExpire(t *testing.T) {
	e := cachedEngine(t, 100, 20*time.Millisecond)
	in := fullInput()
	decide(t, e.Engine, in)
	if d := decide(t, e.Engine, in); !d.Cached {
		t.Fatal("not cached")
	}
	eventually(t, "the entry to expire", func() bool { return !decide(t, e.Engine, in).Cached })
}

func TestCacheTTLZeroCachesOnlyExplicitTTLs(t *testing.T) {
	e := cachedEngine(t, 100, 0)
	in := fullInput()
	decide(t, e.Engine, in)
	if d := decide(t, e.Engine, in); d.Cached {
		t.Fatal("cached without a TTL")
	}
}

func TestCacheSizeZeroDisablesTheCache(t *testing.T) {
	e := cachedEngine(t, 0, time.Minute)
	in := fullInput()
	for range 3 {
		if d := decide(t, e.Engine, in); d.Cached || !d.Allow {
			t.Fatalf("decision %+v", d)
		}
	}
}

func TestCacheIsBounded(t *testing.T) {
	for _, size := range []int{1, 10, 100, 5000} {
		e := cachedEngine(t, size, time.Minute)
		in := fullInput()
		for i := range 3 * size {
			in.Path = fmt.Sprintf("/items/%d", i)
			decide(t, e.Engine, in)
		}
		c := e.state.Load().cache
		if n := c.Len(); n > size || n < size/2 {
			t.Errorf("CacheSize %d holds %d entries", size, n)
		}
		// The most recent decision is cached.
		if d := decide(t, e.Engine, in); !d.Cached {
			t.Errorf("CacheSize %d: the last decision is not cached", size)
		}
	}
}

func TestCachedDecisionAllocatesNothing(t *testing.T) {
	e := cachedEngine(t, 100, time.Minute)
	in := fullInput()
	ctx := context.Background()
	decide(t, e.Engine, in)
	allocs := testing.AllocsPerRun(1000, func() {
		d, err := e.Decide(ctx, in)
		if err != nil || !d.Cached {
			t.Fatalf("not a cached decision: %+v %v", d, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a cached decision allocates %v times", allocs)
	}
}

// The cache copies what it keeps: a PEP reusing its buffers after Decide
// must not change a cached decision or key.
func TestCacheOwnsItsKeysAndDecisions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	writeTarball(t, path, build(t, "c1", policy(`package warden.authz
allow := {"allow": true, "reason": input.path, "headers": {"x-path": input.path}}`), nil))
	e := newEngine(t, Options{Source: path, CacheSize: 10, CacheTTL: time.Minute})
	e.mustLoad(t)
	buf := []byte("/original")
	in := fullInput()
	in.Path = string(buf) // stands in for a string aliasing a request buffer
	d1 := decide(t, e.Engine, in)
	in.Path = "/another"
	decide(t, e.Engine, in)
	in.Path = "/original"
	d2 := decide(t, e.Engine, in)
	if !d2.Cached || d2.Reason != "/original" || d2.Headers[0].Value != "/original" || d1.Reason != "/original" {
		t.Fatalf("decisions %+v, %+v", d1, d2)
	}
}

// A client sending distinct requests with large headers fills the cache up
// to CacheBytes, and what it holds is what it counts: the heap it keeps is
// not much more than CacheBytes, even when decisions quote the input.
func TestCacheIsBoundedInBytes(t *testing.T) {
	const limit = 4 << 20
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	writeTarball(t, path, build(t, "big", policy(`package warden.authz
allow := {"allow": true, "reason": input.path, "headers": {"x-tenant": input.headers["x-tenant"]}} if count(input.headers) > 0`), nil))
	e := newEngine(t, Options{Source: path, CacheSize: 100000, CacheBytes: limit, CacheTTL: time.Minute})
	e.mustLoad(t)
	filler := strings.Repeat("f", 14<<10)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 2000 {
		in := fullInput()
		in.Path = fmt.Sprintf("/items/%d", i)
		in.Headers = append(in.Headers, Header{Name: "x-filler", Value: filler})
		if d := decide(t, e.Engine, in); !d.Allow || d.Cached {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	c := e.state.Load().cache
	if n, size := c.Len(), c.Bytes(); size > limit || n < limit/(16<<10)/2 {
		t.Fatalf("the cache holds %d entries in %d bytes; want about %d bytes", n, size, limit)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > limit*3/2 {
		t.Fatalf("the heap grew by %d bytes for a cache of %d", grew, limit)
	}
}

// A decision counts its reason, headers and mask against CacheBytes: one
// larger than its shard's share is not cached.
func TestCacheRefusesADecisionLargerThanItsShard(t *testing.T) {
	c := cache.New[Decision](cache.Options{Entries: 10, Bytes: 1000})
	small := Decision{Allow: true}
	c.Put([]byte("small"), small, small.size(), time.Minute)
	for _, d := range []Decision{
		{Reason: strings.Repeat("r", 2000)},
		{Headers: []Header{{Name: "x-big", Value: strings.Repeat("v", 2000)}}},
		{Headers: make([]Header, 0, 100)},
		{Mask: []string{strings.Repeat("m", 2000)}},
	} {
		c.Put([]byte("k"), d, d.size(), time.Minute)
		if _, ok := c.Get([]byte("k")); ok {
			t.Errorf("a decision of %d bytes was cached in 1000", d.size())
		}
	}
	if _, ok := c.Get([]byte("small")); !ok {
		t.Fatal("a refused decision evicted another")
	}
}
