package bundle

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	opabundle "github.com/open-policy-agent/opa/v1/bundle"

	"github.com/warden-sidecar/warden/internal/fetch"
)

// DefaultDecision is the rule asked when Options.Decision is empty.
const DefaultDecision = "warden/authz/allow"

const (
	// maxBundleBytes bounds what one load may hold in memory: the downloaded
	// or read archive, and the files it expands to.
	maxBundleBytes = 64 << 20
	// fetchTimeout bounds one download: connections, redirects and the body.
	fetchTimeout = 60 * time.Second
	// Backoff of Run's first load; later polls follow PollInterval.
	minBackoff = 200 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// ErrNotReady is returned by Decide (with a denying decision) while no bundle
// has been activated yet.
var ErrNotReady = errors.New("bundle: no policy bundle is active")

// ErrEvalTimeout is returned by Decide, wrapped and with a denying decision,
// when the policy did not decide within Options.EvalTimeout.
var ErrEvalTimeout = errors.New("bundle: policy evaluation timed out")

// Options configure an Engine. The zero value serves the embedded default
// bundle without a decision cache.
type Options struct {
	// Source is "" for the embedded default bundle, an http(s):// URL, a path
	// ending in .tar.gz or .tgz, or else a bundle directory. A URL is fetched
	// as given, but Status, errors and callbacks show it as scheme://host/path
	// only: its user info and query (a signed URL's signature) are secrets.
	Source string
	// PollInterval is how often Run checks the source for a new revision
	// (URLs with If-None-Match; files and directories by size and mtime, then
	// by content digest). 0 disables polling after the first load.
	PollInterval time.Duration
	// VerificationKeyPath names a PEM public key (or certificate), or a file
	// holding an HMAC shared secret. When set, every bundle from Source must
	// carry a valid .signatures.json made with it; the embedded default, which
	// is part of the binary, is exempt.
	VerificationKeyPath string
	// VerificationAlg is the JWS algorithm of the key; empty infers it: RSA
	// RS256, ECDSA by curve ES256/ES384/ES512, Ed25519 EdDSA, non-PEM HS256.
	VerificationAlg string
	// Decision is the rule asked, as a path under data ("warden/authz/allow").
	Decision string
	// CacheSize bounds the decisions cached per revision; 0 disables the cache.
	CacheSize int
	// CacheBytes bounds the memory the decisions cached per revision hold: each
	// entry's key, its decision's reason, headers and mask, and the
	// bookkeeping of the entry. 0 leaves CacheSize as the only bound, which lets requests
	// with large headers hold CacheSize times their size. The cache is split
	// into up to 64 shards; a decision larger than its shard's share of
	// CacheBytes is not cached.
	CacheBytes int64
	// CacheTTL is how long a decision without its own cache_ttl_seconds is
	// cached; 0 caches only decisions that carry cache_ttl_seconds.
	CacheTTL time.Duration
	// AllowNetwork lets policies call the builtins that do network I/O
	// (http.send, net.lookup_ip_addr). Without it, a bundle calling one is
	// rejected when compiled, with an error naming the builtin.
	AllowNetwork bool
	// EvalTimeout bounds each evaluation of the policy, the decision and its
	// mask together; a decision not made in time denies, with an error
	// wrapping ErrEvalTimeout, and is not cached. 0: no bound.
	EvalTimeout time.Duration
	// FetchOptions configure the fetcher of a URL source (trust roots, a
	// client certificate, the proxy), after the bundle's own limits (64 MiB,
	// 60s for a download), which they may change. See internal/fetch for
	// its timeouts and redirect rules.
	FetchOptions []fetch.Option
	// OnActivate is called after a new revision became active, and OnError
	// when a load attempt failed (the active revision stays; the same bad
	// content is reported once, an unreachable source at every poll). Both
	// run on the loading goroutine and must not call Load.
	OnActivate func(Status)
	OnError    func(error)
}

// Status is what the engine serves and how the last load went. The admin
// endpoint serializes it as is.
type Status struct {
	Source      string    `json:"source"`
	Revision    string    `json:"revision"`
	LoadedAt    time.Time `json:"loaded_at,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Active      bool      `json:"active"`
	// CacheKey lists the input fields the active revision's rules read, which
	// are all its decisions depend on and what the decision cache keys on:
	// field names ("method", "peer.spiffe_id"), headers.<name> for a header
	// read by name, or ["input"] when a rule reads the input as a whole (no
	// two requests then share a decision, their transactions differ). It is
	// empty when no rule reads the input.
	CacheKey []string `json:"cache_key,omitempty"`
}

// LoadError is a failed load attempt: which source, at which stage (read,
// fetch, verify, parse, compile), and why.
type LoadError struct {
	Source string
	Stage  string
	Err    error
}

func (e *LoadError) Error() string {
	return "bundle: " + e.Source + ": " + e.Stage + ": " + e.Err.Error()
}
func (e *LoadError) Unwrap() error { return e.Err }

// Engine is the decision point. It is safe for concurrent use; Decide takes
// no lock to read the active revision.
type Engine struct {
	opts     Options
	src      source
	decision ast.Ref
	query    ast.Body
	verify   *opabundle.VerificationConfig // nil: signatures are not checked
	caps     *ast.Capabilities             // what policies may use; nil: all of OPA

	state atomic.Pointer[compiled]

	loadMu sync.Mutex // one load at a time; guards the fields below
	// The outcome for the last content the source produced, so that an
	// unchanged source neither reloads nor reports the same failure again.
	lastDigest [sha256.Size]byte
	haveLast   bool
	lastErr    error

	statusMu    sync.Mutex
	statusErr   string
	statusErrAt time.Time
}

// New validates opts and reads the verification key. It does no I/O to the
// source: Load or Run does.
func New(opts Options) (*Engine, error) {
	if opts.PollInterval < 0 {
		return nil, fmt.Errorf("bundle: poll interval %v is negative", opts.PollInterval)
	}
	if opts.CacheSize < 0 {
		return nil, fmt.Errorf("bundle: cache size %d is negative", opts.CacheSize)
	}
	if opts.CacheBytes < 0 {
		return nil, fmt.Errorf("bundle: cache bytes %d is negative", opts.CacheBytes)
	}
	if opts.CacheTTL < 0 {
		return nil, fmt.Errorf("bundle: cache TTL %v is negative", opts.CacheTTL)
	}
	if opts.EvalTimeout < 0 {
		return nil, fmt.Errorf("bundle: evaluation timeout %v is negative", opts.EvalTimeout)
	}
	if opts.Decision == "" {
		opts.Decision = DefaultDecision
	}
	ref, err := decisionRef(opts.Decision)
	if err != nil {
		return nil, err
	}
	src, err := newSource(opts.Source, opts.FetchOptions)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		opts:     opts,
		src:      src,
		decision: ref,
		query:    ast.NewBody(ast.NewExpr(ast.NewTerm(ref))),
	}
	if !opts.AllowNetwork {
		e.caps = withoutNetwork(ast.CapabilitiesForThisVersion())
	}
	if opts.VerificationKeyPath != "" {
		if e.verify, err = verificationConfig(opts.VerificationKeyPath, opts.VerificationAlg); err != nil {
			return nil, err
		}
	} else if opts.VerificationAlg != "" {
		return nil, errors.New("bundle: a verification algorithm is set without a verification key")
	}
	return e, nil
}

// decisionRef turns "warden/authz/allow" into data.warden.authz.allow.
func decisionRef(path string) (ast.Ref, error) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	ref := ast.Ref{ast.DefaultRootDocument}
	for _, s := range segs {
		if s == "" {
			return nil, fmt.Errorf("bundle: decision %q is not a rule path such as %s", path, DefaultDecision)
		}
		ref = append(ref, ast.StringTerm(s))
	}
	return ref, nil
}

// Ready reports whether a bundle is active.
func (e *Engine) Ready() bool { return e.state.Load() != nil }

// Status reports the active revision and the last load error.
func (e *Engine) Status() Status {
	st := Status{Source: e.src.String()}
	// Under statusMu, which an activation holds while it swaps the revision
	// and clears the error: the status never pairs a new revision with the
	// error of the attempts before it.
	e.statusMu.Lock()
	c := e.state.Load()
	st.LastError, st.LastErrorAt = e.statusErr, e.statusErrAt
	e.statusMu.Unlock()
	if c != nil {
		st.Active = true
		st.Revision = c.revision
		st.LoadedAt = c.loadedAt
		st.CacheKey = slices.Clone(c.cacheKey)
	}
	return st
}

// Load makes one attempt to fetch, verify, compile and activate the source's
// bundle. When the source has not changed since the previous attempt it does
// nothing and returns that attempt's outcome.
func (e *Engine) Load(ctx context.Context) error {
	e.loadMu.Lock()
	defer e.loadMu.Unlock()

	snap, err := e.src.fetch(ctx)
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return err // shutting down: not the source's fault
		}
		e.fail(err)
		return err
	case snap == nil || (e.haveLast && snap.digest == e.lastDigest):
		// Nothing new. A failure of this same content was reported already;
		// Status shows it again if a fetch error had replaced it meanwhile.
		e.restoreError(e.lastErr)
		return e.lastErr
	}

	e.lastDigest, e.haveLast = snap.digest, true
	if active := e.state.Load(); active != nil && active.digest == snap.digest {
		// The source went back to what is active (after a bad revision, say).
		e.lastErr = nil
		e.clearError()
		return nil
	}
	c, err := e.compile(ctx, snap)
	if err != nil {
		if ctx.Err() != nil {
			// Interrupted, not judged: read it again next time.
			e.haveLast = false
			e.src.forget()
			return err
		}
		e.lastErr = err
		e.fail(err)
		return err
	}
	e.lastErr = nil
	e.statusMu.Lock()
	e.state.Store(c)
	e.statusErr, e.statusErrAt = "", time.Time{}
	e.statusMu.Unlock()
	if e.opts.OnActivate != nil {
		e.opts.OnActivate(e.Status())
	}
	return nil
}

func (e *Engine) fail(err error) {
	e.statusMu.Lock()
	e.statusErr, e.statusErrAt = err.Error(), time.Now()
	e.statusMu.Unlock()
	if e.opts.OnError != nil {
		e.opts.OnError(err)
	}
}

func (e *Engine) restoreError(err error) {
	if err == nil {
		e.clearError()
		return
	}
	e.statusMu.Lock()
	if msg := err.Error(); e.statusErr != msg {
		e.statusErr, e.statusErrAt = msg, time.Now()
	}
	e.statusMu.Unlock()
}

func (e *Engine) clearError() {
	e.statusMu.Lock()
	e.statusErr, e.statusErrAt = "", time.Time{}
	e.statusMu.Unlock()
}

// Run loads the source until a bundle is active, retrying with backoff, then
// polls it every PollInterval. It returns when ctx is done: nil once a bundle
// was active, otherwise the last load error.
func (e *Engine) Run(ctx context.Context) error {
	backoff := minBackoff
	limit := maxBackoff
	if e.opts.PollInterval > 0 {
		limit = min(limit, max(e.opts.PollInterval, minBackoff))
	}
	for !e.Ready() {
		err := e.Load(ctx)
		if e.Ready() {
			break
		}
		// Jitter spreads the pods of a deployment that all started together.
		wait := backoff/2 + rand.N(backoff/2+1)
		if !sleep(ctx, wait) {
			if err == nil {
				err = ctx.Err()
			}
			return err
		}
		backoff = min(2*backoff, limit)
	}
	if e.opts.PollInterval <= 0 || !e.src.changes() {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(e.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_ = e.Load(ctx) // recorded in Status and reported to OnError
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
