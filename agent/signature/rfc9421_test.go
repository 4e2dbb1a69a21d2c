package signature

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dunglas/httpsfv"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/agent/token"
)

// The files under testdata/rfc9421 are RFC 9421's examples as the RFC
// gives them (its section B.1 keys, B.2 test-request and test cases, B.3,
// B.4, and the examples of sections 2.5, 3.2 and 4.3), line-wrapped per
// RFC 8792 where the RFC wraps them; unwrap undoes it.

// unwrap reads an RFC example: with the "NOTE: '\' line wrapping per RFC
// 8792" header, a line ending in a backslash continues on the next one,
// whose leading whitespace is dropped (RFC 8792 section 7, single
// backslash).
func unwrap(text string) string {
	const note = "NOTE: '\\' line wrapping per RFC 8792\n\n"
	rest, ok := strings.CutPrefix(text, note)
	if !ok {
		return text
	}
	return unwrapLines(rest)
}

// wrappedWithoutNote are the examples the RFC wraps without the NOTE
// header: B.4's signature base.
var wrappedWithoutNote = map[string]bool{"b4.base": true}

func unwrapLines(rest string) string {
	lines := strings.Split(rest, "\n")
	var b strings.Builder
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line = line[:len(line)-1] + strings.TrimLeft(lines[i], " \t")
		}
		b.WriteString(line)
		if i < len(lines)-1 {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func readRFC(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "rfc9421", name))
	if err != nil {
		t.Fatal(err)
	}
	if wrappedWithoutNote[name] {
		return unwrapLines(string(b))
	}
	return unwrap(string(b))
}

// parseHTTP reads an HTTP/1.1 request example: the request line, the
// fields, a blank line and the content. The content is what Content-Length
// says once the blank lines around it are dropped (section 4.3's
// forwarded request has two blank lines before it).
func parseHTTP(t testing.TB, text string, extra ...string) *Request {
	t.Helper()
	head, body, _ := strings.Cut(text, "\n\n")
	lines := strings.Split(head, "\n")
	method, rest, _ := strings.Cut(lines[0], " ")
	target, _, _ := strings.Cut(rest, " ")
	r := &Request{Method: []byte(method), Scheme: "https", RawTarget: []byte(target)}
	fields := append(lines[1:], extra...)
	clen := -1
	for _, line := range fields {
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("field line %q", line)
		}
		value = strings.TrimLeft(value, " ")
		r.Headers = append(r.Headers, pep.Field{Name: []byte(name), Value: []byte(value)})
		switch strings.ToLower(name) {
		case "host":
			r.Authority = []byte(value)
		case "content-length":
			clen, _ = strconv.Atoi(value)
		}
	}
	body = strings.Trim(body, "\n")
	if clen >= 0 {
		if len(body) != clen {
			t.Fatalf("content of %d bytes, Content-Length %d", len(body), clen)
		}
		r.Body = []byte(body)
	}
	return r
}

// fieldLines reads an example's Signature-Input and Signature lines.
func fieldLines(t testing.TB, name string) []string {
	t.Helper()
	return strings.Split(strings.TrimSpace(readRFC(t, name)), "\n")
}

// rfcJWKS writes the RFC's keys as one JWKS (their JWK forms, from B.1)
// and loads it with agent/token's JWKS, shared secrets allowed, as
// WARDEN_SIGNATURE_KEYS would. Two changes the RFC's text needs: the
// shared secret (B.1.5, base64) becomes an "oct" JWK, and test-key-rsa is
// pinned to RS256, since warden verifies rsa-v1_5-sha256 only with keys
// pinned to it (section 4.3's proxy signature uses it).
func rfcJWKS(t testing.TB) *token.JWKS {
	t.Helper()
	var keys []map[string]any
	for _, name := range []string{"test-key-rsa", "test-key-rsa-pss", "test-key-ecc-p256", "test-key-ed25519"} {
		var k map[string]any
		if err := json.Unmarshal([]byte(readRFC(t, name+".jwk")), &k); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == "test-key-rsa" {
			k["alg"] = "RS256"
		}
		keys = append(keys, k)
	}
	secret := rfcSecret(t)
	keys = append(keys, map[string]any{"kty": "oct", "kid": "test-shared-secret", "k": base64.RawURLEncoding.EncodeToString(secret)})
	doc, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := token.NewJWKS(token.JWKSOptions{Source: path, Secrets: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return j
}

func rfcSecret(t testing.TB) []byte {
	t.Helper()
	secret, err := base64.StdEncoding.DecodeString(strings.TrimSpace(readRFC(t, "test-shared-secret.txt")))
	if err != nil || len(secret) != 64 {
		t.Fatalf("shared secret: %v", err)
	}
	return secret
}

// rfcPrivateKey reads the private key of an RFC key's PEM file.
func rfcPrivateKey(t testing.TB, name string) any {
	t.Helper()
	rest := []byte(readRFC(t, name+".pem"))
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			t.Fatalf("%s: no private key", name)
		}
		if strings.Contains(block.Type, "PRIVATE") {
			s, err := ParsePrivateKey(pem.EncodeToMemory(block))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return s
		}
	}
}

// rfcPublicKey reads the public key of an RFC key's PEM file.
func rfcPublicKey(t testing.TB, name string) any {
	t.Helper()
	block, _ := pem.Decode([]byte(readRFC(t, name+".pem")))
	var (
		pub any
		err error
	)
	if block.Type == "RSA PUBLIC KEY" {
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	} else {
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return pub
}

// signatureBase builds the base of r's signature label as Verify does.
func signatureBase(t testing.TB, v *Verifier, r *Request, label string) string {
	t.Helper()
	var input string
	for _, h := range r.Headers {
		if strings.EqualFold(string(h.Name), "signature-input") {
			input = string(h.Value)
		}
	}
	d, err := httpsfv.UnmarshalDictionary([]string{input})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := d.Get(label)
	list := m.(httpsfv.InnerList)
	comps, cerr := parseComponents(label, list)
	if cerr != nil {
		t.Fatal(cerr)
	}
	params, err := httpsfv.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	base, berr := appendBase(nil, r, comps, params)
	if berr != nil {
		t.Fatal(berr)
	}
	return string(base)
}

// The RFC's signed requests verify with its keys, and the signature base
// warden builds is the RFC's, byte for byte. RSA-PSS and ECDSA signatures
// are randomized: those are verified only; ed25519 and HMAC are
// deterministic, and signing the RFC's base gives the RFC's signature.
func TestRFC9421Examples(t *testing.T) {
	keys := rfcJWKS(t)
	request := readRFC(t, "test-request.http")
	for _, tc := range []struct {
		name       string
		request    string   // the message
		fields     string   // a file of Signature-Input and Signature lines to add, or ""
		base       string   // the file of the RFC's signature base, or ""
		label      string   // the label Verify accepts
		created    int64    // the RFC's created
		components []string // required of the request
		keys       token.Keys
		want       Verified
	}{
		{
			name: "B.2.1 minimal signature, rsa-pss-sha512", request: request, fields: "b21.fields", base: "b21.base",
			label: "sig-b21", created: 1618884473, components: []string{},
			want: Verified{KeyID: "test-key-rsa-pss", Alg: "rsa-pss-sha512", Created: 1618884473, Components: []string{}},
		},
		{
			name: "B.2.2 selective components with a query parameter, rsa-pss-sha512", request: request, fields: "b22.fields", base: "b22.base",
			label: "sig-b22", created: 1618884473, components: []string{"@authority", "content-digest"},
			want: Verified{KeyID: "test-key-rsa-pss", Alg: "rsa-pss-sha512", Created: 1618884473,
				Components: []string{"@authority", "content-digest", `@query-param;name="Pet"`}},
		},
		{
			name: "B.2.3 full coverage, rsa-pss-sha512", request: request, fields: "b23.fields", base: "b23.base",
			label: "sig-b23", created: 1618884473, components: []string{"@method", "@path", "@query", "@authority", "content-digest", "date"},
			want: Verified{KeyID: "test-key-rsa-pss", Alg: "rsa-pss-sha512", Created: 1618884473,
				Components: []string{"date", "@method", "@path", "@query", "@authority", "content-type", "content-digest", "content-length"}},
		},
		{
			name: "B.2.5 hmac-sha256", request: request, fields: "b25.fields", base: "b25.base",
			label: "sig-b25", created: 1618884473, components: []string{"@authority"},
			want: Verified{KeyID: "test-shared-secret", Alg: "hmac-sha256", Created: 1618884473, Components: []string{"date", "@authority", "content-type"}},
		},
		{
			name: "B.2.6 ed25519", request: request, fields: "b26.fields", base: "b26.base",
			label: "sig-b26", created: 1618884473, components: []string{"@method", "@path", "@authority"},
			want: Verified{KeyID: "test-key-ed25519", Alg: "ed25519", Created: 1618884473,
				Components: []string{"date", "@method", "@path", "@authority", "content-type", "content-length"}},
		},
		{
			name: "3.2 verification example, rsa-pss-sha512 (base of 2.5)", request: readRFC(t, "s3.2-signed.http"), base: "s2.5.base",
			label: "sig1", created: 1618884473, components: []string{"@method", "@authority", "@path", "content-digest"},
			want: Verified{KeyID: "test-key-rsa-pss", Alg: "rsa-pss-sha512", Created: 1618884473,
				Components: []string{"@method", "@authority", "@path", "content-digest", "content-length", "content-type"}},
		},
		{
			name: "B.3 TLS-terminating proxy, ecdsa-p256-sha256", request: readRFC(t, "b3-signed.http"), base: "b3-proxy.base",
			label: "ttrp", created: 1618884473, components: []string{"@method", "@path", "@query", "@authority", "client-cert"},
			want: Verified{KeyID: "test-key-ecc-p256", Alg: "ecdsa-p256-sha256", Created: 1618884473,
				Components: []string{"@path", "@query", "@method", "@authority", "client-cert"}},
		},
		{
			name: "4.3 the client's signature, ecdsa-p256-sha256", request: readRFC(t, "s4.3-client.http"),
			label: "sig1", created: 1618884475, components: []string{"@method", "@authority", "@path", "content-digest"},
			want: Verified{KeyID: "test-key-ecc-p256", Alg: "ecdsa-p256-sha256", Created: 1618884475,
				Components: []string{"@method", "@authority", "@path", "content-digest", "content-type", "content-length"}},
		},
		{
			// The origin trusts the proxy only: the client's sig1 is by an
			// unknown key, and ignored.
			name: "4.3 the proxy's signature, rsa-v1_5-sha256, beside the client's", request: readRFC(t, "s4.3-forwarded.http"), base: "s4.3-proxy.base",
			label: "proxy_sig", created: 1618884480, components: []string{"@method", "@authority", "@path", "content-digest", "forwarded"},
			keys: onlyKeys(t, keys, "test-key-rsa"),
			want: Verified{KeyID: "test-key-rsa", Alg: "rsa-v1_5-sha256", Created: 1618884480,
				Components: []string{"@method", "@authority", "@path", "content-digest", "content-type", "content-length", "forwarded"}},
		},
		{
			name: "B.4 transformations: the signed request, ed25519", request: readRFC(t, "b4-signed.http"), base: "b4.base",
			label: "transform", created: 1618884473, components: []string{"@method", "@path", "@authority", "accept"},
			want: Verified{KeyID: "test-key-ed25519", Alg: "ed25519", Created: 1618884473, Components: []string{"@method", "@path", "@authority", "accept"}},
		},
		{
			name: "B.4 transformations: a field and a query parameter added", request: readRFC(t, "b4-added.http"), base: "b4.base",
			label: "transform", created: 1618884473, components: []string{},
			want: Verified{KeyID: "test-key-ed25519", Alg: "ed25519", Created: 1618884473, Components: []string{"@method", "@path", "@authority", "accept"}},
		},
		{
			name: "B.4 transformations: Date removed, Accept lines combined", request: readRFC(t, "b4-removed.http"), base: "b4.base",
			label: "transform", created: 1618884473, components: []string{},
			want: Verified{KeyID: "test-key-ed25519", Alg: "ed25519", Created: 1618884473, Components: []string{"@method", "@path", "@authority", "accept"}},
		},
		{
			name: "B.4 transformations: fields reordered", request: readRFC(t, "b4-reordered.http"), base: "b4.base",
			label: "transform", created: 1618884473, components: []string{},
			want: Verified{KeyID: "test-key-ed25519", Alg: "ed25519", Created: 1618884473, Components: []string{"@method", "@path", "@authority", "accept"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var extra []string
			if tc.fields != "" {
				extra = fieldLines(t, tc.fields)
			}
			r := parseHTTP(t, tc.request, extra...)
			k := tc.keys
			if k == nil {
				k = keys
			}
			v := newTestVerifier(t, Options{Keys: k, Required: true, Components: tc.components, Now: at(tc.created + 1)})
			if tc.base != "" {
				want := strings.TrimSuffix(readRFC(t, tc.base), "\n") // the RFC's bases have no final newline
				if got := signatureBase(t, v, r, tc.label); got != want {
					t.Errorf("signature base:\n%s\nthe RFC's:\n%s", got, want)
				}
			}
			got, err := v.Verify(r)
			if err != nil {
				t.Fatal(err)
			}
			if !equalVerified(got, &tc.want) {
				t.Errorf("Verified %+v, want %+v", *got, tc.want)
			}
		})
	}
}

// The requests B.4 shows as no longer valid, and section 4.3's forwarded
// request at an origin trusting the client's key: its authority changed.
func TestRFC9421ExamplesThatMustFail(t *testing.T) {
	keys := rfcJWKS(t)
	for _, tc := range []struct {
		name, request string
		created       int64
		reason        string
	}{
		{"B.4 method and authority changed", "b4-method-changed.http", 1618884473, ReasonBadSignature},
		{"B.4 Accept lines swapped", "b4-accept-swapped.http", 1618884473, ReasonBadSignature},
		// At an origin trusting the client's key only: proxy_sig is by an
		// unknown key, and sig1 covers the authority the proxy changed.
		{"4.3 client's signature after the proxy changed the authority", "s4.3-forwarded.http", 1618884480, ReasonBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := token.Keys(keys)
			if strings.HasPrefix(tc.request, "s4.3") {
				k = onlyKeys(t, keys, "test-key-ecc-p256")
			}
			v := newTestVerifier(t, Options{Keys: k, Required: true, Components: []string{}, Now: at(tc.created + 1)})
			_, err := v.Verify(parseHTTP(t, readRFC(t, tc.request)))
			if ReasonOf(err) != tc.reason {
				t.Errorf("err %v, want %s", err, tc.reason)
			}
		})
	}
}

// B.2.4 signs a response (@status), which Verify does not take: its
// signature is verified over the RFC's base, and the @signature-params
// line warden serializes from its Signature-Input is the RFC's.
func TestRFC9421ResponseExampleB24(t *testing.T) {
	base := strings.TrimSuffix(readRFC(t, "b24.base"), "\n")
	lines := fieldLines(t, "b24.fields")
	input, _ := strings.CutPrefix(lines[0], "Signature-Input: ")
	sigField, _ := strings.CutPrefix(lines[1], "Signature: ")

	d, err := httpsfv.UnmarshalDictionary([]string{input})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := d.Get("sig-b24")
	params, err := httpsfv.Marshal(m.(httpsfv.InnerList))
	if err != nil {
		t.Fatal(err)
	}
	_, last, _ := strings.Cut(base, `"@signature-params": `)
	if params != last {
		t.Errorf("@signature-params %s, the RFC's %s", params, last)
	}
	s, err := httpsfv.UnmarshalDictionary([]string{sigField})
	if err != nil {
		t.Fatal(err)
	}
	sm, _ := s.Get("sig-b24")
	sig := sm.(httpsfv.Item).Value.([]byte)
	key := token.Key{Public: rfcPublicKey(t, "test-key-ecc-p256")}
	alg, err := algorithmFor(key)
	if err != nil || alg != algECDSAP256 {
		t.Fatalf("algorithm %v, %v", alg, err)
	}
	if !alg.verify(key, []byte(base), sig) {
		t.Error("the RFC's B.2.4 signature does not verify")
	}
	if alg.verify(key, []byte(strings.Replace(base, "200", "201", 1)), sig) {
		t.Error("B.2.4's signature verifies over another status")
	}
}

// Ed25519 and HMAC are deterministic: signing the RFC's base with the
// RFC's key gives the RFC's signature, byte for byte.
func TestRFC9421DeterministicSignatures(t *testing.T) {
	for _, tc := range []struct {
		name, base, fields string
		signer             func() (*Signer, error)
	}{
		{"B.2.5 hmac-sha256", "b25.base", "b25.fields", func() (*Signer, error) {
			return NewHMACSigner(rfcSecret(t), "test-shared-secret", nil, nil)
		}},
		{"B.2.6 ed25519", "b26.base", "b26.fields", func() (*Signer, error) {
			return NewSigner(rfcPrivateKey(t, "test-key-ed25519").(crypto.Signer), "test-key-ed25519", nil, nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.signer()
			if err != nil {
				t.Fatal(err)
			}
			base := strings.TrimSuffix(readRFC(t, tc.base), "\n")
			got, err := s.alg.sign(s.key, s.secret, []byte(base))
			if err != nil {
				t.Fatal(err)
			}
			sigLine := fieldLines(t, tc.fields)[1]
			_, want, _ := strings.Cut(sigLine, "=:")
			want = strings.TrimSuffix(want, ":")
			if enc := base64.StdEncoding.EncodeToString(got); enc != want {
				t.Errorf("signature %s, the RFC's %s", enc, want)
			}
		})
	}
}

// onlyKeys is a key set holding some of keys.
func onlyKeys(t testing.TB, keys token.Keys, kids ...string) token.StaticKeys {
	t.Helper()
	out := token.StaticKeys{}
	for _, kid := range kids {
		k, err := keys.Lookup(kid, "")
		if err != nil {
			t.Fatal(err)
		}
		out[kid] = k
	}
	return out
}

func newTestVerifier(t testing.TB, o Options) *Verifier {
	t.Helper()
	if o.ReplayEntries == 0 {
		o.ReplayEntries = 1024
	}
	v, err := NewVerifier(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// at is a clock stopped at a Unix time.
func at(unix int64) func() time.Time {
	return func() time.Time { return time.Unix(unix, 0) }
}

func equalVerified(a, b *Verified) bool {
	if a.KeyID != b.KeyID || a.Alg != b.Alg || a.Created != b.Created || len(a.Components) != len(b.Components) {
		return false
	}
	for i := range a.Components {
		if a.Components[i] != b.Components[i] {
			return false
		}
	}
	return true
}
