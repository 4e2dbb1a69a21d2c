package main

// Red-team tests: requests warden lets through that the policy did not
// really decide, that the app reads differently from warden, or whose
// secrets reach a log. Each runs against the real binary with the recording
// app of attack_test.go.
//
// Each numbered finding was a bypass of the code it was written against,
// fixed since; TestRedTeamStoppedAttacks pins attacks warden already
// stopped that the attack tests do not cover.

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/token/tokentest"
)

// --- Finding 1: a token warden did not verify reaches the app ---------------

// With WARDEN_JWT_REQUIRED=false, "an invalid token still gets 401". But
// warden reads a token only after "Bearer" and one space: "Bearer<TAB>x" or
// "Bearer<NBSP>x" counts as no token at all, so the policy runs without
// input.token and the request reaches the app with its Authorization header,
// unverified. Apps that split the header on any whitespace take the token:
// Django REST framework (simplejwt's header.split()), flask-jwt-extended,
// Python's str.split() generally (it splits on U+00A0 too, and WSGI hands
// header values over as Latin-1 strings).
func TestRedTeamTokenAfterTabIsNeverVerified(t *testing.T) {
	k := tokentest.NewKey(t, "ES256", "rt-key")
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, tokentest.JWKS(t, k), 0o600); err != nil {
		t.Fatal(err)
	}
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_POLICY_BUNDLE="+policyDir(t, accountsPolicy), "WARDEN_JWT_JWKS="+file,
		"WARDEN_JWT_ISSUERS="+jwtIssuer, "WARDEN_JWT_AUDIENCES="+jwtAudience, "WARDEN_JWT_REQUIRED=false")
	admin := userClaims("admin")
	admin["roles"] = []string{"admin"}
	// Forged: no signature at all (alg none), and expired.
	forged := secret(t, "forged bearer token", tokentest.Unsigned(t, k.KID, admin))
	expired := userClaims("admin")
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	stale := secret(t, "expired bearer token", k.Mint(t, expired))

	// The control: with one space, both are refused.
	for name, tok := range map[string]string{"forged": forged, "expired": stale} {
		before := app.received()
		wantRefused(t, name+" token after one space", s.send(t, rawGET("/public", "Authorization: Bearer "+tok)), 401, "unauthorized")
		if app.received() != before {
			t.Errorf("the %s token after one space reached the app", name)
		}
	}
	for _, sep := range []struct{ name, bytes string }{{"a tab", "\t"}, {"a no-break space", "\xa0"}, {"two tabs", "\t\t"}} {
		for name, tok := range map[string]string{"forged": forged, "expired": stale} {
			t.Run(name+" token after "+sep.name+" is refused like after a space", func(t *testing.T) {
				before := len(app.requests())
				got := s.send(t, rawGET("/public", "Authorization: Bearer"+sep.bytes+tok))
				if got.status != 401 {
					t.Errorf("GET /public with Authorization: Bearer%q<%s token>: got %s, want 401 as with one space", sep.bytes, name, got)
				}
				for _, r := range app.requests()[before:] {
					if v := r.values("Authorization"); len(v) > 0 {
						t.Errorf("the app received Authorization %q: a token warden never verified", strings.ReplaceAll(v[0], tok, "<"+name+" token>"))
					}
				}
			})
		}
	}
}

// --- Finding 2: credentials in the request line reach the log ---------------

// The request line of a request warden refuses is logged as raw_path (and as
// the access line's path). That path can be a credential: a servlet session
// id (";jsessionid="), the userinfo of an absolute-form target, an OAuth
// implicit-flow token after '#', or a query string the client encoded into
// the path. For bad_request, conn.requestLine cuts the target at '?' only.
func TestRedTeamCredentialsInTheRequestLineAreNeverLogged(t *testing.T) {
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_POLICY_BUNDLE="+policyDir(t, logPolicy))
	tests := []struct {
		name string
		raw  func(secret string) string
	}{
		{"a jsessionid path parameter (input_refused, access)", func(v string) string {
			return rawGET("/public;jsessionid=" + v)
		}},
		{"a jsessionid path parameter in a request with a header line without a colon (bad_request)", func(v string) string {
			return "GET /public;jsessionid=" + v + " HTTP/1.1\r\nHost: app.local\r\nno colon here\r\n\r\n"
		}},
		{"a jsessionid path parameter with a method override header (input_refused, access)", func(v string) string {
			return rawGET("/public;jsessionid="+v, "X-HTTP-Method: PUT")
		}},
		{"the password of an absolute-form target in a malformed request (bad_request)", func(v string) string {
			return "GET http://alice:" + v + "@app.local/public HTTP/1.1\r\nHost: app.local\r\nno colon here\r\n\r\n"
		}},
		{"an access token after '#' in a malformed request (bad_request)", func(v string) string {
			return "GET /public#access_token=" + v + " HTTP/1.1\r\nHost: app.local\r\nno colon here\r\n\r\n"
		}},
		{"an access token in a query the client encoded into the path (input_refused, access)", func(v string) string {
			return rawGET("/public%3Faccess_token=" + v)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := randomSecret(t, "credential in the request line", "rt-")
			got := s.send(t, tt.raw(v))
			if got.status != 400 {
				t.Fatalf("got %s, want 400", got)
			}
			id := got.header.Get("X-Request-Id")
			s.find(t, func(l map[string]any) bool { return l["event"] == "access" && l["request_id"] == id })
			reportLeaks(t, s.process)
		})
	}
}

// --- Finding 3: Host is compared as sent, routed case-insensitively ----------

// warden checks Host's syntax but hands the policy (and the app) Host as
// sent. Host names are case-insensitive and "name." is "name": nginx,
// Envoy's virtual hosts and Express's vhost route "ADMIN.internal" and
// "admin.internal." to admin.internal, while the policy compares strings.
// The attack tests' own hostPolicy is bypassed.
func TestRedTeamHostIsNotCanonical(t *testing.T) {
	exact := `package warden.authz
default allow := false
allow if object.get(input.headers, "host", "") != "admin.internal"
`
	for _, tt := range []struct {
		name, policy, host string
	}{
		{"upper case against a prefix rule", hostPolicy, "ADMIN.internal"},
		{"mixed case against a prefix rule", hostPolicy, "Admin.Internal"},
		{"mixed case with a port against a prefix rule", hostPolicy, "aDmin.internal:15443"},
		{"a trailing dot against an exact rule", exact, "admin.internal."},
		{"upper case against an exact rule", exact, "ADMIN.INTERNAL"},
	} {
		t.Run(tt.name+": Host "+tt.host+" is decided as admin.internal", func(t *testing.T) {
			app := startApp(t, appOptions{})
			s := startSidecar(t, app, "WARDEN_POLICY_BUNDLE="+policyDir(t, tt.policy))
			if got := s.send(t, "GET /h HTTP/1.1\r\nHost: admin.internal\r\n\r\n"); got.status != 403 {
				t.Fatalf("the control, Host admin.internal: got %s, want 403", got)
			}
			got := s.send(t, "GET /h HTTP/1.1\r\nHost: "+tt.host+"\r\n\r\n")
			if got.status == 200 {
				r := app.last(t)
				t.Errorf("Host %s: got %s; the app received Host %q, which a case-insensitive router serves as admin.internal",
					tt.host, got, r.values("Host"))
			}
		})
	}
}

// --- Finding 4: ';' in the query is a separator to some apps ----------------

// input.query splits pairs on '&' only; the query reaches the app as sent.
// Rack 2 (Rails, Sinatra: DEFAULT_SEP = /[&;] */), Python's parse_qs before
// 3.9.2 / 3.8.8 / 3.7.10 / 3.6.13 (and bottle, web.py and others built on the
// old default) and Jetty (";" in query) also split on ';', so
// "?x=1;debug=1" carries a parameter the policy never saw.
func TestRedTeamSemicolonInQuery(t *testing.T) {
	policy := `package warden.authz
default allow := false
allow if {
	input.path == "/public"
	not input.query.debug
}
`
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_POLICY_BUNDLE="+policyDir(t, policy))
	if got := s.send(t, rawGET("/public?x=1&debug=1")); got.status != 403 {
		t.Fatalf("the control, ?x=1&debug=1: got %s, want 403", got)
	}
	before := app.received()
	got := s.send(t, rawGET("/public?x=1;debug=1"))
	if got.status == 200 {
		t.Errorf("?x=1;debug=1: got %s; the app received %q, where Rack 2 and legacy parse_qs read debug=1",
			got, app.last(t).target)
	}
	if got.status != 200 && app.received() != before {
		t.Errorf("?x=1;debug=1 was refused and still reached the app")
	}
}

// --- Stopped: attacks warden already stops ---------------------------------

// redteamPolicy allows everything but /admin and below.
const redteamPolicy = `package warden.authz
default allow := false
allow if not startswith(input.path, "/admin")
`

// Framing variants, Connection tricks, pipelining and request-line oddities
// the attack tests do not cover: each is refused, or reaches the app
// re-framed and decided on what the app reads.
func TestRedTeamStoppedAttacks(t *testing.T) {
	app := startApp(t, appOptions{ignoreBodies: true})
	s := startSidecar(t, app, "WARDEN_POLICY_BUNDLE="+policyDir(t, redteamPolicy))
	post := func(headers, body string) string {
		return "POST /up HTTP/1.1\r\nHost: app.local\r\n" + headers + "\r\n" + body
	}
	refused := []struct{ name, raw string }{
		{"Transfer-Encoding identity with Content-Length", post("Transfer-Encoding: identity\r\nContent-Length: 5\r\n", "hello")},
		{"Transfer-Encoding gzip, chunked", post("Transfer-Encoding: gzip, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")},
		{"two Transfer-Encoding chunked headers", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")},
		{"Transfer-Encoding chunked on HTTP/1.0", "POST /up HTTP/1.0\r\nHost: app.local\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"a chunk size of 19 digits", post("Transfer-Encoding: chunked\r\n", "0000000000000000005\r\nhello\r\n0\r\n\r\n")},
		{"a chunk size that overflows 64 bits", post("Transfer-Encoding: chunked\r\n", "10000000000000005\r\nhello\r\n0\r\n\r\n")},
		{"Content-Length +5", post("Content-Length: +5\r\n", "hello")},
		{"Content-Length 5, 5", post("Content-Length: 5, 5\r\n", "hello")},
		{"two equal Content-Length headers", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello")},
		{"a bare CR inside a header value", rawGET("/cr", "X-A: x\rX-Forwarded-Client-Cert: URI=spiffe://evil")},
		{"a CR before the CRLF of a header line", rawGET("/cr2", "X-A: b\r")},
		{"a NUL in a header value", rawGET("/nul", "X-A: a\x00b")},
		{"a vertical tab in a header value", rawGET("/vt", "X-A: a\vb")},
		{"a space in the query", "GET /q?a b HTTP/1.1\r\nHost: app.local\r\n\r\n"},
		{"a second request line in the query", "GET /q?x HTTP/1.1 /admin HTTP/1.1\r\nHost: app.local\r\n\r\n"},
		{"a tab in the query", "GET /q?x=\t HTTP/1.1\r\nHost: app.local\r\n\r\n"},
		{"tabs between the request line's parts", "GET\t/admin\tHTTP/1.1\r\nHost: app.local\r\n\r\n"},
		{"two spaces after the method", "GET  /admin HTTP/1.1\r\nHost: app.local\r\n\r\n"},
		{"a lower-case version", "GET /v http/1.1\r\nHost: app.local\r\n\r\n"},
		{"a lower-case method", "get /admin HTTP/1.1\r\nHost: app.local\r\n\r\n"},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: app.local\r\n\r\n"},
		{"CONNECT", "CONNECT admin.internal:443 HTTP/1.1\r\nHost: admin.internal:443\r\n\r\n"},
		{"an encoded dot-dot after a dot", rawGET("/.%2e/admin")},
		{"an encoded tab at the end of /admin", rawGET("/admin%09")},
		{"a double-encoded space", rawGET("/admin%2520")},
		{"an overlong '/'", rawGET("/public/%c0%af..%c0%afadmin")},
		{"%u-encoding", rawGET("/%u002e%u002e/admin")},
		{"Host and HOST", "GET /h HTTP/1.1\r\nhost: app.local\r\nHOST: app.local\r\n\r\n"},
		{"an empty port", "GET /h HTTP/1.1\r\nHost: app.local:\r\n\r\n"},
		{"junk after an IPv6 literal", "GET /h HTTP/1.1\r\nHost: [::1]junk\r\n\r\n"},
		{"an absolute-form target with the default port only there", "GET http://app.local:80/h HTTP/1.1\r\nHost: app.local\r\n\r\n"},
	}
	for _, tt := range refused {
		t.Run(tt.name+" never reaches the app", func(t *testing.T) {
			before := app.received()
			got := s.send(t, tt.raw)
			if got.err == nil && got.status < 400 {
				t.Errorf("got %s, want a refusal", got)
			}
			if n := app.received() - before; n != 0 {
				t.Errorf("the app received %d requests: %q", n, app.last(t).line)
			}
		})
	}

	reframed := []struct{ name, headers, size string }{
		{"Transfer-Encoding chunked with a trailing space", "Transfer-Encoding: chunked \r\n", "5"},
		{"Transfer-Encoding Chunked", "Transfer-Encoding: Chunked\r\n", "5"},
		{"a chunk extension", "Transfer-Encoding: chunked\r\n", "5;ext=\"x\""},
		{"Connection naming Transfer-Encoding", "Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n", "5"},
	}
	for _, tt := range reframed {
		t.Run(tt.name+" reaches the app with Content-Length and the whole body", func(t *testing.T) {
			got := s.send(t, post(tt.headers, tt.size+"\r\nhello\r\n0\r\n\r\n"))
			if got.status != 200 {
				t.Fatalf("got %s, want 200", got)
			}
			r := app.last(t)
			if te := r.values("Transfer-Encoding"); len(te) != 0 || string(r.body) != "hello" || !slices.Equal(r.values("Content-Length"), []string{"5"}) {
				t.Errorf("the app received Transfer-Encoding %q, Content-Length %q, body %q", te, r.values("Content-Length"), r.body)
			}
		})
	}

	t.Run("Content-Length 005 and Connection naming Content-Length reach the app as Content-Length 5", func(t *testing.T) {
		for _, h := range []string{"Content-Length: 005\r\n", "Connection: Content-Length\r\nContent-Length: 5\r\n"} {
			if got := s.send(t, post(h, "hello")); got.status != 200 {
				t.Fatalf("%q: got %s, want 200", h, got)
			}
			if r := app.last(t); string(r.body) != "hello" || !slices.Equal(r.values("Content-Length"), []string{"5"}) {
				t.Errorf("%q: the app received Content-Length %q and body %q", h, r.values("Content-Length"), r.body)
			}
		}
	})

	t.Run("a Connection header naming warden's own headers cannot remove them", func(t *testing.T) {
		got := s.send(t, rawGET("/conn", "Connection: X-Forwarded-Client-Cert, X-Forwarded-For, X-Forwarded-Proto, X-Request-Id, Host"))
		if got.status != 200 {
			t.Fatalf("got %s, want 200", got)
		}
		r := app.last(t)
		if v := once(t, r, "X-Forwarded-Client-Cert"); v != wardenXFCC {
			t.Errorf("the app's XFCC is %q", v)
		}
		once(t, r, "X-Forwarded-For")
		once(t, r, "X-Forwarded-Proto")
		once(t, r, "X-Request-Id")
		if v := once(t, r, "Host"); v == "app.local" {
			// Not a bypass (the policy saw no Host either), but worth knowing.
			t.Logf("Host survived Connection: Host")
		}
	})

	t.Run("an h2c upgrade never reaches the app; a refused WebSocket upgrade is an ordinary request", func(t *testing.T) {
		// h2c is never tunnelled: after its 101 the connection would carry
		// HTTP/2 requests the policy never sees (WARDEN_ALLOW_UPGRADE
		// refuses it at startup too).
		before := app.receivedTarget("/upgrade")
		h2c := []string{"Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"}
		if got := s.send(t, rawGET("/upgrade", h2c...)); got.status != 400 || !strings.Contains(got.body, "upgrade_not_allowed") {
			t.Fatalf("Upgrade: h2c: got %s, want 400 upgrade_not_allowed", got)
		}
		if app.receivedTarget("/upgrade") != before {
			t.Fatal("the app received the h2c upgrade request")
		}
		// A WebSocket upgrade the app does not accept (it answers 200) is
		// relayed as an ordinary response: no tunnel, no HTTP2-Settings.
		ws := []string{"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"}
		if got := s.send(t, rawGET("/upgrade", ws...)); got.status != 200 {
			t.Fatalf("Upgrade: websocket to an app that answers 200: got %s, want the app's 200", got)
		}
		if v := app.last(t).values("HTTP2-Settings"); len(v) != 0 {
			t.Errorf("the app received HTTP2-Settings %q", v)
		}
	})

	t.Run("a request pipelined after a body is decided by the policy", func(t *testing.T) {
		before := app.receivedTarget("/admin/secret")
		c := s.dial(t)
		first := c.do(post("Content-Length: 5\r\n", "hello") + "GET /admin/secret HTTP/1.1\r\nHost: app.local\r\n\r\n")
		if first.status != 200 {
			t.Fatalf("the POST: got %s, want 200", first)
		}
		if second := c.do(""); second.status != 403 {
			t.Errorf("the pipelined GET /admin/secret: got %s, want 403", second)
		}
		if app.receivedTarget("/admin/secret") != before {
			t.Errorf("the app received /admin/secret")
		}
	})

	t.Run("a fragment in the target is not forwarded", func(t *testing.T) {
		if got := s.send(t, rawGET("/public#/../admin")); got.status != 200 {
			t.Fatalf("got %s, want 200", got)
		}
		if r := app.last(t); r.target != "/public" {
			t.Errorf("the app received target %q, want /public", r.target)
		}
	})
}
