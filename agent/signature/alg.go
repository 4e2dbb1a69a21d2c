package signature

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/warden-sidecar/warden/agent/token"
)

// algorithm is an RFC 9421 signature algorithm (section 3.3).
type algorithm uint8

const (
	algNone algorithm = iota
	algEd25519
	algECDSAP256
	algECDSAP384
	algRSAPSS512
	algRSAv15SHA256
	algHMACSHA256
)

var algNames = [...]string{"", "ed25519", "ecdsa-p256-sha256", "ecdsa-p384-sha384", "rsa-pss-sha512", "rsa-v1_5-sha256", "hmac-sha256"}

func (a algorithm) String() string { return algNames[a] }

// minRSABits is the smallest RSA modulus accepted, to sign or verify.
const minRSABits = 2048

// algorithmFor is the one algorithm a key verifies: its type decides, and a
// JWK's "alg" may pin it, in JOSE's names, which map one to one (RFC 9421
// 3.3.7: PS512 is rsa-pss-sha512 with a 64-byte salt, ES256 the same r||s
// as ecdsa-p256-sha256). An RSA key verifies rsa-pss-sha512 unless its JWK
// says RS256: rsa-v1_5-sha256 is accepted only from keys pinned to it, so
// a PSS key is never downgraded to PKCS #1 v1.5 (RFC 9421 7.3.6); it is
// there for signers whose key stores only do v1.5. A shared secret
// verifies hmac-sha256 only, and no public key ever does.
func algorithmFor(k token.Key) (algorithm, error) {
	if k.Secret != nil {
		if k.Alg == "" || k.Alg == "HS256" {
			return algHMACSHA256, nil
		}
		return algNone, fmt.Errorf("alg %q for a shared secret, want HS256", k.Alg)
	}
	pin := func(a algorithm, jose ...string) (algorithm, error) {
		if k.Alg == "" {
			return a, nil
		}
		for _, j := range jose {
			if k.Alg == j {
				return a, nil
			}
		}
		return algNone, fmt.Errorf("alg %q is not one of RFC 9421's for this key type", k.Alg)
	}
	switch pub := k.Public.(type) {
	case ed25519.PublicKey:
		return pin(algEd25519, "EdDSA", "Ed25519")
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return pin(algECDSAP256, "ES256")
		case elliptic.P384():
			return pin(algECDSAP384, "ES384")
		}
		return algNone, errors.New("ECDSA key on a curve other than P-256 and P-384")
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return algNone, fmt.Errorf("RSA key of %d bits, want at least %d", pub.N.BitLen(), minRSABits)
		}
		if k.Alg == "RS256" {
			return algRSAv15SHA256, nil
		}
		return pin(algRSAPSS512, "PS512")
	}
	return algNone, fmt.Errorf("unsupported key type %T", k.Public)
}

// pssOptions are rsa-pss-sha512's: MGF1 with SHA-512, a 64-byte salt
// exactly (RFC 9421 3.3.1).
var pssOptions = &rsa.PSSOptions{SaltLength: 64, Hash: crypto.SHA512}

// verify checks sig over base with k, which algorithmFor mapped to a.
func (a algorithm) verify(k token.Key, base, sig []byte) bool {
	switch a {
	case algEd25519:
		pub, ok := k.Public.(ed25519.PublicKey)
		return ok && len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, base, sig)
	case algECDSAP256:
		pub, ok := k.Public.(*ecdsa.PublicKey)
		h := sha256.Sum256(base)
		return ok && verifyECDSA(pub, h[:], sig, 32)
	case algECDSAP384:
		pub, ok := k.Public.(*ecdsa.PublicKey)
		h := sha512.Sum384(base)
		return ok && verifyECDSA(pub, h[:], sig, 48)
	case algRSAPSS512:
		pub, ok := k.Public.(*rsa.PublicKey)
		h := sha512.Sum512(base)
		return ok && rsa.VerifyPSS(pub, crypto.SHA512, h[:], sig, pssOptions) == nil
	case algRSAv15SHA256:
		pub, ok := k.Public.(*rsa.PublicKey)
		h := sha256.Sum256(base)
		return ok && rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig) == nil
	case algHMACSHA256:
		if k.Secret == nil {
			return false
		}
		m := hmac.New(sha256.New, k.Secret)
		m.Write(base)
		var sum [sha256.Size]byte
		return hmac.Equal(m.Sum(sum[:0]), sig)
	}
	return false
}

// verifyECDSA checks a signature given as r||s, each size bytes.
func verifyECDSA(pub *ecdsa.PublicKey, hash, sig []byte, size int) bool {
	if len(sig) != 2*size {
		return false
	}
	r := new(big.Int).SetBytes(sig[:size])
	s := new(big.Int).SetBytes(sig[size:])
	return ecdsa.Verify(pub, hash, r, s)
}

// signerAlgorithm is the algorithm a private key signs with: rsa-pss-sha512
// for RSA (never v1.5), and the key type's one otherwise.
func signerAlgorithm(pub crypto.PublicKey) (algorithm, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return algEd25519, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return algECDSAP256, nil
		case elliptic.P384():
			return algECDSAP384, nil
		}
		return algNone, errors.New("ECDSA key on a curve other than P-256 and P-384")
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return algNone, fmt.Errorf("RSA key of %d bits, want at least %d", k.N.BitLen(), minRSABits)
		}
		return algRSAPSS512, nil
	}
	return algNone, fmt.Errorf("unsupported key type %T", pub)
}

// sign signs base with key (or secret, for hmac-sha256).
func (a algorithm) sign(key crypto.Signer, secret, base []byte) ([]byte, error) {
	switch a {
	case algEd25519:
		return key.Sign(rand.Reader, base, crypto.Hash(0))
	case algECDSAP256:
		h := sha256.Sum256(base)
		return signECDSA(key, h[:], crypto.SHA256, 32)
	case algECDSAP384:
		h := sha512.Sum384(base)
		return signECDSA(key, h[:], crypto.SHA384, 48)
	case algRSAPSS512:
		h := sha512.Sum512(base)
		return key.Sign(rand.Reader, h[:], pssOptions)
	case algRSAv15SHA256: // never chosen by NewSigner; the tests sign with it
		h := sha256.Sum256(base)
		return key.Sign(rand.Reader, h[:], crypto.SHA256)
	case algHMACSHA256:
		m := hmac.New(sha256.New, secret)
		m.Write(base)
		return m.Sum(nil), nil
	}
	return nil, fmt.Errorf("signature: cannot sign with %s", a)
}

// signECDSA signs and turns crypto.Signer's ASN.1 signature into r||s.
func signECDSA(key crypto.Signer, hash []byte, h crypto.Hash, size int) ([]byte, error) {
	der, err := key.Sign(rand.Reader, hash, h)
	if err != nil {
		return nil, err
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) > 0 {
		return nil, errors.New("signature: the ECDSA signer's output is not an ASN.1 signature")
	}
	if rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.BitLen() > 8*size || rs.S.BitLen() > 8*size {
		return nil, errors.New("signature: the ECDSA signer's r or s is out of range")
	}
	out := make([]byte, 2*size)
	rs.R.FillBytes(out[:size])
	rs.S.FillBytes(out[size:])
	return out, nil
}
