package signature

import (
	"errors"
	"slices"
	"testing"
)

// reasons is the fixed set a refusal's Reason comes from.
var reasons = []string{
	ReasonMissing, ReasonUnknownKey, ReasonBadSignature, ReasonNotCovered, ReasonStale, ReasonExpired,
	ReasonReplayed, ReasonDigestMismatch, ReasonMalformed, ReasonDuplicateHeader,
}

// FuzzVerify feeds Verify untrusted Signature-Input, Signature and
// Content-Digest values and request-targets: it must never panic, refuse
// with a reason of the fixed set, and accept only what a known key signed.
func FuzzVerify(f *testing.F) {
	k := fixtureKeys(f)
	signed := sign(f, testRequest(), k.ec, "ec")
	f.Add(get(signed, "Signature-Input"), get(signed, "Signature"), get(signed, "Content-Digest"), string(signed.RawTarget))
	hmac := craft(f, withDigest(testRequest()), algHMACSHA256, nil, k.secret, "h",
		`("@method" "@target-uri" "@authority" "content-digest" "authorization" "@query-param";name="tag" "x";bs);created=1760000000;keyid="hmac";nonce="n";tag="t"`)
	f.Add(get(hmac, "Signature-Input"), get(hmac, "Signature"), get(hmac, "Content-Digest"), "/v1/items?id=7&tag=a+b")
	for _, name := range []string{"b21.fields", "b22.fields", "b23.fields", "b25.fields", "b26.fields"} {
		lines := fieldLines(f, name)
		f.Add(lines[0][len("Signature-Input: "):], lines[1][len("Signature: "):],
			"sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:", "/foo?param=Value&Pet=dog")
	}
	f.Add(`a=("@method";x "y";bs);created=-1, b=?0`, `a=:AAAA:, b=("x")`, `sha-256=:=:`, "*")
	f.Add(`a=("@query-param";name="%zz");created=1760000000;keyid="ec";expires=1`, `a=:AAAA:`, ``, "http://h/?%zz=1&%zz=2")
	f.Add(`sig=("@target-uri" "@path" "@query");created=999999999999999;keyid="ec";alg="x"`, `sig=:AAAA:`, `sha-512=:AA==:`, "/p?%C3%A7=%FF")
	f.Fuzz(func(t *testing.T, input, sig, digest, target string) {
		r := set(set(set(testRequest(), "Signature-Input", input), "Signature", sig), "Content-Digest", digest)
		r.RawTarget = []byte(target)
		v := newTestVerifier(t, Options{Keys: k.set, Required: true, Now: at(t0 + 1), ReplayEntries: 8})
		got, err := v.Verify(r)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !slices.Contains(reasons, e.Reason) {
				t.Fatalf("error %v is not a refusal of the fixed set", err)
			}
			if got != nil {
				t.Fatal("a refusal with a Verified")
			}
			return
		}
		if got == nil {
			t.Fatal("accepted without a Verified")
		}
		if _, err := k.set.Lookup(got.KeyID, ""); err != nil {
			t.Fatalf("accepted with key %q, unknown", got.KeyID)
		}
	})
}
