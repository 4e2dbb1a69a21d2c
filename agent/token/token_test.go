package token

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/warden-sidecar/warden/agent/token/tokentest"
)

const (
	issuer   = "https://sts.example.test"
	audience = "orders"
)

// testKeys are generated once: RSA keys take a while.
var testKeys = map[string]*tokentest.Key{}

func key(tb testing.TB, alg string) *tokentest.Key {
	tb.Helper()
	if k, ok := testKeys[alg]; ok {
		return k
	}
	k := tokentest.NewKey(tb, alg, "kid-"+strings.ToLower(alg))
	testKeys[alg] = k
	return k
}

// keysOf is a static key set of the public halves.
func keysOf(ks ...*tokentest.Key) StaticKeys {
	out := StaticKeys{}
	for _, k := range ks {
		out[k.KID] = Key{Public: k.Private.Public(), Alg: k.Alg}
	}
	return out
}

func newVerifier(tb testing.TB, keys Keys, mod ...func(*Options)) *Verifier {
	tb.Helper()
	opts := Options{Keys: keys, Issuers: []string{issuer}, Audiences: []string{audience, "other"}, ClockSkew: 30 * time.Second}
	for _, m := range mod {
		m(&opts)
	}
	v, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func claims(sub string, mod ...func(map[string]any)) map[string]any {
	c := tokentest.Claims(issuer, sub, audience, time.Hour)
	for _, m := range mod {
		m(c)
	}
	return c
}

func set(name string, v any) func(map[string]any) {
	return func(c map[string]any) { c[name] = v }
}

func TestValidTokensAreAccepted(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA", "PS256"} {
		t.Run(alg+" token is accepted", func(t *testing.T) {
			k := key(t, alg)
			v := newVerifier(t, keysOf(k))
			vt, err := v.Verify([]byte(k.Mint(t, claims("alice"))))
			if err != nil {
				t.Fatal(err)
			}
			if vt.Claims["sub"] != "alice" || vt.Claims["user"] != "alice" || vt.Claims["iss"] != issuer {
				t.Errorf("claims %v", vt.Claims)
			}
			if len(vt.Key) != 32 || !json.Valid(vt.JSON) {
				t.Errorf("key %x json %s", vt.Key, vt.JSON)
			}
		})
	}
}

// Every refusal carries the reason the operator's log shows.
func TestInvalidTokensAreRefusedWithTheirReason(t *testing.T) {
	rs, es, ed := key(t, "RS256"), key(t, "ES256"), key(t, "EdDSA")
	es384 := key(t, "ES384")
	v := newVerifier(t, keysOf(rs, es, ed, es384))
	now := time.Now()
	pubDER, _ := x509.MarshalPKIXPublicKey(rs.Private.Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	valid := rs.Mint(t, claims("alice"))
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + b64json(t, claims("admin")) + "." + parts[2]

	tests := []struct {
		name  string
		token string
		want  Reason
	}{
		{"expired token is refused", rs.Mint(t, claims("alice", set("exp", now.Add(-time.Minute).Unix()))), ReasonExpired},
		{"token expired within the clock skew is accepted", rs.Mint(t, claims("alice", set("exp", now.Add(-10*time.Second).Unix()))), ""},
		{"token not valid yet is refused", es.Mint(t, claims("alice", set("nbf", now.Add(time.Minute).Unix()))), ReasonNotYetValid},
		{"token issued in the future is refused", es.Mint(t, claims("alice", set("iat", now.Add(time.Minute).Unix()))), ReasonNotYetValid},
		{"token valid within the clock skew is accepted", es.Mint(t, claims("alice", set("nbf", now.Add(10*time.Second).Unix()))), ""},
		{"wrong issuer is refused", ed.Mint(t, claims("alice", set("iss", "https://evil.test"))), ReasonIssuer},
		{"missing issuer is refused", ed.Mint(t, claims("alice", func(c map[string]any) { delete(c, "iss") })), ReasonIssuer},
		{"wrong audience is refused", ed.Mint(t, claims("alice", set("aud", "payments"))), ReasonAudience},
		{"missing audience is refused", ed.Mint(t, claims("alice", func(c map[string]any) { delete(c, "aud") })), ReasonAudience},
		{"one accepted audience in a list is enough", ed.Mint(t, claims("alice", set("aud", []string{"payments", "other"}))), ""},
		{"unknown kid is refused", rs.MintAs(t, "RS256", "rotated-away", claims("alice")), ReasonUnknownKID},
		{"kid path traversal is just an unknown kid", rs.MintAs(t, "RS256", "../../../../etc/passwd", claims("alice")), ReasonUnknownKID},
		{"kid URL is just an unknown kid", rs.MintAs(t, "RS256", "https://evil.test/jwks.json", claims("alice")), ReasonUnknownKID},
		{"missing kid is refused", rs.MintAs(t, "RS256", "", claims("alice")), ReasonMalformed},
		{"tampered payload is refused", tampered, ReasonBadSignature},
		{"signature of another key under this kid is refused", es.MintAs(t, "ES256", ed.KID, claims("alice")), ReasonAlgorithm},
		{"signature by another key of the same type is refused", tokentest.NewKey(t, "ES256", es.KID).Mint(t, claims("alice")), ReasonBadSignature},
		{"alg none is refused", tokentest.Unsigned(t, rs.KID, claims("alice")), ReasonAlgorithm},
		{"HS256 with the public key as secret is refused", tokentest.MintHMAC(t, pubPEM, rs.KID, claims("alice")), ReasonAlgorithm},
		{"HS256 with the DER public key as secret is refused", tokentest.MintHMAC(t, pubDER, rs.KID, claims("alice")), ReasonAlgorithm},
		{"algorithm not in the allowed list is refused", es384.Mint(t, claims("alice")), ReasonAlgorithm},
		{"PS256 header on a key restricted to RS256 is refused", rs.MintAs(t, "PS256", rs.KID, claims("alice")), ReasonAlgorithm},
		{"oversized token is refused before parsing", rs.Mint(t, claims("alice", set("pad", strings.Repeat("x", MaxTokenBytes)))), ReasonOversized},
		{"token of garbage is malformed", "not-a-jwt", ReasonMalformed},
		{"token with two parts is malformed", parts[0] + "." + parts[1], ReasonMalformed},
		{"token with four parts is malformed", valid + ".x", ReasonMalformed},
		{"JSON serialization is malformed", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, ReasonMalformed},
		{"token without exp is malformed", rs.Mint(t, claims("alice", func(c map[string]any) { delete(c, "exp") })), ReasonMalformed},
		{"exp that is a string is malformed", rs.Mint(t, claims("alice", set("exp", "tomorrow"))), ReasonMalformed},
		{"exp out of range is malformed", rs.Mint(t, claims("alice", set("exp", 1e300))), ReasonMalformed},
		{"sub that is a number is malformed", rs.Mint(t, claims("alice", set("sub", 42))), ReasonMalformed},
		{"aud holding a number is malformed", rs.Mint(t, claims("alice", set("aud", []any{audience, 1}))), ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vt, err := v.Verify([]byte(tt.token))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var te *Error
			if !errors.As(err, &te) || te.Reason != tt.want {
				t.Fatalf("got %v (%v), want reason %s", err, vt, tt.want)
			}
			if strings.Contains(te.Error(), tt.token) && len(tt.token) > 20 {
				t.Errorf("error holds the token: %v", te)
			}
		})
	}
}

func b64json(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Keycloak's tokens name the user preferred_username and keep roles under
// realm_access; scopes are one space-separated string.
func TestClaimsAreNormalized(t *testing.T) {
	k := key(t, "ES256")
	v := newVerifier(t, keysOf(k))
	tests := []struct {
		name   string
		claims map[string]any
		want   map[string]any
	}{
		{"Keycloak token", claims("f:1234", set("preferred_username", "alice"), set("name", "Alice A."),
			set("realm_access", map[string]any{"roles": []string{"teller", "offline_access"}}),
			set("groups", []string{"/staff"}), set("scope", "openid accounts:write"), set("aud", "orders")),
			map[string]any{"user": "alice", "sub": "f:1234", "name": "Alice A.", "roles": []any{"teller", "offline_access"},
				"scope": []any{"openid", "accounts:write"}, "aud": []any{"orders"}}},
		{"roles claim wins over groups", claims("bob", set("roles", []string{"admin"}), set("groups", []string{"g"})),
			map[string]any{"user": "bob", "roles": []any{"admin"}, "scope": []any{}}},
		{"groups when nothing else", claims("carol", set("groups", []string{"g1", "g2"}), set("scp", []string{"read"})),
			map[string]any{"user": "carol", "roles": []any{"g1", "g2"}, "scope": []any{"read"}}},
		{"no roles and no scope are empty lists", claims("dave"),
			map[string]any{"user": "dave", "roles": []any{}, "scope": []any{}, "aud": []any{"orders"}}},
		{"fractional times are whole seconds", claims("erin", set("exp", float64(time.Now().Add(time.Hour).Unix())+0.75)),
			map[string]any{"user": "erin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vt, err := v.Verify([]byte(k.Mint(t, tt.claims)))
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tt.want {
				if got := vt.Claims[name]; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s = %#v, want %#v", name, got, want)
				}
			}
			for _, name := range []string{"exp", "iat", "nbf"} {
				if _, ok := vt.Claims[name].(int64); !ok {
					t.Errorf("%s is %T, want int64", name, vt.Claims[name])
				}
			}
			var fromJSON map[string]any
			if err := json.Unmarshal(vt.JSON, &fromJSON); err != nil || len(fromJSON) != len(vt.Claims) {
				t.Errorf("JSON %s does not hold the claims: %v", vt.JSON, err)
			}
			if _, ok := vt.Claims["realm_access"]; ok != (tt.claims["realm_access"] != nil) {
				t.Errorf("the original claims are not all kept: %v", vt.Claims)
			}
		})
	}
}

// The digest is what keeps two users from sharing a cached decision.
func TestKeyDiffersByClaimsOnly(t *testing.T) {
	k := key(t, "ES256")
	v := newVerifier(t, keysOf(k))
	c := claims("alice")
	a1, err := v.Verify([]byte(k.Mint(t, c)))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := v.Verify([]byte(k.Mint(t, c))) // another signature (ECDSA is randomized), same claims
	if err != nil {
		t.Fatal(err)
	}
	c["sub"] = "bob"
	b, err := v.Verify([]byte(k.Mint(t, c)))
	if err != nil {
		t.Fatal(err)
	}
	if a1 == a2 || a1.Key != a2.Key {
		t.Errorf("same claims, another token: want another entry with the same key")
	}
	if a1.Key == b.Key {
		t.Errorf("alice and bob share a key")
	}
}

// A repeated token costs a map lookup and no allocation; it expires from
// the cache with exp, and a change of keys makes it verified again.
func TestCachedVerification(t *testing.T) {
	k := key(t, "ES256")
	keys := &changingKeys{StaticKeys: keysOf(k)}
	now := time.Now()
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	v := newVerifier(t, keys, func(o *Options) { o.Now = func() time.Time { return *clock.Load() } })
	raw := []byte(k.Mint(t, claims("alice", set("exp", now.Add(time.Minute).Unix()))))

	first, err := v.Verify(raw)
	if err != nil {
		t.Fatal(err)
	}
	again, err := v.Verify(append([]byte(nil), raw...))
	if err != nil || again != first {
		t.Fatalf("second verification %p %v, want the cached %p", again, err, first)
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = v.Verify(raw) }); allocs != 0 {
		t.Errorf("cached verification allocates %.0f times", allocs)
	}

	later := now.Add(time.Minute + 31*time.Second) // exp + skew passed
	clock.Store(&later)
	if _, err := v.Verify(raw); ReasonOf(err) != ReasonExpired {
		t.Errorf("cached token past exp: %v, want expired", err)
	}
	clock.Store(&now)

	delete(keys.StaticKeys, k.KID)
	keys.gen.Add(1)
	if _, err := v.Verify(raw); ReasonOf(err) != ReasonUnknownKID {
		t.Errorf("cached token after its key was removed: %v, want unknown_kid", err)
	}
}

type changingKeys struct {
	StaticKeys
	gen atomic.Uint64
}

func (c *changingKeys) Generation() uint64 { return c.gen.Load() }

func TestCacheIsBounded(t *testing.T) {
	k := key(t, "EdDSA")
	v := newVerifier(t, keysOf(k), func(o *Options) { o.CacheSize = 10 })
	for i := range 50 {
		if _, err := v.Verify([]byte(k.Mint(t, claims(fmt.Sprint("user", i))))); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.cache.Len(); n > 10 {
		t.Errorf("cache holds %d tokens, limit 10", n)
	}
}

// JWT-SVIDs: the key comes from the bundle of the subject's trust domain,
// and a key of another trust domain never verifies it.
func TestSPIFFEKeys(t *testing.T) {
	k := key(t, "ES256")
	td := spiffeid.RequireTrustDomainFromString("warden.test")
	other := spiffeid.RequireTrustDomainFromString("partner.test")
	bundles := &genBundles{Set: jwtbundle.NewSet(
		jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{k.KID: k.Private.Public()}),
		jwtbundle.FromJWTAuthorities(other, map[string]crypto.PublicKey{}),
	)}
	v := newVerifier(t, SPIFFEKeys(bundles), func(o *Options) { o.Issuers = nil })
	svid := func(sub string) []byte {
		c := claims(sub)
		delete(c, "iss") // JWT-SVIDs need none
		return []byte(k.Mint(t, c))
	}
	if vt, err := v.Verify(svid("spiffe://warden.test/ns/shop/sa/frontend")); err != nil || vt.Claims["user"] != "spiffe://warden.test/ns/shop/sa/frontend" {
		t.Fatalf("JWT-SVID: %v %v", vt, err)
	}
	for sub, want := range map[string]Reason{
		"spiffe://partner.test/ns/x/sa/y": ReasonUnknownKID, // signed with warden.test's key
		"spiffe://nowhere.test/a":         ReasonUnknownKID,
		"alice":                           ReasonMalformed,
	} {
		if _, err := v.Verify(svid(sub)); ReasonOf(err) != want {
			t.Errorf("sub %s: %v, want %s", sub, err, want)
		}
	}
}

type genBundles struct{ *jwtbundle.Set }

func (*genBundles) Generation() uint64 { return 0 }

func TestOptionsAreChecked(t *testing.T) {
	keys := StaticKeys{}
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{Keys: keys, Audiences: []string{"a"}, Algorithms: []string{"none"}}, `algorithm "none" is refused`},
		{Options{Keys: keys, Audiences: []string{"a"}, Algorithms: []string{"RS256", "HS256"}}, `algorithm "HS256" is refused`},
		{Options{Keys: keys, Audiences: []string{"a"}, Algorithms: []string{"RSA-OAEP"}}, `algorithm "RSA-OAEP" is not supported`},
		{Options{Keys: keys}, "no audiences"},
		{Options{Audiences: []string{"a"}}, "no keys"},
	} {
		if _, err := New(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v): %v, want %q", tt.opts, err, tt.want)
		}
	}
}

// With JWTSVID, a token follows go-spiffe's svid/jwtsvid rules: typ absent,
// "JWT" or "JOSE"; sub a SPIFFE ID; an algorithm of the JWT-SVID list. The
// same tokens pass a verifier without the option, so each refusal is the
// option's.
func TestJWTSVIDRules(t *testing.T) {
	es, rs, ed := key(t, "ES256"), key(t, "RS256"), key(t, "EdDSA")
	keys := keysOf(es, rs, ed)
	noIss := func(o *Options) { o.Issuers = nil }
	svidRules := newVerifier(t, keys, noIss, func(o *Options) { o.JWTSVID = true })
	plain := newVerifier(t, keys, noIss)
	const id = "spiffe://warden.test/ns/shop/sa/frontend"
	svid := func(mod ...func(map[string]any)) map[string]any {
		c := claims(id, mod...)
		delete(c, "iss")
		return c
	}
	noSub := func(c map[string]any) { delete(c, "sub") }

	tests := []struct {
		name      string
		token     string
		want      Reason // with JWTSVID
		plainWant Reason // without
	}{
		{"typ JWT is accepted", es.MintTyp(t, "JWT", svid()), "", ""},
		{"typ JOSE is accepted", es.MintTyp(t, "JOSE", svid()), "", ""},
		{"no typ is accepted", es.MintTyp(t, nil, svid()), "", ""},
		{"RS256 is accepted", rs.MintTyp(t, "JWT", svid()), "", ""},
		{"typ at+jwt is refused as malformed", es.MintTyp(t, "at+jwt", svid()), ReasonMalformed, ""},
		{"typ jwt in lower case is refused, as go-spiffe does", es.MintTyp(t, "jwt", svid()), ReasonMalformed, ""},
		{"typ that is a number is refused", es.MintTyp(t, 1, svid()), ReasonMalformed, ""},
		{"sub that is not a SPIFFE ID is refused", es.Mint(t, svid(set("sub", "alice"))), ReasonMalformed, ""},
		{"sub of another scheme is refused", es.Mint(t, svid(set("sub", "https://warden.test/ns/shop"))), ReasonMalformed, ""},
		{"empty sub is refused", es.Mint(t, svid(set("sub", ""))), ReasonMalformed, ""},
		{"missing sub is refused", es.Mint(t, svid(noSub)), ReasonMalformed, ""},
		{"sub that is a number is refused", es.Mint(t, svid(set("sub", 7))), ReasonMalformed, ReasonMalformed},
		{"EdDSA is not a JWT-SVID algorithm", ed.Mint(t, svid()), ReasonAlgorithm, ""},
		{"missing exp is refused", es.Mint(t, svid(func(c map[string]any) { delete(c, "exp") })), ReasonMalformed, ReasonMalformed},
		{"expired JWT-SVID is refused", es.Mint(t, svid(set("exp", time.Now().Add(-time.Hour).Unix()))), ReasonExpired, ReasonExpired},
		{"JWT-SVID for another audience is refused", es.Mint(t, svid(set("aud", "payments"))), ReasonAudience, ReasonAudience},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				v    *Verifier
				want Reason
				name string
			}{{svidRules, tt.want, "JWTSVID"}, {plain, tt.plainWant, "plain"}} {
				vt, err := c.v.Verify([]byte(tt.token))
				switch {
				case c.want == "" && err != nil:
					t.Errorf("%s: refused: %v", c.name, err)
				case c.want != "" && err == nil:
					t.Errorf("%s: accepted (%v), want reason %s", c.name, vt.Claims, c.want)
				case c.want != "" && ReasonOf(err) != c.want:
					t.Errorf("%s: got %v (%v), want reason %s", c.name, err, vt, c.want)
				case c.want == ReasonMalformed && !strings.HasPrefix(err.Error(), "token: malformed: "):
					t.Errorf("%s: error %q", c.name, err)
				}
			}
		})
	}
}

// The JWT-SVID rules hold with the Workload API's keys as with any others.
func TestJWTSVIDWithSPIFFEKeys(t *testing.T) {
	k := key(t, "ES256")
	td := spiffeid.RequireTrustDomainFromString("warden.test")
	bundles := &genBundles{Set: jwtbundle.NewSet(jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{k.KID: k.Private.Public()}))}
	v := newVerifier(t, SPIFFEKeys(bundles), func(o *Options) { o.Issuers, o.JWTSVID = nil, true })
	c := claims("spiffe://warden.test/ns/shop/sa/frontend")
	delete(c, "iss")
	if _, err := v.Verify([]byte(k.Mint(t, c))); err != nil {
		t.Fatalf("JWT-SVID: %v", err)
	}
	if _, err := v.Verify([]byte(k.MintTyp(t, "secevent+jwt", c))); err == nil || ReasonOf(err) != ReasonMalformed || !strings.Contains(err.Error(), `typ "secevent+jwt"`) {
		t.Fatalf("JWT-SVID with typ secevent+jwt: %v", err)
	}
}

func TestJWTSVIDNeedsAJWTSVIDAlgorithm(t *testing.T) {
	_, err := New(Options{Keys: StaticKeys{}, Audiences: []string{"a"}, Algorithms: []string{"EdDSA"}, JWTSVID: true})
	if err == nil || err.Error() != "token: JWT-SVIDs: none of the allowed algorithms (EdDSA) may sign one (RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512)" {
		t.Fatalf("EdDSA only, JWT-SVID: %v", err)
	}
	if _, err := New(Options{Keys: StaticKeys{}, Audiences: []string{"a"}, Algorithms: []string{"EdDSA", "ES256"}, JWTSVID: true}); err != nil {
		t.Fatalf("EdDSA and ES256, JWT-SVID: %v", err)
	}
}
