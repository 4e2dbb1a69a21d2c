package signature

import (
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/token"
)

// Every way to get a request past the signature check that the package
// must refuse, each beside the reason the log and the metrics get; and
// the requests it must still accept.
func TestAttacks(t *testing.T) {
	k := fixtureKeys(t)
	signed := func(t *testing.T) *Request { return sign(t, testRequest(), k.ec, "ec") }
	for _, tc := range []struct {
		name   string
		req    func(t *testing.T) *Request
		opts   func(*Options) // changes to the verifier's options
		reason string         // "" accepted
	}{
		{name: "a signed request is accepted", req: signed},
		{name: "the authority's case and default port are normalized", req: func(t *testing.T) *Request {
			r := signed(t)
			r.Authority = []byte("API.Example.COM:443")
			return r
		}},
		{name: "fields not covered may change", req: func(t *testing.T) *Request {
			return add(signed(t), "X-Trace", "abc")
		}},

		{name: "method changed after signing", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			r := signed(t)
			r.Method = []byte("PUT")
			return r
		}},
		{name: "path changed after signing", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			r := signed(t)
			r.RawTarget = []byte("/v1/admin?id=7&tag=a+b")
			return r
		}},
		{name: "query changed after signing", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			r := signed(t)
			r.RawTarget = []byte("/v1/items?id=8&tag=a+b")
			return r
		}},
		{name: "query re-encoded after signing (+ as %20)", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			r := signed(t)
			r.RawTarget = []byte("/v1/items?id=7&tag=a%20b")
			return r
		}},
		{name: "authority changed after signing", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			r := signed(t)
			r.Authority = []byte("other.example.com")
			return r
		}},
		{name: "scheme changed after signing", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			r := signed(t)
			r.Scheme = "http"
			return r
		}},
		{name: "no scheme: @target-uri cannot be derived", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			r := signed(t)
			r.Scheme = ""
			return r
		}},
		{name: "no authority: @authority cannot be derived", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			r := signed(t)
			r.Authority = nil
			return r
		}},
		{name: "absolute-form request-target", req: func(t *testing.T) *Request {
			r := testRequest()
			r.RawTarget = []byte("https://api.example.com/v1/items?id=7&tag=a+b")
			r = sign(t, r, k.ec, "ec")
			r.RawTarget = []byte("/v1/items?id=7&tag=a+b") // the same target URI in origin form
			return r
		}},
		{name: "a header named @method does not stand for the method", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			r := add(signed(t), "@method", "POST")
			r.Method = []byte("DELETE")
			return r
		}},
		{name: "body changed, digest kept", reason: ReasonDigestMismatch, req: func(t *testing.T) *Request {
			r := signed(t)
			r.Body = []byte(`{"name":"y"}`)
			return r
		}},
		{name: "body and digest changed", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			r := signed(t)
			r.Body = []byte(`{"name":"y"}`)
			return withDigest(r)
		}},
		{name: "Content-Digest removed", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			return del(signed(t), "Content-Digest")
		}},
		{name: "a wrong Content-Digest the signature does not cover", reason: ReasonDigestMismatch,
			opts: func(o *Options) { o.Components = []string{"@method"} },
			req: func(t *testing.T) *Request {
				r := craft(t, testRequest(), algECDSAP256, k.ec, nil, "sig1", `("@method");created=1760000000;keyid="ec"`)
				return set(r, "Content-Digest", "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:")
			}},
		{name: "a body, signed without content-digest", reason: ReasonNotCovered, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1",
				`("@method" "@target-uri" "@authority" "authorization");created=1760000000;keyid="ec"`)
		}},
		{name: "no body: content-digest is not required", req: func(t *testing.T) *Request {
			r := testRequest()
			r.Method, r.Body = []byte("GET"), nil
			return sign(t, r, k.ec, "ec")
		}},
		{name: "token swapped", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			return set(signed(t), "Authorization", "Bearer token-b")
		}},
		{name: "a second token line added", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			return add(signed(t), "Authorization", "Bearer token-b")
		}},
		{name: "token added to a request signed without one", reason: ReasonNotCovered, req: func(t *testing.T) *Request {
			r := sign(t, del(testRequest(), "Authorization"), k.ec, "ec")
			return set(r, "Authorization", "Bearer token-b")
		}},
		{name: "token removed: the signature covers it", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			return del(signed(t), "Authorization")
		}},
		{name: "@target-uri not covered", reason: ReasonNotCovered, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1",
				`("@method" "@authority" "content-digest" "authorization");created=1760000000;keyid="ec"`)
		}},
		{name: "a required component covered only with a parameter", reason: ReasonNotCovered,
			opts: func(o *Options) { o.Components = []string{"@method", "@query"} },
			req: func(t *testing.T) *Request {
				return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1",
					`("@method" "@query-param";name="id");created=1760000000;keyid="ec"`)
			}},
		{name: "an operator's extra field, covered with bs", opts: func(o *Options) { o.Components = slices.Concat(DefaultComponents, []string{"x-tenant"}) },
			req: func(t *testing.T) *Request {
				r := withDigest(add(testRequest(), "X-Tenant", "acme"))
				return craft(t, r, algECDSAP256, k.ec, nil, "sig1",
					`("@method" "@target-uri" "@authority" "content-digest" "authorization" "x-tenant";bs);created=1760000000;keyid="ec"`)
			}},

		{name: "stale: created before MaxAge", reason: ReasonStale, req: signed,
			opts: func(o *Options) { o.Now = at(t0 + 61) }},
		{name: "within MaxAge plus the clock skew", req: signed,
			opts: func(o *Options) { o.Now, o.ClockSkew = at(t0+65), 5*time.Second }},
		{name: "stale: created in the future", reason: ReasonStale, req: signed,
			opts: func(o *Options) { o.Now, o.ClockSkew = at(t0-10), 5*time.Second }},
		{name: "created in the future within the skew", req: signed,
			opts: func(o *Options) { o.Now, o.ClockSkew = at(t0-5), 5*time.Second }},
		{name: "expired", reason: ReasonExpired, opts: func(o *Options) { o.Now = at(t0 + 20) },
			req: func(t *testing.T) *Request {
				return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1", defaultList("ec")+";expires=1760000010")
			}},
		{name: "not yet expired", opts: func(o *Options) { o.Now = at(t0 + 5) },
			req: func(t *testing.T) *Request {
				return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1", defaultList("ec")+";expires=1760000010")
			}},
		{name: "expires before created", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1", defaultList("ec")+";expires=1759999999")
		}},
		{name: "no created", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1",
				`("@method" "@target-uri" "@authority" "content-digest" "authorization");keyid="ec"`)
		}},
		{name: "created as a string", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1",
				`("@method" "@target-uri" "@authority" "content-digest" "authorization");created="1760000000";keyid="ec"`)
		}},
		{name: "created as an RFC 9651 date", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1",
				`("@method" "@target-uri" "@authority" "content-digest" "authorization");created=@1760000000;keyid="ec"`)
		}},

		{name: "unknown key", reason: ReasonUnknownKey, req: func(t *testing.T) *Request {
			return sign(t, testRequest(), k.ec, "nobody")
		}},
		{name: "no keyid", reason: ReasonUnknownKey, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1",
				`("@method" "@target-uri" "@authority" "content-digest" "authorization");created=1760000000`)
		}},
		{name: "signature by another key under a known keyid", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			return sign(t, testRequest(), k.ec2, "ec")
		}},
		{name: "HMAC with the public key as the secret (algorithm confusion)", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			pub := elliptic.MarshalCompressed(elliptic.P256(), k.ec.X, k.ec.Y) //nolint:staticcheck // the bytes an attacker would try
			return craft(t, withDigest(testRequest()), algHMACSHA256, nil, pub, "sig1", defaultList("ec")+`;alg="hmac-sha256"`)
		}},
		{name: "HMAC with the public key as the secret, no alg", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			pub := elliptic.MarshalCompressed(elliptic.P256(), k.ec.X, k.ec.Y) //nolint:staticcheck // the bytes an attacker would try
			return craft(t, withDigest(testRequest()), algHMACSHA256, nil, pub, "sig1", defaultList("ec"))
		}},
		{name: "alg naming another algorithm than the key's", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1", defaultList("ec")+`;alg="ecdsa-p384-sha384"`)
		}},
		{name: "rsa-v1_5-sha256 with a key that is not pinned to it (downgrade)", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algRSAv15SHA256, k.rsa, nil, "sig1", defaultList("rsa")+`;alg="rsa-v1_5-sha256"`)
		}},
		{name: "rsa-v1_5-sha256 with the key pinned to it", req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algRSAv15SHA256, k.rsa, nil, "sig1", defaultList("rsa-v15")+`;alg="rsa-v1_5-sha256"`)
		}},
		{name: "rsa-pss-sha512 with the key pinned to rsa-v1_5-sha256", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algRSAPSS512, k.rsa, nil, "sig1", defaultList("rsa-v15"))
		}},

		{name: "duplicated Signature line", reason: ReasonDuplicateHeader, req: func(t *testing.T) *Request {
			r := signed(t)
			return add(r, "signature", get(r, "Signature"))
		}},
		{name: "duplicated Signature-Input line", reason: ReasonDuplicateHeader, req: func(t *testing.T) *Request {
			r := signed(t)
			return add(r, "Signature-Input", get(r, "Signature-Input"))
		}},
		{name: "duplicated Content-Digest line", reason: ReasonDuplicateHeader, req: func(t *testing.T) *Request {
			r := signed(t)
			return add(r, "Content-Digest", get(r, "Content-Digest"))
		}},
		{name: "Signature without Signature-Input", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return del(signed(t), "Signature-Input")
		}},
		{name: "Signature-Input not a dictionary", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return set(signed(t), "Signature-Input", `warden=("@method"`)
		}},
		{name: "Signature not a byte sequence", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return set(signed(t), "Signature", `warden=abc`)
		}},
		{name: "labels that do not match", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			r := signed(t)
			return set(r, "Signature", strings.Replace(get(r, "Signature"), "warden=", "other=", 1))
		}},
		{name: "Signature-Input member a single item", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return set(signed(t), "Signature-Input", `warden="@method";keyid="ec"`)
		}},
		{name: "an empty Signature-Input", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return set(set(signed(t), "Signature-Input", ""), "Signature", "")
		}},
		{name: "more labels than allowed", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			r := signed(t)
			in, sig := get(r, "Signature-Input"), get(r, "Signature")
			for i := range maxLabels {
				l := "x" + string(rune('a'+i))
				in += ", " + l + `=();created=1760000000;keyid="nobody"`
				sig += ", " + l + "=:AAAA:"
			}
			return set(set(r, "Signature-Input", in), "Signature", sig)
		}},

		// The ";" tricks: parameters where a lax parser would read them.
		{name: "; unknown parameter on a required component", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1",
				`("@method" "@target-uri" "@authority" "content-digest" "authorization";x);created=1760000000;keyid="ec"`)
		}},
		{name: "; parameter inside the component's string", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1",
				`("@method" "@target-uri" "@authority" "content-digest" "authorization;bs");created=1760000000;keyid="ec"`)
		}},
		{name: "; escaped quote to smuggle a parameter into a component", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1",
				`("@method" "@target-uri" "@authority" "content-digest" "authorization\";req");created=1760000000;keyid="ec"`)
		}},
		{name: "; keyid on a component instead of the list", reason: ReasonUnknownKey, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1",
				`("@method";keyid="ec" "@target-uri" "@authority" "content-digest" "authorization");created=1760000000`)
		}},
		{name: "; created repeated to refresh a stale signature", reason: ReasonBadSignature, opts: func(o *Options) { o.Now = at(t0 + 600) },
			req: func(t *testing.T) *Request {
				r := signed(t)
				return set(r, "Signature-Input", get(r, "Signature-Input")+";created=1760000599")
			}},
		{name: "; keyid repeated to switch to another key", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			r := signed(t)
			return set(r, "Signature-Input", get(r, "Signature-Input")+`;keyid="ec2"`)
		}},
		{name: "; req on a request", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1",
				`("@method" "@target-uri" "@authority" "content-digest" "authorization" "@method";req);created=1760000000;keyid="ec"`)
		}},
		{name: "; sf, which needs the field's type", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1",
				`("@method" "@target-uri" "@authority" "content-digest";sf "authorization");created=1760000000;keyid="ec"`)
		}},
		{name: "@status in a request", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1", `("@status");created=1760000000;keyid="ec"`)
		}},
		{name: "@signature-params covered", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1", `("@signature-params");created=1760000000;keyid="ec"`)
		}},
		{name: "a component in upper case", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1",
				`("@method" "@target-uri" "@authority" "content-digest" "Authorization");created=1760000000;keyid="ec"`)
		}},
		{name: "a component covered twice", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			return craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1",
				`("@method" "@target-uri" "@authority" "content-digest" "authorization" "@method");created=1760000000;keyid="ec"`)
		}},
		{name: "a covered field with a byte the base cannot hold", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			r := craft(t, withDigest(testRequest()), algECDSAP256, k.ec, nil, "sig1", defaultList("ec"))
			return set(r, "Authorization", "Bearer t\x80ken")
		}},

		{name: "another signer's label by an unknown key is ignored", req: func(t *testing.T) *Request {
			r := signed(t)
			r = set(r, "Signature-Input", `proxy=("@method");created=1760000000;keyid="elsewhere", `+get(r, "Signature-Input"))
			return set(r, "Signature", "proxy=:AAAA:, "+get(r, "Signature"))
		}},
		{name: "a narrower signature by a known key is skipped for one that covers", req: func(t *testing.T) *Request {
			r := signed(t)
			narrow := craft(t, r, algEd25519, k.ed, nil, "narrow", `("@method");created=1760000000;keyid="ed"`)
			r = set(r, "Signature-Input", get(narrow, "Signature-Input")+", "+get(r, "Signature-Input"))
			return set(r, "Signature", get(narrow, "Signature")+", "+get(r, "Signature"))
		}},
		{name: "an invalid signature by a known key beside a valid one", req: func(t *testing.T) *Request {
			r := signed(t)
			bad := sign(t, testRequest(), k.ec2, "ec") // by another key under "ec"
			in := strings.Replace(get(bad, "Signature-Input"), "warden=", "forged=", 1)
			sig := strings.Replace(get(bad, "Signature"), "warden=", "forged=", 1)
			r = set(r, "Signature-Input", in+", "+get(r, "Signature-Input"))
			return set(r, "Signature", sig+", "+get(r, "Signature"))
		}},
		{name: "no valid signature: the first one's reason", reason: ReasonBadSignature, req: func(t *testing.T) *Request {
			return sign(t, testRequest(), k.ec2, "ec")
		}},
		{name: "three signatures by known keys", reason: ReasonMalformed, req: func(t *testing.T) *Request {
			r := signed(t)
			in, sig := get(r, "Signature-Input"), get(r, "Signature")
			for _, l := range []string{"b", "c"} {
				in += ", " + l + "=" + strings.TrimPrefix(get(r, "Signature-Input"), "warden=")
				sig += ", " + l + "=" + strings.TrimPrefix(get(r, "Signature"), "warden=")
			}
			return set(set(r, "Signature-Input", in), "Signature", sig)
		}},

		{name: "unsigned, signatures required", reason: ReasonMissing, req: func(t *testing.T) *Request { return testRequest() }},
		{name: "unsigned, signatures not required", opts: func(o *Options) { o.Required = false },
			req: func(t *testing.T) *Request { return testRequest() }},
		{name: "signed badly, signatures not required: still verified", reason: ReasonBadSignature,
			opts: func(o *Options) { o.Required = false },
			req:  func(t *testing.T) *Request { return sign(t, testRequest(), k.ec2, "ec") }},
		{name: "keys not loaded yet", reason: ReasonUnknownKey, req: signed,
			opts: func(o *Options) { o.Keys = unloadedJWKS(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Keys: k.set, Required: true, Now: at(t0 + 1)}
			if tc.opts != nil {
				tc.opts(&o)
			}
			v := newTestVerifier(t, o)
			r := tc.req(t)
			got, err := v.Verify(r)
			if ReasonOf(err) != tc.reason && !(tc.reason == "" && err == nil) {
				t.Fatalf("err %v, want %q", err, tc.reason)
			}
			switch {
			case tc.reason == "" && !o.Required && got == nil:
			case tc.reason == "" && got == nil:
				t.Fatal("accepted without a Verified")
			case tc.reason != "" && got != nil:
				t.Fatalf("refused with a Verified %+v", got)
			}
			if err != nil {
				t.Log(err)
				var e *Error
				if !errors.As(err, &e) || !strings.HasPrefix(err.Error(), "signature: "+tc.reason+": ") {
					t.Errorf("error %q is not an *Error with its reason", err)
				}
				noValues(t, e.Detail, r)
			}
		})
	}
}

// noValues fails when a refusal's detail shows a signature, a digest or
// a token from the request.
func noValues(t *testing.T, detail string, r *Request) {
	t.Helper()
	for _, name := range []string{"Signature", "Authorization", "Content-Digest"} {
		v := get(r, name)
		if len(v) < 12 {
			continue
		}
		for i := 0; i+12 <= len(v); i += 6 {
			if frag := v[i : i+12]; strings.Contains(detail, frag) && !strings.Contains(frag, `"`) {
				t.Errorf("detail %q shows %q of %s", detail, frag, name)
				return
			}
		}
	}
}

// unloadedJWKS is a JWKS that has not loaded yet.
func unloadedJWKS(t *testing.T) token.Keys {
	j, err := token.NewJWKS(token.JWKSOptions{Source: "/nonexistent/jwks.json", Secrets: true})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// The same signed request twice: the second is a replay, however it is
// dressed up.
func TestReplay(t *testing.T) {
	k := fixtureKeys(t)
	for _, tc := range []struct {
		name   string
		replay func(r *Request) *Request
	}{
		{"as it was", func(r *Request) *Request { return r }},
		{"under another label", func(r *Request) *Request {
			r = set(r, "Signature-Input", strings.Replace(get(r, "Signature-Input"), "warden=", "again=", 1))
			return set(r, "Signature", strings.Replace(get(r, "Signature"), "warden=", "again=", 1))
		}},
		{"with the ECDSA signature malleated, (r, n-s)", func(r *Request) *Request {
			sig := decodeSig(t, get(r, "Signature"))
			s := new(big.Int).SetBytes(sig[32:])
			s.Sub(elliptic.P256().Params().N, s)
			s.FillBytes(sig[32:])
			return set(r, "Signature", "warden=:"+base64.StdEncoding.EncodeToString(sig)+":")
		}},
		{"behind another signer's label", func(r *Request) *Request {
			r = set(r, "Signature-Input", `p=("@method");created=1760000000;keyid="elsewhere", `+get(r, "Signature-Input"))
			return set(r, "Signature", "p=:AAAA:, "+get(r, "Signature"))
		}},
		{"with uncovered fields added", func(r *Request) *Request { return add(r, "X-Retry", "1") }},
		{"with the signature's bytes replaced (refused before the key is used)", func(r *Request) *Request {
			return set(r, "Signature", "warden=:"+base64.StdEncoding.EncodeToString(make([]byte, 64))+":")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, Options{Keys: k.set, Required: true, Now: at(t0 + 1)})
			r := sign(t, testRequest(), k.ec, "ec")
			if _, err := v.Verify(r); err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(tc.replay(r)); ReasonOf(err) != ReasonReplayed {
				t.Errorf("replay: %v, want replayed", err)
			}
		})
	}

	// Two signatures by known keys, accepted once: presenting the second
	// first, or alone, is still a replay.
	t.Run("a second valid label, reordered or alone", func(t *testing.T) {
		v := newTestVerifier(t, Options{Keys: k.set, Required: true, Now: at(t0 + 1)})
		r := sign(t, testRequest(), k.ec, "ec")
		other := craft(t, r, algEd25519, k.ed, nil, "ed", defaultList("ed"))
		both := set(r, "Signature-Input", get(r, "Signature-Input")+", "+get(other, "Signature-Input"))
		both = set(both, "Signature", get(r, "Signature")+", "+get(other, "Signature"))
		if _, err := v.Verify(both); err != nil {
			t.Fatal(err)
		}
		reordered := set(both, "Signature-Input", get(other, "Signature-Input")+", "+get(r, "Signature-Input"))
		reordered = set(reordered, "Signature", get(other, "Signature")+", "+get(r, "Signature"))
		for name, replay := range map[string]*Request{"reordered": reordered, "alone": other} {
			if _, err := v.Verify(replay); ReasonOf(err) != ReasonReplayed {
				t.Errorf("%s: %v, want replayed", name, err)
			}
		}
	})

	// Two requests the same in every covered component and parameter are
	// one signed request: Signer's nonce keeps a client's identical calls
	// apart.
	t.Run("identical requests signed in the same second", func(t *testing.T) {
		v := newTestVerifier(t, Options{Keys: k.set, Required: true, Now: at(t0 + 1)})
		for i := range 3 {
			if _, err := v.Verify(sign(t, testRequest(), k.ed, "ed")); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
	})
}

func decodeSig(t *testing.T, field string) []byte {
	t.Helper()
	_, b64, _ := strings.Cut(field, "=:")
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(b64, ":"))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}
