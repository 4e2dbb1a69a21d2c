package signature

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/warden-sidecar/warden/agent/pep"
)

// Label is the label of the signatures Signer adds.
const Label = "warden"

// Signer signs outbound requests. It is safe for concurrent use.
type Signer struct {
	alg        algorithm
	key        crypto.Signer
	secret     []byte
	keyID      string
	components []string
	now        func() time.Time
}

// NewSigner signs with a private key: Ed25519 (ed25519), ECDSA P-256
// (ecdsa-p256-sha256) or P-384 (ecdsa-p384-sha384), RSA of at least 2048
// bits (rsa-pss-sha512). keyID is the signature's keyid: the verifier's JWKS
// kid, or the SPIFFE ID when key is an SVID's. components are those to
// cover (nil: DefaultComponents; see Sign). now nil is time.Now. A Signer
// holds its key: when an SVID rotates, make a new one (it is cheap) and
// swap it in atomically.
func NewSigner(key crypto.Signer, keyID string, components []string, now func() time.Time) (*Signer, error) {
	if key == nil {
		return nil, errors.New("signature: no signing key")
	}
	alg, err := signerAlgorithm(key.Public())
	if err != nil {
		return nil, fmt.Errorf("signature: signing key: %w", err)
	}
	return newSigner(&Signer{alg: alg, key: key}, keyID, components, now)
}

// NewHMACSigner signs with hmac-sha256 and a shared secret of at least 32
// bytes, which the verifier has as an "oct" JWK named keyID.
func NewHMACSigner(secret []byte, keyID string, components []string, now func() time.Time) (*Signer, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("signature: shared secret of %d bytes, want at least 32", len(secret))
	}
	return newSigner(&Signer{alg: algHMACSHA256, secret: secret}, keyID, components, now)
}

func newSigner(s *Signer, keyID string, components []string, now func() time.Time) (*Signer, error) {
	if keyID == "" || !printable(keyID) {
		return nil, errors.New("signature: keyid must be printable ASCII, and not empty")
	}
	all, _, _, err := checkComponents(components)
	if err != nil {
		return nil, err
	}
	s.components = all
	if now == nil {
		now = time.Now
	}
	s.keyID, s.now = keyID, now
	return s, nil
}

// Sign signs r and returns the fields to set on it, each replacing any of
// the same name r has: Content-Digest (sha-256, when r has a body),
// Signature-Input and Signature (label "warden"). The signature covers the
// Signer's components in their order: derived ones always, content-digest
// when there is a body, other fields when r has them (an absent field
// cannot be signed, and the verifier requires a field only when present);
// its parameters are created, keyid, alg and a random nonce, so that two
// identical requests in one second are not taken for a replay.
func (s *Signer) Sign(r *Request) ([]pep.Header, error) {
	out := make([]pep.Header, 0, 3)
	req := *r
	if len(r.Body) > 0 {
		digest := ContentDigest(r.Body)
		out = append(out, pep.Header{Name: "Content-Digest", Value: digest})
		// The base reads the Content-Digest being added, not one r has.
		req.Headers = make([]pep.Field, 0, len(r.Headers)+1)
		for _, h := range r.Headers {
			if !equalFold(h.Name, "content-digest") {
				req.Headers = append(req.Headers, h)
			}
		}
		req.Headers = append(req.Headers, pep.Field{Name: []byte("content-digest"), Value: []byte(digest)})
	}

	comps := make([]component, 0, len(s.components))
	for _, name := range s.components {
		if name[0] != '@' && !hasField(req.Headers, name) {
			continue
		}
		comps = append(comps, component{name: name})
	}

	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("signature: nonce: %w", err)
	}
	params := make([]byte, 0, 256)
	params = append(params, '(')
	for i, c := range comps {
		if i > 0 {
			params = append(params, ' ')
		}
		params = c.appendIdentifier(params)
	}
	params = append(params, ");created="...)
	params = strconv.AppendInt(params, s.now().Unix(), 10)
	params = append(params, ";keyid="...)
	params = appendSFString(params, s.keyID)
	params = append(params, ";alg="...)
	params = appendSFString(params, s.alg.String())
	params = append(params, `;nonce="`...)
	params = base64.RawURLEncoding.AppendEncode(params, nonce[:])
	params = append(params, '"')

	base, berr := appendBase(make([]byte, 0, 1024), &req, comps, string(params))
	if berr != nil {
		return nil, fmt.Errorf("signature: sign: %w", berr)
	}
	sig, err := s.alg.sign(s.key, s.secret, base)
	if err != nil {
		return nil, fmt.Errorf("signature: sign with %s: %w", s.alg, err)
	}
	sv := make([]byte, 0, len(Label)+3+base64.StdEncoding.EncodedLen(len(sig)))
	sv = append(sv, Label+"=:"...)
	sv = base64.StdEncoding.AppendEncode(sv, sig)
	sv = append(sv, ':')
	return append(out,
		pep.Header{Name: "Signature-Input", Value: Label + "=" + string(params)},
		pep.Header{Name: "Signature", Value: string(sv)},
	), nil
}

func hasField(headers []pep.Field, name string) bool {
	for _, h := range headers {
		if equalFold(h.Name, name) {
			return true
		}
	}
	return false
}

// ParsePrivateKey reads a PEM private key: PKCS #8 ("PRIVATE KEY": Ed25519,
// ECDSA or RSA), SEC 1 ("EC PRIVATE KEY") or PKCS #1 ("RSA PRIVATE KEY").
// Encrypted keys are refused. Whether NewSigner can use it is NewSigner's
// check.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("signature: no PEM block")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("signature: PEM block %q is not a private key this package reads", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("signature: %s: %w", block.Type, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signature: %T cannot sign", key)
	}
	return s, nil
}
