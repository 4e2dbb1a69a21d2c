package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "tokengen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("tokengen", flag.ContinueOnError)
	out := fs.String("out", "", "`directory` for jwks.json and token")
	iss := fs.String("iss", "https://issuer.bench.warden.local", "the token's iss")
	aud := fs.String("aud", "app", "the token's aud")
	sub := fs.String("sub", "user-42", "the token's sub")
	ttl := fs.Duration("ttl", 2*time.Hour, "the token's lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("-out is required")
	}
	if *ttl <= 0 {
		return fmt.Errorf("-ttl %s: want a positive duration", *ttl)
	}
	jwks, token, err := mint(*iss, *aud, *sub, time.Now(), *ttl)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "jwks.json"), jwks, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(*out, "token"), []byte(token+"\n"), 0o600)
}

// mint returns the JWKS of a fresh ES256 key and a token it signed.
func mint(iss, aud, sub string, now time.Time, ttl time.Duration) (jwks []byte, token string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	const kid = "bench-1"
	jwks, err = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: key.Public(), KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"},
	}})
	if err != nil {
		return nil, "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return nil, "", err
	}
	claims, err := json.Marshal(map[string]any{
		"iss": iss, "aud": aud, "sub": sub, "scope": "orders:read",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(),
	})
	if err != nil {
		return nil, "", err
	}
	obj, err := signer.Sign(claims)
	if err != nil {
		return nil, "", err
	}
	token, err = obj.CompactSerialize()
	return jwks, token, err
}
