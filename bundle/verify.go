package bundle

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	opabundle "github.com/open-policy-agent/opa/v1/bundle"
)

// keyID names warden's one verification key. VerificationConfig.KeyID makes
// OPA use it whatever "kid" a signature names.
const keyID = "warden"

// verificationConfig reads the key at keyPath and returns OPA's verification
// configuration for it. Mismatches between the key and alg are reported here,
// at startup, rather than as a rejected bundle later.
func verificationConfig(keyPath, alg string) (*opabundle.VerificationConfig, error) {
	fail := func(err error) (*opabundle.VerificationConfig, error) {
		return nil, fmt.Errorf("bundle: verification key %s: %w", keyPath, err)
	}
	raw, err := os.ReadFile(keyPath)
	if err != nil {
		return fail(err)
	}
	if len(raw) == 0 {
		return fail(errors.New("the file is empty"))
	}
	alg, err = keyAlg(raw, alg)
	if err != nil {
		return fail(err)
	}
	// The key goes to OPA as the file holds it: for HMAC the secret is the
	// file's exact bytes, as `opa build --signing-key FILE` uses them.
	kc := &opabundle.KeyConfig{Key: string(raw), Algorithm: alg}
	return opabundle.NewVerificationConfig(map[string]*opabundle.KeyConfig{keyID: kc}, keyID, "", nil), nil
}

var hmacAlgs = []string{"HS256", "HS384", "HS512"}

// keyAlg infers the algorithm from the key, or checks the one given fits it.
func keyAlg(raw []byte, alg string) (string, error) {
	block, _ := pem.Decode(raw)
	if block == nil {
		switch {
		case alg == "":
			return "HS256", nil
		case slices.Contains(hmacAlgs, alg):
			return alg, nil
		}
		return "", fmt.Errorf("%s needs a PEM public key; the file is not PEM (a shared secret is for HS256/HS384/HS512)", alg)
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return "", errors.New("holds a private key: give warden the public key only")
		}
		return "", fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return "", err
	}
	var fits []string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		fits = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			fits = []string{"ES256"}
		case elliptic.P384():
			fits = []string{"ES384"}
		case elliptic.P521():
			fits = []string{"ES512"}
		}
	case ed25519.PublicKey:
		fits = []string{"EdDSA"}
	}
	switch {
	case len(fits) == 0:
		return "", fmt.Errorf("unsupported public key type %T", pub)
	case alg == "":
		return fits[0], nil
	case !slices.Contains(fits, alg):
		return "", fmt.Errorf("a %T does not sign %s (it fits %s)", pub, alg, strings.Join(fits, ", "))
	}
	return alg, nil
}

// verifySnapshot checks a bundle's signature before any of its files is
// parsed, with the calls OPA's bundle.Reader makes: the JWT in
// .signatures.json must verify with the key, and it must list every file of
// the bundle with its digest, no more and no fewer.
func verifySnapshot(s *snapshot, vc *opabundle.VerificationConfig) error {
	var sigs []file
	for _, f := range s.files {
		if opabundle.IsSignaturesFile(f.path) {
			sigs = append(sigs, f)
		}
	}
	switch len(sigs) {
	case 0:
		return errors.New("bundle is not signed (no .signatures.json)")
	case 1:
	default:
		return fmt.Errorf("bundle has %d .signatures.json files", len(sigs))
	}
	var sc opabundle.SignaturesConfig
	if err := json.Unmarshal(sigs[0].data, &sc); err != nil {
		return fmt.Errorf("%s: %w", sigs[0].path, err)
	}
	signed, err := opabundle.VerifyBundleSignature(sc, vc)
	if err != nil {
		return err
	}
	for _, f := range s.files {
		if f.path == sigs[0].path {
			continue
		}
		if err := opabundle.VerifyBundleFile(f.path, *bytes.NewBuffer(f.data), signed); err != nil {
			return err
		}
	}
	if len(signed) > 0 {
		missing := make([]string, 0, len(signed))
		for name := range signed {
			missing = append(missing, name)
		}
		slices.Sort(missing)
		return fmt.Errorf("signed files missing from the bundle: %s", strings.Join(missing, ", "))
	}
	return nil
}
