package token

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/warden-sidecar/warden/internal/fetch"
	"github.com/warden-sidecar/warden/internal/redact"
)

const (
	// DefaultRefresh is how often a JWKS is loaded again.
	DefaultRefresh = 5 * time.Minute
	// DefaultMinRefresh is the shortest interval between two loads that
	// unknown kids trigger: a client sending made-up kids costs at most one
	// fetch per interval.
	DefaultMinRefresh = 30 * time.Second
	// DefaultKIDWait is how long a request naming an unknown kid waits for
	// the load it triggered.
	DefaultKIDWait = 2 * time.Second

	maxJWKSBytes = 256 << 10
	maxJWKSKeys  = 100
	// fetchTimeout bounds one fetch: connections, redirects and the body.
	fetchTimeout = 10 * time.Second
	minBackoff   = 200 * time.Millisecond
	maxBackoff   = 30 * time.Second
)

// JWKSOptions configure a JWKS.
type JWKSOptions struct {
	// Source is a file path or an http(s):// URL. A URL's userinfo (sent
	// as basic auth), query and fragment are used to fetch but never shown:
	// JWKSUpdate.Source, the errors passed to OnError or returned, and
	// refusals name the URL as redact.URL gives it.
	Source string
	// Refresh is how often the source is loaded again; 0: DefaultRefresh.
	Refresh time.Duration
	// MinRefresh and KIDWait: see DefaultMinRefresh and DefaultKIDWait.
	MinRefresh time.Duration
	KIDWait    time.Duration
	// FetchOptions configure the fetcher of a URL source (trust roots, a
	// client certificate, the proxy), after the JWKS's own limits (256 KiB,
	// 10s a fetch), which they may change. See internal/fetch for its
	// timeouts and redirect rules.
	FetchOptions []fetch.Option
	// Secrets keeps "oct" keys (shared secrets of at least 32 bytes, alg
	// absent or HS*) as Key.Secret, for HTTP message signatures' hmac-sha256.
	// A JWKS for tokens never sets it. A secret is never fetched over plain
	// http://: NewJWKS refuses such a source.
	Secrets bool
	// OnUpdate is called when a load brought a different key set (the
	// first one included), OnError when a load failed (the keys loaded
	// before stay). They run on Run's goroutine.
	OnUpdate func(JWKSUpdate)
	OnError  func(error)

	now func() time.Time // tests
}

// JWKSUpdate describes a newly loaded key set.
type JWKSUpdate struct {
	Source  string   // JWKSOptions.Source as redact.URL shows it
	KIDs    []string // sorted
	Skipped []string // keys left out, and why (encryption keys, symmetric keys, weak keys, ...)
}

// JWKS is a key set from a JSON Web Key Set document (RFC 7517) in a file
// or at a URL, loaded by Run and swapped atomically; Lookup reads it
// without locking.
type JWKS struct {
	opts    JWKSOptions
	source  string         // what messages name: redact.URL(opts.Source)
	fetcher *fetch.Fetcher // nil for a file

	set atomic.Pointer[map[string]Key]
	gen generation

	kick     chan struct{}
	mu       sync.Mutex
	lastKick time.Time
	inflight chan struct{} // closed when the load an unknown kid asked for has finished

	// Run's goroutine only.
	etag       string
	lastDigest [sha256.Size]byte
}

// NewJWKS checks the options; Run loads the keys.
func NewJWKS(opts JWKSOptions) (*JWKS, error) {
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.MinRefresh <= 0 {
		opts.MinRefresh = DefaultMinRefresh
	}
	if opts.KIDWait <= 0 {
		opts.KIDWait = DefaultKIDWait
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	j := &JWKS{opts: opts, source: redact.URL(opts.Source), kick: make(chan struct{}, 1)}
	switch {
	case opts.Source == "":
		return nil, errors.New("token: JWKS: no source")
	case strings.Contains(opts.Source, "://"):
		u, err := url.Parse(opts.Source)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("token: JWKS %s: want an http:// or https:// URL or a file", j.source)
		}
		if opts.Secrets && u.Scheme != "https" {
			return nil, fmt.Errorf("token: JWKS %s: shared secrets are fetched over https:// only", j.source)
		}
		own := []fetch.Option{
			fetch.WithMaxBytes(maxJWKSBytes),
			fetch.WithTimeouts(fetch.Timeouts{Total: fetchTimeout}),
			fetch.WithAccept("application/jwk-set+json, application/json"),
		}
		j.fetcher = fetch.New(append(own, opts.FetchOptions...)...)
	}
	return j, nil
}

// Ready reports whether keys have been loaded.
func (j *JWKS) Ready() bool { return j.set.Load() != nil }

// Generation implements Keys.
func (j *JWKS) Generation() uint64 { return j.gen.Generation() }

// Lookup implements Keys. An unknown kid makes it ask Run for a load (at
// most once per MinRefresh) and wait up to KIDWait for it: a key the issuer
// just rotated in is picked up by the first token that names it.
func (j *JWKS) Lookup(kid, _ string) (Key, error) {
	set := j.set.Load()
	if set == nil {
		return Key{}, refuse(ReasonKeysUnavailable, "JWKS "+j.source+" not loaded yet")
	}
	if k, ok := (*set)[kid]; ok {
		return k, nil
	}
	// Looked up again even when no load was allowed: one may have finished
	// since the first lookup.
	j.awaitRefresh()
	if k, ok := (*j.set.Load())[kid]; ok {
		return k, nil
	}
	return Key{}, refuse(ReasonUnknownKID, "kid "+quote(kid)+" not in the JWKS")
}

// awaitRefresh asks Run for a load, or joins the one asked for already,
// and waits for it, at most KIDWait. It returns at once when no load may
// start yet (MinRefresh).
func (j *JWKS) awaitRefresh() {
	j.mu.Lock()
	ch := j.inflight
	if ch == nil {
		now := j.opts.now()
		if !j.lastKick.IsZero() && now.Sub(j.lastKick) < j.opts.MinRefresh {
			j.mu.Unlock()
			return
		}
		j.lastKick = now
		ch = make(chan struct{})
		j.inflight = ch
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
	j.mu.Unlock()
	t := time.NewTimer(j.opts.KIDWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

// Run loads the keys now, again every Refresh and when an unknown kid asks
// for it, until ctx ends. Until the first load succeeds it retries from
// 200ms, doubling up to 30s; after a failed refresh the keys loaded before
// stay, and it retries the same way (at most every Refresh).
func (j *JWKS) Run(ctx context.Context) error {
	backoff := minBackoff
	for {
		err := j.loadOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := j.opts.Refresh
		if err != nil {
			if j.opts.OnError != nil {
				j.opts.OnError(err)
			}
			wait = min(backoff, j.opts.Refresh)
			backoff = min(2*backoff, maxBackoff)
		} else {
			backoff = minBackoff
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-j.kick:
			t.Stop()
		}
	}
}

// loadOnce is one load. The waiters registered before it started are
// released when it ends: it may have brought their kid.
func (j *JWKS) loadOnce(ctx context.Context) error {
	j.mu.Lock()
	waiters := j.inflight
	select {
	case <-j.kick: // this load answers it
	default:
	}
	j.mu.Unlock()
	defer func() {
		if waiters == nil {
			return
		}
		j.mu.Lock()
		if j.inflight == waiters {
			j.inflight = nil
		}
		j.mu.Unlock()
		close(waiters)
	}()
	return j.Load(ctx)
}

// Load reads the source once and swaps the key set in if it changed. It
// must not run concurrently with itself (Run calls it; tests may, without Run).
func (j *JWKS) Load(ctx context.Context) error {
	body, err := j.read(ctx)
	if err != nil || body == nil { // nil: not modified
		return err
	}
	digest := sha256.Sum256(body)
	if j.set.Load() != nil && digest == j.lastDigest {
		return nil
	}
	keys, skipped, err := parseJWKS(body, j.opts.Secrets)
	if err != nil {
		return fmt.Errorf("token: JWKS %s: %w", j.source, err)
	}
	j.set.Store(&keys)
	j.lastDigest = digest
	j.gen.bump()
	if j.opts.OnUpdate != nil {
		kids := make([]string, 0, len(keys))
		for kid := range keys {
			kids = append(kids, kid)
		}
		slices.Sort(kids)
		j.opts.OnUpdate(JWKSUpdate{Source: j.source, KIDs: kids, Skipped: skipped})
	}
	return nil
}

// read returns the document, or nil when the server says it has not changed.
func (j *JWKS) read(ctx context.Context) ([]byte, error) {
	if j.fetcher == nil {
		f, err := os.Open(j.opts.Source)
		if err != nil {
			return nil, fmt.Errorf("token: JWKS: %w", err)
		}
		defer f.Close()
		body, err := fetch.ReadAll(f, maxJWKSBytes)
		if err != nil {
			return nil, fmt.Errorf("token: JWKS %s: %w", j.source, err)
		}
		return body, nil
	}
	etag := j.etag
	if j.set.Load() == nil {
		etag = "" // no keys to keep on a 304
	}
	doc, err := j.fetcher.Fetch(ctx, j.opts.Source, etag)
	if err != nil {
		return nil, fmt.Errorf("token: JWKS %s: %w", j.source, err)
	}
	if doc.NotModified {
		return nil, nil
	}
	j.etag = doc.ETag
	return doc.Body, nil
}

// ParseJWKS reads a JSON Web Key Set and returns its signature keys by kid.
// Keys that cannot verify tokens here are left out and listed in skipped:
// encryption keys, symmetric keys, keys without kid, unsupported types or
// algorithms, RSA keys under 2048 bits, and second keys with a kid already
// seen. Private keys are used by their public half. A set with no usable
// key is an error.
func ParseJWKS(doc []byte) (keys map[string]Key, skipped []string, err error) {
	return parseJWKS(doc, false)
}

// minSecretBytes is the shortest shared secret kept: HMAC-SHA256's output
// size (RFC 7518 3.2 asks at least that much for HS256).
const minSecretBytes = 32

// parseJWKS is ParseJWKS that, with secrets, also keeps "oct" keys as
// Key.Secret (see JWKSOptions.Secrets).
func parseJWKS(doc []byte, secrets bool) (keys map[string]Key, skipped []string, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	if err := dec.Decode(&set); err != nil {
		return nil, nil, fmt.Errorf("not a JWKS: %w", err)
	}
	if set.Keys == nil {
		return nil, nil, errors.New("not a JWKS: no \"keys\" list")
	}
	if len(set.Keys) > maxJWKSKeys {
		return nil, nil, fmt.Errorf("%d keys, at most %d", len(set.Keys), maxJWKSKeys)
	}
	keys = make(map[string]Key, len(set.Keys))
	for i, raw := range set.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		name := fmt.Sprintf("key %d (kid %s)", i, quote(jwk.KeyID))
		if secret, ok := jwk.Key.([]byte); ok && secrets {
			switch {
			case jwk.KeyID == "":
				skipped = append(skipped, name+": no kid")
			case jwk.Use != "" && jwk.Use != "sig":
				skipped = append(skipped, name+": use "+quote(jwk.Use))
			case jwk.Algorithm != "" && !strings.HasPrefix(jwk.Algorithm, "HS"):
				skipped = append(skipped, name+": alg "+quote(jwk.Algorithm)+" for a shared secret")
			case len(secret) < minSecretBytes:
				skipped = append(skipped, fmt.Sprintf("%s: shared secret of %d bytes, want at least %d", name, len(secret), minSecretBytes))
			case known(keys, jwk.KeyID):
				skipped = append(skipped, name+": kid seen before")
			default:
				keys[jwk.KeyID] = Key{Secret: secret, Alg: jwk.Algorithm}
			}
			continue
		}
		if !jwk.IsPublic() {
			jwk = jwk.Public() // a zero key for symmetric ones
			jwk.KeyID = keyIDOf(raw)
		}
		switch {
		case jwk.KeyID == "":
			skipped = append(skipped, name+": no kid")
		case jwk.Use != "" && jwk.Use != "sig":
			skipped = append(skipped, name+": use "+quote(jwk.Use))
		case jwk.Key == nil:
			skipped = append(skipped, name+": symmetric or unknown key type")
		case jwk.Algorithm != "" && CheckAlgorithms([]string{jwk.Algorithm}) != nil:
			skipped = append(skipped, name+": alg "+quote(jwk.Algorithm))
		case known(keys, jwk.KeyID):
			skipped = append(skipped, name+": kid seen before")
		default:
			if err := usablePublicKey(jwk.Key); err != nil {
				skipped = append(skipped, name+": "+err.Error())
				continue
			}
			keys[jwk.KeyID] = Key{Public: jwk.Key, Alg: jwk.Algorithm}
		}
	}
	if len(keys) == 0 {
		return nil, skipped, fmt.Errorf("no usable signature key (skipped: %s)", strings.Join(skipped, "; "))
	}
	return keys, skipped, nil
}

func known(keys map[string]Key, kid string) bool {
	_, ok := keys[kid]
	return ok
}

// keyIDOf reads a JWK's kid when go-jose's Public dropped it.
func keyIDOf(raw json.RawMessage) string {
	var k struct {
		KID string `json:"kid"`
	}
	_ = json.Unmarshal(raw, &k)
	return k.KID
}
