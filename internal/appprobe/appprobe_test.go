package appprobe

import (
	"strings"
	"testing"
)

func TestEncodeParseRoundTrip(t *testing.T) {
	set := Set{
		"app/readiness": {HTTPGet: &HTTPGet{Path: "/ready?x=<1>", Port: 8080, Scheme: SchemeHTTPS,
			HTTPHeaders: []Header{{Name: "Host", Value: "app.example"}}}, TimeoutSeconds: 3},
		"app/liveness": {GRPC: &GRPC{Port: 9090, Service: "orders"}},
	}
	s, err := set.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"app/liveness":{"grpc":{"port":9090,"service":"orders"}},"app/readiness":{"httpGet":{"path":"/ready?x=<1>","port":8080,"scheme":"HTTPS","httpHeaders":[{"name":"Host","value":"app.example"}]},"timeoutSeconds":3}}`
	if s != want {
		t.Fatalf("encoded\n%s\nwant\n%s", s, want)
	}
	back, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.Encode()
	if again != s {
		t.Errorf("round trip %s", again)
	}
}

// Whatever the path holds, the URL warden requests is on 127.0.0.1 at the
// probe's port: the host is never taken from the probe.
func TestURLStaysOnLoopback(t *testing.T) {
	tests := []struct{ path, want string }{
		{"", "http://127.0.0.1:8080/"},
		{"/healthz", "http://127.0.0.1:8080/healthz"},
		{"/healthz?full=1", "http://127.0.0.1:8080/healthz?full=1"},
		{"healthz", "http://127.0.0.1:8080/healthz"},
		{"//192.0.2.1/x", "http://127.0.0.1:8080/x"},
		{"http://192.0.2.1:80/x?y", "http://127.0.0.1:8080/x?y"},
		{"http://user:pw@192.0.2.1/x", "http://127.0.0.1:8080/x"},
		{"/a#frag", "http://127.0.0.1:8080/a"},
	}
	for _, tt := range tests {
		u, err := (&HTTPGet{Path: tt.path, Port: 8080}).URL()
		if err != nil {
			t.Fatalf("%q: %v", tt.path, err)
		}
		if u.String() != tt.want {
			t.Errorf("path %q: %s, want %s", tt.path, u, tt.want)
		}
	}
}

func TestRedacted(t *testing.T) {
	s := `{"app/readiness":{"httpGet":{"path":"/ready?access_token=s3cret&x=1","port":8080,"httpHeaders":[{"name":"Authorization","value":"Bearer s3cret"},{"name":"X-Probe","value":"yes"}]}}}`
	got := Redacted(s)
	if strings.Contains(got, "s3cret") || !strings.Contains(got, `"X-Probe","value":"yes"`) || !strings.Contains(got, "x=1") {
		t.Errorf("Redacted: %s", got)
	}
	if Redacted("{nope") != "[unparsable WARDEN_APP_PROBES]" {
		t.Error("an unparsable value is shown")
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct{ value, want string }{
		{`{"App/readiness":{"httpGet":{"port":1}}}`, `probe "App/readiness": expected the key <container>/<probe>`},
		{`{"app":{"httpGet":{"port":1}}}`, `probe "app": expected the key`},
		{`{"app/readiness":{"httpGet":{"port":1},"grpc":{"port":1}}}`, "not both"},
		{`{"app/readiness":{"httpGet":{"port":70000}}}`, "httpGet.port 70000: expected 1 to 65535"},
		{`{"app/readiness":{"httpGet":{"port":1,"scheme":"ftp"}}}`, `httpGet.scheme "ftp"`},
		{`{"app/readiness":{"httpGet":{"port":1,"httpHeaders":[{"name":"Bad Name","value":"x"}]}}}`, `name "Bad Name"`},
		{`{"app/readiness":{"httpGet":{"port":1}},"timeoutSeconds":1}`, `cannot unmarshal number`},
		{`{"app/readiness":{"httpGet":{"port":1},"timeoutSeconds":-1}}`, "timeoutSeconds -1"},
		{`{"app/readiness":{"tcpSocket":{"port":1}}}`, `unknown field "tcpSocket"`},
		{`{} {}`, "data after the JSON object"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.value)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%s): %v, want %q", tt.value, err, tt.want)
		}
	}
}
