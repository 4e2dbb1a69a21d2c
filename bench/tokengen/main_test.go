package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/token"
)

func TestWardenVerifiesTheMintedToken(t *testing.T) {
	dir := t.TempDir()
	if err := run([]string{"-out", dir, "-iss", "https://issuer.test", "-aud", "app", "-ttl", "1h"}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := token.NewJWKS(token.JWKSOptions{Source: filepath.Join(dir, "jwks.json")})
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Load(context.Background()); err != nil {
		t.Fatalf("warden refuses the JWKS: %v", err)
	}
	for _, tc := range []struct {
		name      string
		issuer    string
		audiences []string
		reason    token.Reason
	}{
		{"accepted for its issuer and audience", "https://issuer.test", []string{"app"}, ""},
		{"refused by another audience", "https://issuer.test", []string{"other"}, token.ReasonAudience},
		{"refused from another issuer", "https://other.test", []string{"app"}, token.ReasonIssuer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := token.New(token.Options{Keys: keys, Issuers: []string{tc.issuer}, Audiences: tc.audiences})
			if err != nil {
				t.Fatal(err)
			}
			vt, err := v.Verify([]byte(strings.TrimSpace(string(raw))))
			switch {
			case tc.reason == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.reason == "":
				if exp := vt.Expiry; exp.Before(time.Now().Add(59*time.Minute)) || vt.Claims["sub"] != "user-42" {
					t.Errorf("expiry %v claims %v", exp, vt.Claims)
				}
			case token.ReasonOf(err) != tc.reason:
				t.Errorf("got %v, want %s", err, tc.reason)
			}
		})
	}
}
