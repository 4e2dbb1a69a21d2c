package redact

import (
	"strings"
	"testing"
)

func TestURLShowsSchemeHostAndPathOnly(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://user:pa55@bundles.example/b/bundle.tar.gz?X-Amz-Signature=abc#frag", "https://bundles.example/b/bundle.tar.gz"},
		{"http://127.0.0.1:8181/jwks", "http://127.0.0.1:8181/jwks"},
		{"/etc/warden/bundle.tar.gz", "/etc/warden/bundle.tar.gz"},
		{"http://%zz", "[unparsable URL]"},
		{"unix:///spiffe-workload-api/spire-agent.sock", "unix:///spiffe-workload-api/spire-agent.sock"},
		{"unix:///run/agent.sock?token=s3cret", "unix:///run/agent.sock"},
		{"unix://user:pw@/run/agent.sock", "[unparsable URL]"},
		{"https://u:p@exa mple/jwks?sig=x", "[unparsable URL]"},
	}
	for _, tt := range tests {
		if got := URL(tt.in); got != tt.want {
			t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestQueryRedactsSecretsWhateverTheirEncoding(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a=1&b=2", "a=1&b=2"},
		{"access_token=s1&x=1", "access_token=REDACTED&x=1"},
		{"%61ccess_token=s1&client%5Fsecret=s2", "%61ccess_token=REDACTED&client%5Fsecret=REDACTED"},
		{"X-Amz-Signature=s3&page=2", "X-Amz-Signature=REDACTED&page=2"},
		{"my_api_key=s4", "my_api_key=REDACTED"},
		{"session%2Did=s5", "session%2Did=REDACTED"},
		{"jwt=s1&code=s2&sig=s3&X-Goog-Credential=s4&refresh_token=s5&id_token=s1", "jwt=REDACTED&code=REDACTED&sig=REDACTED&X-Goog-Credential=REDACTED&refresh_token=REDACTED&id_token=REDACTED"},
	}
	for _, tt := range tests {
		got := Query(tt.in)
		if got != tt.want {
			t.Errorf("Query(%q) = %q, want %q", tt.in, got, tt.want)
		}
		for _, s := range []string{"s1", "s2", "s3", "s4", "s5"} {
			if strings.Contains(got, "="+s) {
				t.Errorf("Query(%q) kept the secret %s", tt.in, s)
			}
		}
	}
}

func TestCredentialNames(t *testing.T) {
	for _, n := range []string{"x-api-key", "X-Auth-Token", "Session-Id", "x-signature", "Cookie", "proxy-authorization", "X-Password", "Sec-WebSocket-Protocol"} {
		if !IsCredentialName(n) {
			t.Errorf("%s not taken for a credential", n)
		}
	}
	for _, n := range []string{"accept", "user-agent", "x-user", "content-type", "upgrade", "sec-websocket-version"} {
		if IsCredentialName(n) {
			t.Errorf("%s taken for a credential", n)
		}
	}
}

func BenchmarkQueryWithoutSecrets(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = Query("page=2&size=50&sort=name")
	}
}

func BenchmarkIsCredentialName(b *testing.B) {
	names := []string{"x-api-version", "user-agent", "accept", "content-type", "x-forwarded-for"}
	b.ReportAllocs()
	for b.Loop() {
		for _, n := range names {
			if IsCredentialName(n) {
				b.Fatal(n)
			}
		}
	}
}

func TestPathDropsWhatCanHoldCredentials(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/public/items", "/public/items"},
		{"/public;jsessionid=S1", "/public;REDACTED"},
		{"/a;x=S1/b;y=S2", "/a;REDACTED/b;REDACTED"},
		{"/a%3Bjsessionid=S1/b", "/a;REDACTED/b"},
		{"/public?access_token=S1", "/public"},
		{"/public#access_token=S1", "/public"},
		{"/public%3Faccess_token=S1", "/public"},
		{"/public%23access_token=S1", "/public"},
		{"http://alice:S1@app.local/public?x=S2", "/public"},
		{"https://app.local", ""},
	}
	for _, tt := range tests {
		if got := Path(tt.in); got != tt.want {
			t.Errorf("Path(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := Path([]byte(tt.in)); string(got) != tt.want {
			t.Errorf("Path([]byte(%q)) = %q, want %q", tt.in, got, tt.want)
		}
	}
	clean := []byte("/api/v1/items")
	if n := testing.AllocsPerRun(100, func() { _ = Path(clean) }); n != 0 {
		t.Errorf("a clean path costs %v allocations", n)
	}
}
