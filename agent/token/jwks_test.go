package token

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/warden-sidecar/warden/agent/token/tokentest"
	"github.com/warden-sidecar/warden/internal/fetch"
)

// jwksServer serves the JWKS document the test sets, with an ETag, and
// counts the fetches.
type jwksServer struct {
	mu      sync.Mutex
	doc     []byte
	status  int
	fetches atomic.Int64
	notMod  atomic.Int64
}

func (s *jwksServer) set(status int, doc []byte) {
	s.mu.Lock()
	s.status, s.doc = status, doc
	s.mu.Unlock()
}

func (s *jwksServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.fetches.Add(1)
	s.mu.Lock()
	status, doc := s.status, s.doc
	s.mu.Unlock()
	etag := fmt.Sprintf(`"%x"`, sha256.Sum256(doc))
	if status == 200 && r.Header.Get("If-None-Match") == etag {
		s.notMod.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.WriteHeader(status)
	w.Write(doc)
}

func startJWKSServer(t *testing.T, status int, doc []byte) (*jwksServer, string) {
	t.Helper()
	s := &jwksServer{}
	s.set(status, doc)
	hs := httptest.NewServer(s) // 127.0.0.1
	t.Cleanup(hs.Close)
	return s, hs.URL + "/.well-known/jwks.json"
}

// runJWKS runs j until the test ends.
func runJWKS(t *testing.T, j *JWKS) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = j.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type fakeClock struct{ t atomic.Pointer[time.Time] }

func newClock() *fakeClock          { c := &fakeClock{}; now := time.Now(); c.t.Store(&now); return c }
func (c *fakeClock) now() time.Time { return *c.t.Load() }
func (c *fakeClock) advance(d time.Duration) {
	next := c.now().Add(d)
	c.t.Store(&next)
}

// A key rotated in at the JWKS server is picked up by the first token that
// names it, without waiting for the refresh interval, and made-up kids
// cost at most one fetch per MinRefresh.
func TestKeyRotationIsPickedUpOnAnUnknownKID(t *testing.T) {
	k1, k2, k3 := tokentest.NewKey(t, "ES256", "2026-01"), tokentest.NewKey(t, "ES256", "2026-02"), tokentest.NewKey(t, "EdDSA", "2026-03")
	srv, url := startJWKSServer(t, 200, tokentest.JWKS(t, k1))
	clock := newClock()
	j, err := NewJWKS(JWKSOptions{Source: url, Refresh: time.Hour, MinRefresh: 30 * time.Second, now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	runJWKS(t, j)
	waitUntil(t, "first keys", j.Ready)
	v := newVerifier(t, j)
	verify := func(k *tokentest.Key) error { _, err := v.Verify([]byte(k.Mint(t, claims("alice")))); return err }

	if err := verify(k1); err != nil {
		t.Fatalf("token of the first key: %v", err)
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches after the first load, want 1", n)
	}

	srv.set(200, tokentest.JWKS(t, k1, k2)) // the issuer rotates k2 in
	if err := verify(k2); err != nil {
		t.Fatalf("token of the rotated-in key: %v", err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after one unknown kid, want 2", n)
	}
	if err := verify(k1); err != nil {
		t.Errorf("the old key stopped working: %v", err)
	}

	// Within MinRefresh, neither a new real key nor made-up kids fetch again.
	srv.set(200, tokentest.JWKS(t, k1, k2, k3))
	if err := verify(k3); ReasonOf(err) != ReasonUnknownKID {
		t.Errorf("a second rotation within 30s: %v, want unknown_kid", err)
	}
	for i := range 20 {
		_, err := v.Verify([]byte(k1.MintAs(t, "ES256", fmt.Sprint("made-up-", i), claims("mallory"))))
		if ReasonOf(err) != ReasonUnknownKID {
			t.Fatalf("made-up kid: %v", err)
		}
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after unknown kids within 30s, want still 2", n)
	}

	clock.advance(31 * time.Second)
	if err := verify(k3); err != nil {
		t.Errorf("the second rotation after 30s: %v", err)
	}
	if n := srv.fetches.Load(); n != 3 {
		t.Errorf("%d fetches, want 3", n)
	}
}

// Concurrent requests naming the same new kid share one fetch.
func TestConcurrentUnknownKIDsShareOneFetch(t *testing.T) {
	k1, k2 := tokentest.NewKey(t, "ES256", "a"), tokentest.NewKey(t, "ES256", "b")
	srv, url := startJWKSServer(t, 200, tokentest.JWKS(t, k1))
	j, err := NewJWKS(JWKSOptions{Source: url, Refresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	runJWKS(t, j)
	waitUntil(t, "first keys", j.Ready)
	srv.set(200, tokentest.JWKS(t, k1, k2))
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := j.Lookup("b", ""); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
	// Late arrivals may find the fetch over and MinRefresh running: they
	// fail only if they came after the load finished, when the key is there.
	if failed.Load() != 0 {
		t.Errorf("%d of 16 concurrent lookups of the new kid failed", failed.Load())
	}
}

// A JWKS server down at start: no keys (readiness waits), tokens refused
// with keys_unavailable; once it answers, keys arrive; when it fails later,
// the keys loaded before stay.
func TestJWKSDownAtStartThenUpThenDown(t *testing.T) {
	k := tokentest.NewKey(t, "RS256", "r1")
	srv, url := startJWKSServer(t, 503, nil)
	var errs, updates atomic.Int64
	j, err := NewJWKS(JWKSOptions{Source: url, Refresh: 50 * time.Millisecond,
		OnError: func(error) { errs.Add(1) }, OnUpdate: func(JWKSUpdate) { updates.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	runJWKS(t, j)
	waitUntil(t, "a failed load", func() bool { return errs.Load() > 0 })
	if j.Ready() {
		t.Fatal("ready without keys")
	}
	v := newVerifier(t, j)
	if _, err := v.Verify([]byte(k.Mint(t, claims("alice")))); ReasonOf(err) != ReasonKeysUnavailable {
		t.Errorf("token before keys: %v, want keys_unavailable", err)
	}

	srv.set(200, tokentest.JWKS(t, k))
	waitUntil(t, "keys", j.Ready)
	if _, err := v.Verify([]byte(k.Mint(t, claims("alice")))); err != nil {
		t.Errorf("token after keys arrived: %v", err)
	}
	// Unchanged documents are not reloaded (the ETag answers 304).
	waitUntil(t, "a 304", func() bool { return srv.notMod.Load() > 0 })
	if updates.Load() != 1 {
		t.Errorf("%d key set updates for one document", updates.Load())
	}

	before := errs.Load()
	srv.set(500, nil)
	waitUntil(t, "a failed refresh", func() bool { return errs.Load() > before })
	if _, err := v.Verify([]byte(k.Mint(t, claims("bob")))); err != nil {
		t.Errorf("token with the JWKS server down after keys were loaded: %v", err)
	}
}

func TestJWKSLimits(t *testing.T) {
	k := tokentest.NewKey(t, "ES256", "k")
	t.Run("an oversized JWKS is refused and the keys stay", func(t *testing.T) {
		srv, url := startJWKSServer(t, 200, tokentest.JWKS(t, k))
		j, _ := NewJWKS(JWKSOptions{Source: url})
		if err := j.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		srv.set(200, []byte(`{"keys":[],"pad":"`+strings.Repeat("x", maxJWKSBytes)+`"}`))
		if err := j.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("oversized JWKS: %v", err)
		}
		if _, err := j.Lookup("k", ""); err != nil {
			t.Errorf("keys lost: %v", err)
		}
	})
	t.Run("a redirect from https to http is refused", func(t *testing.T) {
		_, plainURL := startJWKSServer(t, 200, tokentest.JWKS(t, k))
		tlsSrv := httptest.NewTLSServer(http.RedirectHandler(plainURL, http.StatusFound))
		t.Cleanup(tlsSrv.Close)
		roots := x509.NewCertPool()
		roots.AddCert(tlsSrv.Certificate())
		j, _ := NewJWKS(JWKSOptions{Source: tlsSrv.URL + "/jwks", FetchOptions: []fetch.Option{fetch.WithRootCAs(roots)}})
		if err := j.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "https to http") {
			t.Errorf("https→http redirect: %v", err)
		}
	})
	t.Run("a server that never answers is given up on", func(t *testing.T) {
		block := make(chan struct{})
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(func() { close(block); hs.Close() })
		j, _ := NewJWKS(JWKSOptions{Source: hs.URL})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := j.Load(ctx); err == nil || time.Since(start) > 5*time.Second {
			t.Errorf("hanging server: %v after %s", err, time.Since(start))
		}
	})
}

func TestJWKSFromAFile(t *testing.T) {
	k1, k2 := tokentest.NewKey(t, "EdDSA", "one"), tokentest.NewKey(t, "EdDSA", "two")
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, tokentest.JWKS(t, k1), 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := NewJWKS(JWKSOptions{Source: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	gen := j.Generation()
	if err := j.Load(context.Background()); err != nil || j.Generation() != gen {
		t.Errorf("reloading the same file: %v, generation %d → %d", err, gen, j.Generation())
	}
	if err := os.WriteFile(path, tokentest.JWKS(t, k2), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := j.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Lookup("two", ""); err != nil || j.Generation() == gen {
		t.Errorf("after the file changed: %v, generation %d", err, j.Generation())
	}
}

func TestParseJWKSKeepsOnlySignatureKeys(t *testing.T) {
	good := tokentest.NewKey(t, "ES256", "good")
	enc, noKID := good.Public(), good.Public()
	enc.KeyID, enc.Use = "enc", "enc"
	noKID.KeyID = ""
	doc := `{"keys":[
		` + string(mustJSON(t, good.Public())) + `,
		{"kty":"oct","kid":"hmac","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
		` + string(mustJSON(t, smallRSA(t))) + `,
		` + string(mustJSON(t, enc)) + `,
		` + string(mustJSON(t, noKID)) + `,
		` + string(mustJSON(t, tokentest.NewKey(t, "ES256", "good").Public())) + `,
		{"kty":"weird","kid":"w"}
	]}`
	keys, skipped, err := ParseJWKS([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys["good"].Public == nil || keys["good"].Alg != "ES256" {
		t.Errorf("keys %v", keys)
	}
	if len(skipped) != 6 {
		t.Errorf("skipped %d: %q", len(skipped), skipped)
	}
	for _, bad := range []string{`[]`, `{}`, `{"keys":[{"kty":"oct","kid":"x","k":"AAAA"}]}`, `not json`} {
		if _, _, err := ParseJWKS([]byte(bad)); err == nil {
			t.Errorf("ParseJWKS(%s) accepted", bad)
		}
	}
}

// Shared secrets ("oct" keys) are for HTTP message signatures only: a JWKS
// keeps them when asked (Secrets), never for tokens, and a key holding one
// verifies no token algorithm.
func TestJWKSSecretsOnlyWhenAsked(t *testing.T) {
	good := tokentest.NewKey(t, "ES256", "ec")
	secret := "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ" // 64 bytes, base64url
	doc := []byte(`{"keys":[
		` + string(mustJSON(t, good.Public())) + `,
		{"kty":"oct","kid":"hmac","k":"` + secret + `"},
		{"kty":"oct","kid":"pinned","alg":"HS256","k":"` + secret + `"},
		{"kty":"oct","kid":"short","k":"c2VjcmV0c2VjcmV0c2VjcmV0"},
		{"kty":"oct","kid":"rsa-alg","alg":"RS256","k":"` + secret + `"},
		{"kty":"oct","kid":"enc","use":"enc","k":"` + secret + `"},
		{"kty":"oct","kid":"ec","k":"` + secret + `"}
	]}`)

	keys, _, err := ParseJWKS(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys["ec"].Public == nil {
		t.Errorf("without Secrets: keys %v", keys)
	}

	keys, skipped, err := parseJWKS(doc, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || len(keys["hmac"].Secret) != 64 || keys["pinned"].Alg != "HS256" || keys["ec"].Public == nil {
		t.Errorf("with Secrets: keys %v", keys)
	}
	if len(skipped) != 4 {
		t.Errorf("with Secrets: skipped %q", skipped)
	}
	for _, alg := range append(SupportedAlgorithms, "HS256") {
		if keys["hmac"].fits(alg) || keys["pinned"].fits(alg) {
			t.Errorf("a shared secret fits the token algorithm %s", alg)
		}
	}

	if _, err := NewJWKS(JWKSOptions{Source: "http://keys.example.test/jwks", Secrets: true}); err == nil {
		t.Error("secrets over plain http accepted")
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := NewJWKS(JWKSOptions{Source: path, Secrets: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if k, err := j.Lookup("hmac", ""); err != nil || len(k.Secret) != 64 {
		t.Errorf("Lookup(hmac) = %v, %v", k, err)
	}
}

// smallRSA is a 1024-bit RSA key: too weak to trust.
func smallRSA(t *testing.T) jose.JSONWebKey {
	priv, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	return jose.JSONWebKey{Key: &priv.PublicKey, KeyID: "small", Use: "sig"}
}

func mustJSON(t *testing.T, v interface{ MarshalJSON() ([]byte, error) }) []byte {
	b, err := v.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The secrets a JWKS URL may carry: basic auth credentials, and a
// presigned URL's signature in the query.
const (
	jwksUser = "jwksuser7"
	jwksPass = "hunter2pw"
	jwksSig  = "s3cr3tsig"
)

// noSecret fails t if msg holds any part of the JWKS URL's credentials.
func noSecret(t *testing.T, what, msg string) {
	t.Helper()
	for _, s := range []string{jwksUser, jwksPass, jwksSig, "sig=", "@"} {
		if strings.Contains(msg, s) {
			t.Errorf("%s %q holds %q", what, msg, s)
		}
	}
}

// A JWKS URL's userinfo and query are used to fetch (basic auth, the
// signature), and never shown: not in the update, the errors passed to
// OnError or returned, the refusals, or any error in their chains.
func TestJWKSURLCredentialsNeverShow(t *testing.T) {
	k := tokentest.NewKey(t, "ES256", "k")
	var mode atomic.Value // what the server does: "ok", "500", "garbage", "redirect-loop", "hang"
	mode.Store("500")
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, _ := r.BasicAuth(); u != jwksUser || p != jwksPass {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch mode.Load() {
		case "ok":
			if r.URL.Query().Get("sig") != jwksSig {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			w.Write(tokentest.JWKS(t, k))
		case "garbage":
			w.Write([]byte("<html>" + jwksSig))
		case "redirect-loop":
			http.Redirect(w, r, "/next?sig="+jwksSig+"&n="+r.URL.Query().Get("n")+"x", http.StatusFound)
		case "hang":
			<-r.Context().Done()
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(hs.Close)
	host := strings.TrimPrefix(hs.URL, "http://")
	src := "http://" + jwksUser + ":" + jwksPass + "@" + host + "/keys/jwks.json?sig=" + jwksSig + "#frag"
	shown := "http://" + host + "/keys/jwks.json"

	var mu sync.Mutex
	var onErr []error
	var updates []JWKSUpdate
	j, err := NewJWKS(JWKSOptions{Source: src, Refresh: time.Hour,
		OnError:  func(err error) { mu.Lock(); onErr = append(onErr, err); mu.Unlock() },
		OnUpdate: func(u JWKSUpdate) { mu.Lock(); updates = append(updates, u); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
		t.Logf("%s: %v", what, err)
		noSecret(t, what, err.Error())
		if !strings.Contains(err.Error(), shown) {
			t.Errorf("%s %q does not name %s", what, err, shown)
		}
		for e := err; e != nil; e = errors.Unwrap(e) {
			noSecret(t, what+" (in its chain)", e.Error())
			var ue *url.Error
			if errors.As(e, &ue) {
				t.Errorf("%s holds a *url.Error: %v", what, ue)
			}
		}
	}

	// Before any key: the refusal names the source.
	_, err = j.Lookup("k", "")
	check("keys_unavailable refusal", err)

	for _, m := range []string{"500", "garbage", "redirect-loop"} {
		mode.Store(m)
		check("load with the server answering "+m, j.Load(context.Background()))
	}
	mode.Store("hang")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	check("load from a server that does not answer", j.Load(ctx))
	cancel()

	// Through Run: OnError, then OnUpdate once the server answers.
	mode.Store("500")
	runJWKS(t, j)
	waitUntil(t, "an OnError call", func() bool { mu.Lock(); defer mu.Unlock(); return len(onErr) > 0 })
	mode.Store("ok")
	waitUntil(t, "keys", j.Ready)
	mu.Lock()
	for _, e := range onErr {
		check("OnError", e)
	}
	if len(updates) != 1 || updates[0].Source != shown || len(updates[0].KIDs) != 1 {
		t.Errorf("updates %+v, want one naming %s", updates, shown)
	}
	mu.Unlock()

	// The server refused to answer without the basic auth and the
	// signature: the keys prove both were sent.
	if _, err := j.Lookup("k", ""); err != nil {
		t.Fatal(err)
	}

	hs.Close() // connection refused
	check("load from a closed server", j.Load(context.Background()))
}

func TestNewJWKSDoesNotEchoAURLItRefuses(t *testing.T) {
	for _, src := range []string{
		"ftp://" + jwksUser + ":" + jwksPass + "@example.test/jwks?sig=" + jwksSig,
		"https://" + jwksUser + ":" + jwksPass + "@/jwks?sig=" + jwksSig,
		"https://" + jwksUser + ":" + jwksPass + "@exa mple.test/jwks?sig=" + jwksSig,
	} {
		_, err := NewJWKS(JWKSOptions{Source: src})
		if err == nil {
			t.Fatalf("%s accepted", src)
		}
		noSecret(t, "NewJWKS error", err.Error())
	}
}
