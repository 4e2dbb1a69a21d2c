package signature

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"strings"
	"sync"
	"testing"

	"github.com/dunglas/httpsfv"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/token"
)

// t0 is the tests' clock: the Unix time requests are signed at.
const t0 = 1_760_000_000

// testKeys are the keys the tests sign with, generated once per run (RSA
// takes a while), and the key set a Verifier trusts.
type testKeys struct {
	ec, ec2 *ecdsa.PrivateKey // ec2: a key the verifier knows under another keyid
	p384    *ecdsa.PrivateKey
	ed      ed25519.PrivateKey
	rsa     *rsa.PrivateKey
	secret  []byte
	set     token.StaticKeys
}

var (
	keysOnce sync.Once
	keysVal  *testKeys
)

func fixtureKeys(t testing.TB) *testKeys {
	t.Helper()
	keysOnce.Do(func() {
		k := &testKeys{secret: make([]byte, 32)}
		var err error
		must := func(e error) {
			if e != nil && err == nil {
				err = e
			}
		}
		k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		var e error
		k.ec2, e = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(e)
		k.p384, e = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(e)
		_, k.ed, e = ed25519.GenerateKey(rand.Reader)
		must(e)
		k.rsa, e = rsa.GenerateKey(rand.Reader, 2048)
		must(e)
		_, e = rand.Read(k.secret)
		must(e)
		if err != nil {
			panic(err)
		}
		k.set = token.StaticKeys{
			"ec":      {Public: k.ec.Public(), Alg: "ES256"},
			"ec2":     {Public: k.ec2.Public()},
			"p384":    {Public: k.p384.Public()},
			"ed":      {Public: k.ed.Public()},
			"rsa":     {Public: k.rsa.Public()},               // rsa-pss-sha512
			"rsa-v15": {Public: k.rsa.Public(), Alg: "RS256"}, // the same key, pinned to rsa-v1_5-sha256
			"hmac":    {Secret: k.secret},
		}
		keysVal = k
	})
	return keysVal
}

// testRequest is a signed API call's request before signing.
func testRequest() *Request {
	return &Request{
		Method:    []byte("POST"),
		Scheme:    "https",
		Authority: []byte("api.example.com"),
		RawTarget: []byte("/v1/items?id=7&tag=a+b"),
		Headers: []pep.Field{
			{Name: []byte("Host"), Value: []byte("api.example.com")},
			{Name: []byte("Authorization"), Value: []byte("Bearer token-a")},
			{Name: []byte("Content-Type"), Value: []byte("application/json")},
		},
		Body: []byte(`{"name":"x"}`),
	}
}

// clone copies r deeply enough to change its fields.
func clone(r *Request) *Request {
	c := *r
	c.Headers = append([]pep.Field(nil), r.Headers...)
	return &c
}

// apply sets the signer's fields on r, each replacing the same name.
func apply(r *Request, hs []pep.Header) *Request {
	r = clone(r)
	for _, h := range hs {
		r = set(r, h.Name, h.Value)
	}
	return r
}

// set replaces every field named name with one line (or adds it).
func set(r *Request, name, value string) *Request {
	r = del(r, name)
	r.Headers = append(r.Headers, pep.Field{Name: []byte(name), Value: []byte(value)})
	return r
}

// add appends a field line.
func add(r *Request, name, value string) *Request {
	r = clone(r)
	r.Headers = append(r.Headers, pep.Field{Name: []byte(name), Value: []byte(value)})
	return r
}

// del removes every field named name.
func del(r *Request, name string) *Request {
	r = clone(r)
	out := r.Headers[:0]
	for _, h := range r.Headers {
		if !strings.EqualFold(string(h.Name), name) {
			out = append(out, h)
		}
	}
	r.Headers = out
	return r
}

func get(r *Request, name string) string {
	for _, h := range r.Headers {
		if strings.EqualFold(string(h.Name), name) {
			return string(h.Value)
		}
	}
	return ""
}

// sign signs r with the Signer of key (at t0, default components).
func sign(t testing.TB, r *Request, key crypto.Signer, keyID string) *Request {
	t.Helper()
	s, err := NewSigner(key, keyID, nil, at(t0))
	if err != nil {
		t.Fatal(err)
	}
	hs, err := s.Sign(r)
	if err != nil {
		t.Fatal(err)
	}
	return apply(r, hs)
}

// craft signs r as a client could, with any inner list: list is the
// Signature-Input member's value (`("@method" ...);created=...;keyid=...`).
// The signature is over the base of list as parsed; a list the package
// cannot build a base for gets random bytes. It returns r with
// Signature-Input and Signature set under label, Content-Digest left as r
// has it.
func craft(t testing.TB, r *Request, alg algorithm, key crypto.Signer, secret []byte, label, list string) *Request {
	t.Helper()
	sig := make([]byte, 64)
	rand.Read(sig)
	if d, err := httpsfv.UnmarshalDictionary([]string{label + "=" + list}); err == nil {
		if m, ok := d.Get(label); ok {
			if il, ok := m.(httpsfv.InnerList); ok {
				comps, cerr := parseComponents(label, il)
				params, merr := httpsfv.Marshal(il)
				if cerr == nil && merr == nil {
					if base, berr := appendBase(nil, r, comps, params); berr == nil {
						s, err := alg.sign(key, secret, base)
						if err != nil {
							t.Fatal(err)
						}
						sig = s
					}
				}
			}
		}
	}
	r = set(r, "Signature-Input", label+"="+list)
	return set(r, "Signature", label+"=:"+base64.StdEncoding.EncodeToString(sig)+":")
}

// defaultList is the inner list of a signature over the default
// components, created at t0, by keyid.
func defaultList(keyID string) string {
	return `("@method" "@target-uri" "@authority" "content-digest" "authorization");created=1760000000;keyid="` + keyID + `"`
}

// withDigest sets a correct Content-Digest for r's body.
func withDigest(r *Request) *Request { return set(r, "Content-Digest", ContentDigest(r.Body)) }
