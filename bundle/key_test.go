package bundle

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/warden-sidecar/warden/internal/cache"
)

// Status.CacheKey shows what the compiled rules read of the input.
func TestCacheKeyFollowsTheRulesRefs(t *testing.T) {
	tests := []struct {
		name string
		rego string
		want []string
	}{
		{"nothing read", authz("allow := true"), nil},
		{"the benchmark policy", benchPolicy, []string{"method", "path", "peer.spiffe_id", "peer.trust_domain"}},
		{"a header by name", authz(`allow if input.headers["x-user"] == "alice"`), []string{"headers.x-user"}},
		{"headers by name, sorted, through an import", `package warden.authz
import input.headers as h
allow if { h["x-b"] == "1"; h["x-a"] == "2"; h["x-b"] != "3" }`, []string{"headers.x-a", "headers.x-b"}},
		{"a header by a computed name", authz(`allow if input.headers[lower("X-User")] == "alice"`), []string{"headers"}},
		{"headers iterated", authz(`allow if { some name, value in input.headers; name == value }`), []string{"headers"}},
		{"headers as a whole, and one by name", authz(`allow if input.headers["x-a"] == "1"`, `allow if count(input.headers) > 3`), []string{"headers"}},
		{"the peer as a whole", authz(`allow if input.peer == {"spiffe_id": "x", "trust_domain": "y"}`), []string{"peer.spiffe_id", "peer.trust_domain"}},
		{"a field this version does not know", authz(`allow if input.nothing == 1`), []string{"input"}},
		{"a token claim", authz(`allow if input.token.sub == "alice"`), []string{"token"}},
		{"a query parameter", authz(`allow if input.query.debug[0] == "1"`), []string{"query"}},
		{"a function's body", authz(`f(x) := x == input.sender`, `allow if f("10.0.0.1")`), []string{"sender"}},
		{"an else branch", authz(`allow := true if input.method == "GET" else := false if input.raw_path == "/"`), []string{"method", "raw_path"}},
		{"a rule's value", authz(`allow := {"allow": true, "headers": {"x-to": input.destination.spiffe_id}}`), []string{"destination"}},
		{"a ref inside a ref", authz(`allow if input.headers[input.query.h[0]] == "1"`), []string{"query", "headers"}},
		{"a template string", authz(`allow if $"{input.sender}" == "10.0.0.1"`), []string{"sender"}},
		{"the input assigned", authz(`allow if { x := input; x.method == "GET" }`), []string{"input"}},
		{"the input marshalled", authz(`allow if json.marshal(input) != ""`), []string{"input"}},
		{"the input replaced", authz(`p if input.method == "GET"`, `allow if p with input as {"method": "GET"}`), []string{"input"}},
		{"a field replaced", authz(`p if input.path == "/"`, `allow if p with input.method as "GET"`), []string{"method", "path"}},
		{"the input indexed by a variable", authz(`allow if { some k; input[k] == "GET" }`), []string{"input"}},
		{"the mask policy's event input", maskPolicy(`mask contains "/input/headers/x-api-key" if input.input.headers["x-api-key"]`,
			`mask contains "/input/token" if input.result.allow == false`), []string{"headers.x-api-key"}},
		{"the mask policy's whole event input", maskPolicy(`mask contains "/input/token" if count(input.input) > 0`), []string{"input"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"authz.rego": tt.rego}
			if strings.HasPrefix(tt.rego, "package system.log") {
				files = withMask(authz("allow := true"), tt.rego)
			}
			path := filepath.Join(t.TempDir(), "b.tar.gz")
			writeTarball(t, path, build(t, "k", files, nil))
			e := newEngine(t, Options{Source: path})
			e.mustLoad(t)
			if got := e.Status().CacheKey; !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("CacheKey = %q; want %q", got, tt.want)
			}
		})
	}
}

// maskPolicy is a policy in package system.log with the rules given.
func maskPolicy(rules ...string) string {
	return "package system.log\n" + strings.Join(rules, "\n") + "\n"
}

// withMask is the files of a bundle with both policies.
func withMask(authz, mask string) map[string]string {
	return map[string]string{
		".manifest":  `{"roots": ["warden", "system/log"]}`,
		"authz.rego": authz,
		"log.rego":   mask,
	}
}

// A policy that reads the method and the path decides once for requests
// that differ only in their headers; one that reads a header decides for
// each of its values, and never hands one value's decision to another.
func TestPolicyAwareKeyIgnoresHeadersThePolicyDoesNotRead(t *testing.T) {
	stream := func(i int) *Input {
		in := request("GET", "/api/items")
		in.Headers = []Header{
			{Name: "user-agent", Value: fmt.Sprintf("client/%d", i%7)},
			{Name: "x-client-seq", Value: fmt.Sprint(i)},
			{Name: "content-length", Value: fmt.Sprint(100 + i)},
		}
		return in
	}
	opts := Options{CacheSize: 1000, CacheTTL: time.Minute}

	e := policyEngine(t, authz(`allow if { input.method == "GET"; startswith(input.path, "/api/") }`), opts)
	hits := 0
	for i := range 100 {
		d := decide(t, e.Engine, stream(i))
		if !d.Allow {
			t.Fatalf("request %d denied", i)
		}
		if d.Cached {
			hits++
		}
	}
	if hits != 99 {
		t.Fatalf("%d hits in 100 requests differing only in headers; want 99", hits)
	}

	e = policyEngine(t, authz(`allow if input.headers["user-agent"] == "client/3"`), opts)
	hits = 0
	for i := range 100 {
		d := decide(t, e.Engine, stream(i))
		if d.Allow != (i%7 == 3) {
			t.Fatalf("request %d with user-agent client/%d: allow = %v", i, i%7, d.Allow)
		}
		if d.Cached {
			hits++
		}
	}
	if hits != 100-7 {
		t.Fatalf("%d hits for 7 user agents in 100 requests; want 93", hits)
	}
}

// BenchmarkCacheHitRatio replays a stream like the benchmark's load: one
// client, one method, path and peer, and headers that vary per request (a
// user agent among a few, the client's request counter, a content length),
// keyed as before (every field but the transaction) and on what the
// benchmark policy reads. The counter makes every request distinct, as a
// real one would; it is written into a reused buffer, as the PEP's strings
// alias its request buffers.
func BenchmarkCacheHitRatio(b *testing.B) {
	agents := make([]string, 16)
	for i := range agents {
		agents[i] = fmt.Sprintf("loadgen/1.%d", i)
	}
	lengths := make([]string, 512)
	for i := range lengths {
		lengths[i] = fmt.Sprint(64 + i)
	}
	everyFieldButTransaction := keySpec{fields: fInput &^ fTransaction}
	for _, tt := range []struct {
		name string
		key  func(c *compiled) keySpec
	}{
		{"whole-input", func(*compiled) keySpec { return everyFieldButTransaction }},
		{"policy-aware", func(c *compiled) keySpec { return c.key }},
	} {
		b.Run(tt.name, func(b *testing.B) {
			e := benchEngine(b, 10000)
			c := *e.state.Load()
			c.key = tt.key(&c)
			c.cache = cache.New[Decision](cache.Options{Entries: 10000, Bytes: 32 << 20})
			e.state.Store(&c)
			in := benchInput()
			agent := slices.IndexFunc(in.Headers, func(h Header) bool { return h.Name == "user-agent" })
			n := len(in.Headers)
			in.Headers = append(in.Headers, Header{Name: "x-client-seq"}, Header{Name: "content-length"})
			var seq [20]byte
			ctx := context.Background()
			hits, i := 0, 0
			b.ReportAllocs()
			for b.Loop() {
				counter := strconv.AppendInt(seq[:0], int64(i), 10)
				in.Headers[agent].Value = agents[i%len(agents)]
				in.Headers[n].Value = unsafe.String(&counter[0], len(counter))
				in.Headers[n+1].Value = lengths[i%len(lengths)]
				in.Transaction = in.Headers[n].Value
				d, err := e.Decide(ctx, in)
				if err != nil || !d.Allow {
					b.Fatalf("%+v %v", d, err)
				}
				if d.Cached {
					hits++
				}
				i++
			}
			b.ReportMetric(float64(hits)/float64(i), "hit-ratio")
		})
	}
}

// Every top-level field of the input document has its own place in the
// key: a field added to inputValue but not to keySpec.read falls back to
// keying the whole input, which this test reports as a field to add.
func TestKeySpecKnowsEveryInputField(t *testing.T) {
	in := Input{Method: "GET", Path: "/", RawPath: "/", RawQuery: "a=1", Headers: []Header{{Name: "x", Value: "1"}},
		Transaction: "t", Sender: "10.0.0.1", PeerID: "spiffe://td/p", PeerTrustDomain: "td",
		DestinationID: "spiffe://td/d", Token: map[string]any{"sub": "alice"}, TokenKey: "k",
		Operation:  &Operation{ID: "op", PathTemplate: "/", Key: "k"},
		ParsedBody: map[string]any{"a": true}, ParsedBodyRaw: `{"a":true}`,
		Signature: &Signature{KeyID: "k", Alg: "ed25519", Created: 1, Components: []string{"@method"}},
		GRPC:      &GRPC{Service: "pkg.Svc", Method: "Get"}}
	v, err := inputValue(&in)
	if err != nil {
		t.Fatal(err)
	}
	obj := v.(ast.Object)
	if obj.Len() < 14 {
		t.Fatalf("input document has %d fields", obj.Len())
	}
	obj.Foreach(func(key, _ *ast.Term) {
		var k keySpec
		k.read(ast.Ref{key}, map[string]bool{})
		if k.fields == fInput {
			t.Errorf("input field %v is not known to keySpec.read: a rule reading it would key the whole input", key)
		}
	})
}
