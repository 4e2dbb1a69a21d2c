package signature

import "testing"

// RFC 9530's examples (and RFC 9421's test-request), then what a verifier
// must refuse.
func TestContentDigest(t *testing.T) {
	const (
		helloLF   = "{\"hello\": \"world\"}\n" // RFC 9530 appendix B's representation: the JSON object and a LF
		hello     = `{"hello": "world"}`       // RFC 9530 appendix D's input, RFC 9421's test-request content
		sha256LF  = "RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg="
		sha512LF  = "YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7yZ/WkppmM44T3qg=="
		sha512RFC = "WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew=="
	)
	for _, tc := range []struct {
		name, field, body string
		reason            string // "" accepted
	}{
		{"RFC 9530 B.1: sha-256 of the representation", "sha-256=:" + sha256LF + ":", helloLF, ""},
		{"RFC 9530 section 2: sha-512", "sha-512=:" + sha512LF + ":", helloLF, ""},
		{"both algorithms, both checked", "sha-256=:" + sha256LF + ":, sha-512=:" + sha512LF + ":", helloLF, ""},
		{"RFC 9530 B.2: empty content", "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:", "", ""},
		{"RFC 9530 B.3: partial content", "sha-256=:jjcgBDWNAtbYUXI37CVG3gRuGOAjaaDRGpIUFsdyepQ=:", "\"world\"}\n", ""},
		{"RFC 9530 D: sample values, RFC 9421's test-request", "sha-512=:" + sha512RFC + ":, sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:", hello, ""},
		{"an unknown algorithm beside sha-256 is ignored", "unixsum=:AAAA:, sha-256=:" + sha256LF + ":", helloLF, ""},
		{"whitespace the dictionary allows", "sha-256=:" + sha256LF + ":  ,  sha-512=:" + sha512LF + ":", helloLF, ""},

		{"the body changed", "sha-256=:" + sha256LF + ":", hello, ReasonDigestMismatch},
		{"the full representation's digest on partial content", "sha-256=:" + sha256LF + ":", "\"world\"}\n", ReasonDigestMismatch},
		{"sha-256 right, sha-512 wrong", "sha-256=:" + sha256LF + ":, sha-512=:" + sha512RFC + ":", helloLF, ReasonDigestMismatch},
		{"sha-512 wrong, sha-256 right", "sha-512=:" + sha512RFC + ":, sha-256=:" + sha256LF + ":", helloLF, ReasonDigestMismatch},
		{"a truncated digest", "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/l:", helloLF, ReasonDigestMismatch},
		{"only algorithms known here to prove nothing (RFC 9530 D's md5 and sha)", "md5=:Sd/dVLAcvNLSq16eXua5uQ==:, sha=:07CavjDP4u3/TungoUHJO/Wzr4c=:", hello, ReasonDigestMismatch},
		{"an empty dictionary", "", helloLF, ReasonDigestMismatch},
		{"the algorithm in upper case is another key", "SHA-256=:" + sha256LF + ":", helloLF, ReasonMalformed},
		{"a token, not a byte sequence", "sha-256=" + "abc", helloLF, ReasonMalformed},
		{"a boolean member", "sha-256", helloLF, ReasonMalformed},
		// RFC 9530 B.5 and B.6 print this digest with "==": a typo
		// strict base64 refuses.
		{"RFC 9530 B.5's padding typo", "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg==:", helloLF, ReasonMalformed},
		{"the legacy Digest syntax", "SHA-256=RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=", helloLF, ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkDigest([]byte(tc.field), []byte(tc.body))
			switch {
			case tc.reason == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.reason != "" && (err == nil || err.Reason != tc.reason):
				t.Errorf("got %v, want %s", err, tc.reason)
			}
		})
	}
}

func TestContentDigestField(t *testing.T) {
	if got, want := ContentDigest([]byte("{\"hello\": \"world\"}\n")), "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"; got != want {
		t.Errorf("ContentDigest = %s, want RFC 9530's %s", got, want)
	}
}
