package appprobe

import (
	"strings"
	"testing"
)

// Whatever WARDEN_APP_PROBES holds, Parse does not panic, and what it
// accepts probes loopback only and encodes back to a value that parses to
// the same probes.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"app/readiness":{"httpGet":{"path":"/ready?x=1","port":8080,"scheme":"HTTPS","httpHeaders":[{"name":"Host","value":"a"}]},"timeoutSeconds":2}}`,
		`{"app/liveness":{"grpc":{"port":9090,"service":"s"}}}`,
		`{"a/startup":{"httpGet":{"path":"//192.0.2.1/x","port":1}}}`,
		`{"a/startup":{"httpGet":{"path":"http://user@192.0.2.1:80/x","port":1}}}`,
		`{}`, ``, `{"a/b":{}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := Parse(s)
		if err != nil {
			return
		}
		for k, p := range set {
			if p.HTTPGet == nil {
				continue
			}
			u, err := p.HTTPGet.URL()
			if err != nil {
				t.Fatalf("%s: accepted, but no URL: %v", k, err)
			}
			if u.Hostname() != "127.0.0.1" || u.User != nil || !strings.HasPrefix(u.String(), u.Scheme+"://127.0.0.1:") {
				t.Fatalf("%s: path %q probes %s", k, p.HTTPGet.Path, u)
			}
		}
		enc, err := set.Encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(enc)
		if err != nil {
			t.Fatalf("%s encodes to %s, which does not parse: %v", s, enc, err)
		}
		if enc2, _ := again.Encode(); enc2 != enc && len(set) > 0 {
			t.Fatalf("round trip: %s, then %s", enc, enc2)
		}
	})
}
