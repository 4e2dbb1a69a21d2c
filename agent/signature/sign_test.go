package signature

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/token"
)

// What Signer adds verifies, for every key type, and says what the issue
// asks: the default components, created, keyid, alg.
func TestSignVerifyRoundTrip(t *testing.T) {
	k := fixtureKeys(t)
	const spiffeID = "spiffe://example.org/ns/default/sa/api"
	keys := token.StaticKeys{}
	for kid, key := range k.set {
		keys[kid] = key
	}
	keys[spiffeID] = token.Key{Public: k.ec.Public()}
	for _, tc := range []struct {
		name, keyID, alg string
		signer           func() (*Signer, error)
	}{
		{"ed25519", "ed", "ed25519", func() (*Signer, error) { return NewSigner(k.ed, "ed", nil, at(t0)) }},
		{"ecdsa-p256-sha256", "ec", "ecdsa-p256-sha256", func() (*Signer, error) { return NewSigner(k.ec, "ec", nil, at(t0)) }},
		{"ecdsa-p384-sha384", "p384", "ecdsa-p384-sha384", func() (*Signer, error) { return NewSigner(k.p384, "p384", nil, at(t0)) }},
		{"rsa-pss-sha512", "rsa", "rsa-pss-sha512", func() (*Signer, error) { return NewSigner(k.rsa, "rsa", nil, at(t0)) }},
		{"hmac-sha256", "hmac", "hmac-sha256", func() (*Signer, error) { return NewHMACSigner(k.secret, "hmac", nil, at(t0)) }},
		{"an SVID's key, keyid the SPIFFE ID", spiffeID, "ecdsa-p256-sha256", func() (*Signer, error) {
			return NewSigner(k.ec, spiffeID, nil, at(t0))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.signer()
			if err != nil {
				t.Fatal(err)
			}
			hs, err := s.Sign(testRequest())
			if err != nil {
				t.Fatal(err)
			}
			if len(hs) != 3 || hs[0].Name != "Content-Digest" || hs[1].Name != "Signature-Input" || hs[2].Name != "Signature" {
				t.Fatalf("fields %v", hs)
			}
			in := hs[1].Value
			wantPrefix := `warden=("@method" "@target-uri" "@authority" "content-digest" "authorization");created=1760000000;keyid="` +
				tc.keyID + `";alg="` + tc.alg + `";nonce="`
			if !strings.HasPrefix(in, wantPrefix) {
				t.Errorf("Signature-Input %s\nwant it to start %s", in, wantPrefix)
			}
			v := newTestVerifier(t, Options{Keys: keys, Required: true, Now: at(t0 + 1)})
			got, err := v.Verify(apply(testRequest(), hs))
			if err != nil {
				t.Fatal(err)
			}
			want := Verified{KeyID: tc.keyID, Alg: tc.alg, Created: t0, Components: DefaultComponents}
			if !equalVerified(got, &want) {
				t.Errorf("Verified %+v, want %+v", *got, want)
			}
		})
	}
}

// The components a Signer covers depend on the request: content-digest
// with a body, a field when the request has it; and its own Content-Digest
// replaces one the request brought.
func TestSignCoversWhatTheRequestHas(t *testing.T) {
	k := fixtureKeys(t)
	s, err := NewSigner(k.ed, "ed", []string{"@method", "@path", "@query", "Content-Digest", "authorization", "x-tenant"}, at(t0))
	if err != nil {
		t.Fatal(err)
	}
	v := newTestVerifier(t, Options{Keys: k.set, Required: true, Now: at(t0 + 1),
		Components: []string{"@method", "@path", "@query", "content-digest", "authorization", "x-tenant"}})
	for _, tc := range []struct {
		name  string
		req   *Request
		comps string
	}{
		{"a body and a token", testRequest(), `"@method" "@path" "@query" "content-digest" "authorization"`},
		{"no body", func() *Request { r := testRequest(); r.Method, r.Body = []byte("GET"), nil; return r }(), `"@method" "@path" "@query" "authorization"`},
		{"no token, a tenant", add(del(testRequest(), "Authorization"), "x-tenant", "acme"), `"@method" "@path" "@query" "content-digest" "x-tenant"`},
		{"a stale Content-Digest of the client's", set(testRequest(), "content-digest", "sha-256=:AAAA:"), `"@method" "@path" "@query" "content-digest" "authorization"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs, err := s.Sign(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			r := apply(tc.req, hs)
			if in := get(r, "Signature-Input"); !strings.HasPrefix(in, "warden=("+tc.comps+");") {
				t.Errorf("Signature-Input %s, want components %s", in, tc.comps)
			}
			if _, err := v.Verify(r); err != nil {
				t.Error(err)
			}
		})
	}
}

// Each Sign has its own nonce, so even deterministic algorithms never sign
// two requests alike.
func TestSignNonce(t *testing.T) {
	k := fixtureKeys(t)
	s, err := NewSigner(k.ed, "ed", nil, at(t0))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Sign(testRequest())
	b, _ := s.Sign(testRequest())
	if a[1].Value == b[1].Value || a[2].Value == b[2].Value {
		t.Error("two signatures of one request in one second are alike")
	}
}

// PEM keys, in each encoding ParsePrivateKey reads, sign what verifies;
// the RFC's own private keys too, but test-key-rsa-pss, whose PKCS #8
// names the RSASSA-PSS algorithm, which Go's x509 does not parse.
func TestParsePrivateKey(t *testing.T) {
	k := fixtureKeys(t)
	pkcs8 := func(key any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	sec1, err := x509.MarshalECPrivateKey(k.ec)
	if err != nil {
		t.Fatal(err)
	}
	rfc := rfcJWKS(t)
	for _, tc := range []struct {
		name, keyID string
		pem         []byte
		keys        token.Keys
	}{
		{"PKCS #8 Ed25519", "ed", pkcs8(k.ed), k.set},
		{"PKCS #8 ECDSA", "ec", pkcs8(k.ec), k.set},
		{"PKCS #8 RSA", "rsa", pkcs8(k.rsa), k.set},
		{"SEC 1 ECDSA", "ec", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), k.set},
		{"PKCS #1 RSA", "rsa", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.rsa)}), k.set},
		{"RFC 9421 test-key-ed25519", "test-key-ed25519", []byte(readRFC(t, "test-key-ed25519.pem")), rfc},
		{"RFC 9421 test-key-ecc-p256", "test-key-ecc-p256", []byte(readRFC(t, "test-key-ecc-p256.pem")), rfc},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := ParsePrivateKey(privateBlock(t, tc.pem))
			if err != nil {
				t.Fatal(err)
			}
			s, err := NewSigner(key, tc.keyID, []string{"@method", "@authority"}, at(t0))
			if err != nil {
				t.Fatal(err)
			}
			hs, err := s.Sign(testRequest())
			if err != nil {
				t.Fatal(err)
			}
			v := newTestVerifier(t, Options{Keys: tc.keys, Required: true, Components: []string{}, Now: at(t0 + 1)})
			if _, err := v.Verify(apply(testRequest(), hs)); err != nil {
				t.Error(err)
			}
		})
	}
	if _, err := ParsePrivateKey(privateBlock(t, []byte(readRFC(t, "test-key-rsa-pss.pem")))); err == nil {
		t.Error("an RSASSA-PSS PKCS #8 key parsed: update this test and the doc")
	}
	// test-key-rsa is PKCS #1 and pinned to RS256 in the RFC's JWKS, which
	// Signer does not sign with (it signs rsa-pss-sha512).
	if _, err := ParsePrivateKey(privateBlock(t, []byte(readRFC(t, "test-key-rsa.pem")))); err != nil {
		t.Errorf("test-key-rsa: %v", err)
	}
	for _, bad := range []string{
		"",
		"not PEM",
		"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n",
		"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
		"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
	} {
		if _, err := ParsePrivateKey([]byte(bad)); err == nil {
			t.Errorf("ParsePrivateKey(%q) accepted", bad)
		}
	}
}

// privateBlock returns the private key's PEM block of a file that may hold
// the public key first, as the RFC's do.
func privateBlock(t *testing.T, data []byte) []byte {
	t.Helper()
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			t.Fatal("no private key block")
		}
		if strings.Contains(b.Type, "PRIVATE") {
			return pem.EncodeToMemory(b)
		}
	}
}

func TestNewSignerRefuses(t *testing.T) {
	k := fixtureKeys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		key   crypto.Signer
		keyID string
		comps []string
	}{
		{"no key", nil, "k", nil},
		{"RSA under 2048 bits", small, "k", nil},
		{"ECDSA P-521", p521, "k", nil},
		{"no keyid", k.ec, "", nil},
		{"a keyid with a newline", k.ec, "k\n", nil},
		{"a keyid beyond ASCII", k.ec, "clé", nil},
		{"@status", k.ec, "k", []string{"@status"}},
		{"@query-param without its name", k.ec, "k", []string{"@query-param"}},
		{"a component twice", k.ec, "k", []string{"@method", "@METHOD"}},
		{"not a field name", k.ec, "k", []string{"x tenant"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewSigner(tc.key, tc.keyID, tc.comps, nil); err == nil {
				t.Error("accepted")
			}
		})
	}
	if _, err := NewHMACSigner(make([]byte, 31), "k", nil, nil); err == nil {
		t.Error("a 31-byte secret accepted")
	}
}

func TestNewVerifierOptions(t *testing.T) {
	k := fixtureKeys(t)
	for _, tc := range []struct {
		name string
		o    Options
		ok   bool
	}{
		{"defaults", Options{Keys: k.set}, true},
		{"no components", Options{Keys: k.set, Components: []string{}}, true},
		{"components in any case", Options{Keys: k.set, Components: []string{"@Method", "Authorization", " x-tenant "}}, true},
		{"no keys", Options{}, false},
		{"negative MaxAge", Options{Keys: k.set, MaxAge: -time.Second}, false},
		{"negative ClockSkew", Options{Keys: k.set, ClockSkew: -time.Second}, false},
		{"negative ReplayEntries", Options{Keys: k.set, ReplayEntries: -1}, false},
		{"@status", Options{Keys: k.set, Components: []string{"@status"}}, false},
		{"@signature-params", Options{Keys: k.set, Components: []string{"@signature-params"}}, false},
		{"a field twice", Options{Keys: k.set, Components: []string{"date", "Date"}}, false},
		{"an empty name", Options{Keys: k.set, Components: []string{""}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(tc.o)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok %v", err, tc.ok)
			}
			if err == nil && tc.o.ReplayEntries == 0 && v.Stats().ReplayCapacity != DefaultReplayEntries {
				t.Errorf("capacity %d", v.Stats().ReplayCapacity)
			}
		})
	}
	v, err := NewVerifier(Options{Keys: k.set, Components: []string{"@Method", "Authorization"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.derived) != 1 || v.derived[0] != "@method" || len(v.fields) != 1 || v.fields[0] != "authorization" {
		t.Errorf("components read as %v and %v", v.derived, v.fields)
	}
}
