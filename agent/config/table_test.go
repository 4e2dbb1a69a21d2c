package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// lookup is a map lookup: a key present with "" is set and empty.
func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// Every variable is declared completely: parsed by someone, documented,
// named once.
func TestEveryVariableHasAParserAndDocumentation(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range Vars {
		switch {
		case v.set == nil:
			t.Errorf("%s has no setter", v.Name)
		case v.Meaning == "":
			t.Errorf("%s has no meaning", v.Name)
		case v.Readers == 0 || v.Readers&^(BySidecar|ByInit|ByWebhook) != 0:
			t.Errorf("%s: readers %b", v.Name, v.Readers)
		case seen[v.Name]:
			t.Errorf("%s is declared twice", v.Name)
		case v.Empty != "" && v.Default == "":
			t.Errorf("%s: an empty value is its default already, Empty %q says nothing", v.Name, v.Empty)
		}
		seen[v.Name] = true
		if got, ok := Lookup(v.Name); !ok || got.Name != v.Name || Default(v.Name) != v.Default {
			t.Errorf("Lookup(%s) = %v, %v", v.Name, got.Name, ok)
		}
	}
	if _, ok := Lookup("WARDEN_NOPE"); ok {
		t.Error("Lookup found an unknown variable")
	}
	if len(WebhookVars) != 9 || slices.ContainsFunc(WebhookVars, func(v Var) bool { return v.Readers != ByWebhook }) {
		t.Errorf("WebhookVars %v", WebhookVars)
	}
}

// A bad value of each kind of variable is an *Error naming the variable,
// its value (redacted) and what was expected, in the message's usual form.
func TestErrorsAsForEachKind(t *testing.T) {
	tests := []struct {
		variable, value string
		shown           string // the value as the error shows it: redacted
	}{
		{"WARDEN_INBOUND_ADDR", "0.0.0.0", "0.0.0.0"},                       // address
		{"WARDEN_UPSTREAM_PORT", "http", "http"},                            // port
		{"WARDEN_OUTBOUND_ADDR", "10.0.0.1:15001", "10.0.0.1:15001"},        // loopback address
		{"WARDEN_OUTBOUND_ROUTES", "orders", "orders"},                      // routes
		{"WARDEN_IDENTITY", "spire", "spire"},                               // one of
		{"WARDEN_ALLOW_GET_BODY", "yes", "yes"},                             // boolean
		{"WARDEN_READ_TIMEOUT", "soon", "soon"},                             // positive duration
		{"WARDEN_JWT_CLOCK_SKEW", "-1s", "-1s"},                             // duration
		{"WARDEN_MAX_CONNECTIONS", "0", "0"},                                // positive integer
		{"WARDEN_MAX_HEADER_BYTES", "100", "100"},                           // size
		{"WARDEN_POLICY_CACHE_SIZE", "-1", "-1"},                            // whole number
		{"WARDEN_CONN_RATE_LIMIT", "fast", "fast"},                          // rate
		{"WARDEN_BPF_INTERFACE", "eth0/1", "eth0/1"},                        // interface
		{"WARDEN_STRIP_HEADERS", "X Bad", "X Bad"},                          // header names
		{"WARDEN_ALLOWED_METHODS", "GET,(", "GET,("},                        // methods
		{"WARDEN_JWT_HEADER", "Cookie", "Cookie"},                           // token header
		{"WARDEN_JWT_ALGORITHMS", "HS256", "HS256"},                         // algorithms
		{"WARDEN_POLICY_DECISION", "warden/1allow", "warden/1allow"},        // rule path
		{"WARDEN_POLICY_VERIFICATION_KEY", "/nonexistent", "/nonexistent"},  // file
		{"WARDEN_SPIFFE_ID", "warden.local/app", "warden.local/app"},        // SPIFFE ID
		{"WARDEN_TRUST_DOMAIN", "Bad Domain", "Bad Domain"},                 // trust domain
		{"WARDEN_REDIRECT_PORTS", "15443", "15443"},                         // redirect ports
		{"WARDEN_POLICY_BUNDLE", "ftp://u:pw@host/b?sig=s", "ftp://host/b"}, // URL
	}
	for _, tt := range tests {
		t.Run(tt.variable, func(t *testing.T) {
			_, err := FromEnv(lookup(map[string]string{"WARDEN_IDENTITY": "dev", tt.variable: tt.value}))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("%v is not an *Error", err)
			}
			if ce.Variable != tt.variable || ce.Value != tt.shown || ce.Expected == "" {
				t.Errorf("%+v", ce)
			}
			if msg := fmt.Sprintf("config: %s=%q: expected %s", ce.Variable, ce.Value, ce.Expected); err.Error() != msg {
				t.Errorf("message %q, want %q", err, msg)
			}
		})
	}
	if _, err := InitFromEnv(lookup(map[string]string{"WARDEN_PROXY_UID": "0"})); !isError(err, "WARDEN_PROXY_UID", "") {
		t.Errorf("uid: %v", err)
	}
	if _, err := WebhookFromEnv(lookup(map[string]string{"WARDEN_SIDECAR_IMAGE": "-image"})); !isError(err, "WARDEN_SIDECAR_IMAGE", "") {
		t.Errorf("image: %v", err)
	}
}

// An error about two variables names the one at fault and the other one.
func TestErrorsAboutTwoVariables(t *testing.T) {
	jwt := map[string]string{"WARDEN_IDENTITY": "dev", "WARDEN_JWT_JWKS": "https://idp.example/jwks", "WARDEN_JWT_AUDIENCES": "orders"}
	tests := []struct {
		name              string
		set               map[string]string
		variable, related string
		init              bool
	}{
		{"a JWT setting without JWKS", map[string]string{"WARDEN_IDENTITY": "dev", "WARDEN_JWT_REQUIRED": "false"}, "WARDEN_JWT_REQUIRED", "WARDEN_JWT_JWKS", false},
		{"issuers missing for a JWKS URL", jwt, "WARDEN_JWT_ISSUERS", "WARDEN_JWT_JWKS", false},
		{"spiffe JWKS in dev mode", map[string]string{"WARDEN_IDENTITY": "dev", "WARDEN_JWT_JWKS": "spiffe", "WARDEN_JWT_AUDIENCES": "a"}, "WARDEN_JWT_JWKS", "WARDEN_IDENTITY", false},
		{"workloadapi without a socket", map[string]string{}, "SPIFFE_ENDPOINT_SOCKET", "WARDEN_IDENTITY", false},
		{"redirecting the admin port", map[string]string{"WARDEN_UPSTREAM_PORT": "15000"}, "WARDEN_UPSTREAM_PORT", "WARDEN_ADMIN_ADDR", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.init {
				_, err = InitFromEnv(lookup(tt.set))
			} else {
				_, err = FromEnv(lookup(tt.set))
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Variable != tt.variable || ce.Related != tt.related || !strings.Contains(err.Error(), tt.related) {
				t.Errorf("%v: %+v", err, ce)
			}
		})
	}
}

func isError(err error, variable, value string) bool {
	var ce *Error
	return errors.As(err, &ce) && ce.Variable == variable && (value == "" || ce.Value == value)
}

// Set to "", a variable whose empty value means something gets that
// meaning; any other one, and any unset one, its default. A getenv
// function cannot tell the two apart: there "" is unset, as before.
func TestUnsetVersusEmpty(t *testing.T) {
	read := func(t *testing.T, m map[string]string) Config {
		t.Helper()
		m["WARDEN_IDENTITY"] = "dev"
		c, err := FromEnv(lookup(m))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	def := read(t, map[string]string{})
	if def.OutboundAddr != "127.0.0.1:15001" || len(def.StripHeaders) != 6 {
		t.Fatalf("defaults: %q, %v", def.OutboundAddr, def.StripHeaders)
	}
	for _, v := range []string{"", " ", OutboundOff} {
		if c := read(t, map[string]string{"WARDEN_OUTBOUND_ADDR": v}); c.OutboundAddr != "" {
			t.Errorf("WARDEN_OUTBOUND_ADDR=%q: listener on %q", v, c.OutboundAddr)
		}
	}
	for _, v := range []string{"", " ", StripNone} {
		if c := read(t, map[string]string{"WARDEN_STRIP_HEADERS": v}); c.StripHeaders != nil {
			t.Errorf("WARDEN_STRIP_HEADERS=%q: strips %v", v, c.StripHeaders)
		}
	}
	c := read(t, map[string]string{"WARDEN_READ_TIMEOUT": "", "WARDEN_JWT_HEADER": " ", "WARDEN_REDIRECT_PORTS": ""})
	if c.ReadTimeout != def.ReadTimeout || c.JWTHeader != "Authorization" || !slices.Equal(c.RedirectPorts, []int{8080}) {
		t.Errorf("an empty value without a meaning of its own is not the default: %v %q %v", c.ReadTimeout, c.JWTHeader, c.RedirectPorts)
	}
	// Set but empty, a JWT variable is not "set": no JWKS is needed.
	read(t, map[string]string{"WARDEN_JWT_ISSUERS": ""})

	c, err := FromEnv(env(map[string]string{"WARDEN_IDENTITY": "dev", "WARDEN_OUTBOUND_ADDR": "", "WARDEN_STRIP_HEADERS": ""}))
	if err != nil || c.OutboundAddr != def.OutboundAddr || len(c.StripHeaders) != 6 {
		t.Errorf("getenv: %q, %v, %v", c.OutboundAddr, c.StripHeaders, err)
	}

	o := Overrides(lookup(map[string]string{"WARDEN_OUTBOUND_ADDR": "", "WARDEN_READ_TIMEOUT": "", "WARDEN_IDLE_TIMEOUT": "120s", "WARDEN_PROXY_UID": "7"}))
	if v, ok := o["WARDEN_OUTBOUND_ADDR"]; len(o) != 1 || !ok || v != "" {
		t.Errorf("overrides %v", o)
	}
}
