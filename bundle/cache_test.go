package bundle

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// cachedEngine serves a policy that allows everything from one tarball.
func cachedEngine(t *testing.T, size int, ttl time.Duration) *testEngine {
	t.Helper()
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	writeTarball(t, path, build(t, "c1", policy("package warden.authz\nallow := true\n"), nil))
	e := newEngine(t, Options{Source: path, CacheSize: size, CacheTTL: ttl})
	e.mustLoad(t)
	return e
}

func fullInput() *Input {
	return &Input{
		Method: "GET", Path: "/items/42", RawPath: "/items/42", RawQuery: "a=1&b=2",
		Headers:     []Header{{"accept", "application/json"}, {"x-tenant", "blue"}},
		Transaction: "tx-1", Sender: "10.0.0.1",
		PeerID: "spiffe://example.org/a", PeerTrustDomain: "example.org",
		DestinationID: "spiffe://example.org/app",
		Token:         map[string]any{"sub": "alice"}, TokenKey: "tk-alice",
	}
}

func TestCacheKeyCoversEveryFieldButTransaction(t *testing.T) {
	variants := []struct {
		name   string
		change func(in *Input)
		shared bool
	}{
		{"another transaction", func(in *Input) { in.Transaction = "tx-2" }, true},
		{"another method", func(in *Input) { in.Method = "POST" }, false},
		{"another path", func(in *Input) { in.Path = "/items/43" }, false},
		{"another raw path", func(in *Input) { in.RawPath = "/items/%34%32" }, false},
		{"another query", func(in *Input) { in.RawQuery = "a=1&b=3" }, false},
		{"another header value", func(in *Input) { in.Headers = []Header{{"accept", "application/json"}, {"x-tenant", "red"}} }, false},
		{"another header name", func(in *Input) { in.Headers = []Header{{"accept", "application/json"}, {"x-tenanT", "blue"}} }, false},
		{"one more header", func(in *Input) { in.Headers = append(in.Headers, Header{"x-extra", ""}) }, false},
		{"a header split differently", func(in *Input) { in.Headers = []Header{{"accept", "application/jsonx-tenant"}, {"", "blue"}} }, false},
		{"another sender", func(in *Input) { in.Sender = "10.0.0.2" }, false},
		{"another peer id", func(in *Input) { in.PeerID = "spiffe://example.org/b" }, false},
		{"another peer trust domain", func(in *Input) { in.PeerTrustDomain = "example.com" }, false},
		{"another destination", func(in *Input) { in.DestinationID = "spiffe://example.org/other" }, false},
		{"another token key", func(in *Input) { in.TokenKey = "tk-bob" }, false},
		{"no token", func(in *Input) { in.Token, in.TokenKey = nil, "" }, false},
	}
	base := appendKey(nil, fullInput())
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			in := fullInput()
			v.change(in)
			if same := bytes.Equal(appendKey(nil, in), base); same != v.shared {
				t.Fatalf("key shared = %v; want %v", same, v.shared)
			}
			e := cachedEngine(t, 100, time.Minute)
			decide(t, e.Engine, fullInput())
			if d := decide(t, e.Engine, in); d.Cached != v.shared {
				t.Fatalf("Cached = %v; want %v", d.Cached, v.shared)
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
		if n := c.len(); n > size || n < size/2 {
			t.Errorf("CacheSize %d holds %d entries", size, n)
		}
		// The most recent decision is cached.
		if d := decide(t, e.Engine, in); !d.Cached {
			t.Errorf("CacheSize %d: the last decision is not cached", size)
		}
	}
}

// A hash collision must not hand one input another's decision.
func TestCacheComparesKeysOnHit(t *testing.T) {
	c := newCache(10)
	c.put(7, []byte("key-a"), Decision{Allow: true}, time.Minute)
	if _, ok := c.get(7, []byte("key-b")); ok {
		t.Fatal("a different key with the same hash hit")
	}
	if d, ok := c.get(7, []byte("key-a")); !ok || !d.Allow {
		t.Fatal("the stored key missed")
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
