package signature

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"

	"github.com/dunglas/httpsfv"
)

// checkDigest checks a Content-Digest field (RFC 9530) against the body:
// every sha-256 and sha-512 member must match, compared in constant time,
// and at least one must be there; members of other algorithms are ignored
// (the deprecated md5, sha, crc32c, ... prove nothing here). Whether a
// body must come with the field is the required components' business.
func checkDigest(field []byte, body []byte) *Error {
	d, err := httpsfv.UnmarshalDictionary([]string{string(field)})
	if err != nil {
		return refuse(ReasonMalformed, "Content-Digest: "+err.Error())
	}
	checked := 0
	for _, alg := range d.Names() {
		var sum []byte
		switch alg {
		case "sha-256":
			s := sha256.Sum256(body)
			sum = s[:]
		case "sha-512":
			s := sha512.Sum512(body)
			sum = s[:]
		default:
			continue
		}
		m, _ := d.Get(alg)
		item, ok := m.(httpsfv.Item)
		if !ok {
			return refuse(ReasonMalformed, "Content-Digest "+alg+" is not a byte sequence")
		}
		got, ok := item.Value.([]byte)
		if !ok {
			return refuse(ReasonMalformed, "Content-Digest "+alg+" is not a byte sequence")
		}
		if subtle.ConstantTimeCompare(got, sum) != 1 {
			return refuse(ReasonDigestMismatch, "Content-Digest "+alg+" does not match the body")
		}
		checked++
	}
	if checked == 0 {
		return refuse(ReasonDigestMismatch, "Content-Digest has neither sha-256 nor sha-512")
	}
	return nil
}

// ContentDigest returns the Content-Digest field value of body with
// sha-256 (RFC 9530): "sha-256=:<base64>:".
func ContentDigest(body []byte) string {
	s := sha256.Sum256(body)
	b := make([]byte, 0, len("sha-256=::")+base64.StdEncoding.EncodedLen(len(s)))
	b = append(b, "sha-256=:"...)
	b = base64.StdEncoding.AppendEncode(b, s[:])
	return string(append(b, ':'))
}
