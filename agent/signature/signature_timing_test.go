package signature

import (
	"crypto"
	"testing"

	"github.com/warden-sidecar/warden/agent/pep"
)

// benchRequest is a typical signed API call: a token, a JSON body of a
// few hundred bytes, a dozen fields.
func benchRequest() *Request {
	r := testRequest()
	r.Body = []byte(`{"name":"x","items":[` + "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30" +
		`],"note":"a request body of a typical size, with some text in it to hash, and a little more text"}`)
	r.Headers = append(r.Headers,
		pep.Field{Name: []byte("User-Agent"), Value: []byte("client/1.2.3")},
		pep.Field{Name: []byte("Accept"), Value: []byte("application/json")},
		pep.Field{Name: []byte("Accept-Encoding"), Value: []byte("gzip")},
		pep.Field{Name: []byte("X-Request-Id"), Value: []byte("4bf92f3577b34da6a3ce929d0e0e4736")},
		pep.Field{Name: []byte("Traceparent"), Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
		pep.Field{Name: []byte("Content-Length"), Value: []byte("200")},
	)
	return r
}

// BenchmarkVerify verifies distinct signed requests (the same one twice
// would be a replay), signed before the timer starts: a pool of them, and
// a new Verifier each time the pool comes round, so that the live heap
// stays small. hmac-sha256 shows what the package costs besides the
// public-key operation.
func BenchmarkVerify(b *testing.B) {
	k := fixtureKeys(b)
	const pool = 256
	for _, tc := range []struct {
		name   string
		signer func() (*Signer, error)
	}{
		{"ecdsa-p256", func() (*Signer, error) { return NewSigner(k.ec, "ec", nil, at(t0)) }},
		{"ed25519", func() (*Signer, error) { return NewSigner(k.ed, "ed", nil, at(t0)) }},
		{"rsa-pss-sha512", func() (*Signer, error) { return NewSigner(k.rsa, "rsa", nil, at(t0)) }},
		{"hmac-sha256", func() (*Signer, error) { return NewHMACSigner(k.secret, "hmac", nil, at(t0)) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := tc.signer()
			if err != nil {
				b.Fatal(err)
			}
			reqs := make([]*Request, pool)
			for i := range reqs {
				hs, err := s.Sign(benchRequest())
				if err != nil {
					b.Fatal(err)
				}
				reqs[i] = apply(benchRequest(), hs)
			}
			var v *Verifier
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%pool == 0 {
					b.StopTimer()
					v = newTestVerifier(b, Options{Keys: k.set, Required: true, Now: at(t0 + 1), ReplayEntries: 64 * pool})
					b.StartTimer()
				}
				if _, err := v.Verify(reqs[i%pool]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyRefused: what a forged or replayed request costs.
func BenchmarkVerifyRefused(b *testing.B) {
	k := fixtureKeys(b)
	signed := sign(b, benchRequest(), k.ec, "ec")
	for _, tc := range []struct {
		name string
		req  *Request
	}{
		{"unknown-key", sign(b, benchRequest(), k.ec, "nobody")},
		{"bad-signature", sign(b, benchRequest(), k.ec2, "ec")},
		{"replayed", signed},
		{"unsigned", benchRequest()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			v := newTestVerifier(b, Options{Keys: k.set, Required: true, Now: at(t0 + 1)})
			v.Verify(tc.req) // the replay case's first sighting
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := v.Verify(tc.req); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}

func BenchmarkReplayCache(b *testing.B) {
	c := newReplayCache(DefaultReplayEntries)
	now := int64(t0) * sec
	base := []byte(readRFCBase(b))
	c.check(base, now+60*sec, now)
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if c.check(base, now+60*sec, now) != replaySeen {
				b.Fatal("not seen")
			}
		}
	})
	b.Run("insert", func(b *testing.B) {
		bases := make([][]byte, b.N)
		for i := range bases {
			bases[i] = append(testBase(i), base...)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			c.check(bases[i], now+60*sec, now)
		}
	})
}

// readRFCBase is a signature base of a realistic size: RFC 9421's B.2.3.
func readRFCBase(b *testing.B) string { return readRFC(b, "b23.base") }

func BenchmarkSign(b *testing.B) {
	k := fixtureKeys(b)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{
		{"ecdsa-p256", k.ec},
		{"ed25519", k.ed},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := NewSigner(tc.key, "k", nil, at(t0))
			if err != nil {
				b.Fatal(err)
			}
			r := benchRequest()
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := s.Sign(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
