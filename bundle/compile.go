package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	opabundle "github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/warden-sidecar/warden/internal/cache"
)

// networkBuiltins are OPA's builtins that do network I/O. A policy calling
// them would make every uncached decision wait on another service, tie the
// sidecar's availability to it, and could send request data anywhere. The
// pure net.cidr_* builtins stay: policies check input.sender with them.
var networkBuiltins = []string{"http.send", "net.lookup_ip_addr"}

// compiled is one active revision. It is immutable once published, except for
// the cache it owns, which dies with it.
type compiled struct {
	revision string
	digest   [sha256.Size]byte
	loadedAt time.Time
	query    rego.PreparedEvalQuery
	mask     *rego.PreparedEvalQuery // data.system.log.mask; nil when the bundle has none
	key      keySpec                 // what of the input the decisions depend on
	cacheKey []string
	cache    *cache.Cache[Decision] // nil when disabled
	ttl      time.Duration
	timeout  time.Duration // of one evaluation; 0: none
}

// withoutNetwork removes networkBuiltins from c, so that the compiler
// refuses a call to one as an undefined function, and empties AllowNet,
// which the builtins doing network I/O check before any connection.
func withoutNetwork(c *ast.Capabilities) *ast.Capabilities {
	c.Builtins = slices.DeleteFunc(slices.Clone(c.Builtins), func(b *ast.Builtin) bool {
		return slices.Contains(networkBuiltins, b.Name)
	})
	c.AllowNet = []string{}
	return c
}

// networkError explains a compile error that comes from a call to a
// builtin withoutNetwork removed; it returns nil for any other error.
func networkError(err error) error {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		return nil
	}
	for _, e := range errs {
		name, ok := strings.CutPrefix(e.Message, "undefined function ")
		if e.Code == ast.TypeErr && ok && slices.Contains(networkBuiltins, name) {
			return fmt.Errorf("%v: %s does network I/O, which policies may do only when WARDEN_POLICY_ALLOW_NETWORK is true (Options.AllowNetwork)", e.Location, name)
		}
	}
	return nil
}

// compile turns a snapshot into an activatable revision: verify the signature
// before anything is parsed, read the bundle with OPA's reader (which verifies
// again as it reads), then prepare the decision query once.
func (e *Engine) compile(ctx context.Context, snap *snapshot) (*compiled, error) {
	src := e.src.String()
	fail := func(stage string, err error) (*compiled, error) {
		return nil, &LoadError{Source: src, Stage: stage, Err: err}
	}
	if snap.bad != nil {
		return fail("read", snap.bad)
	}
	verify := e.verify
	if snap.trusted {
		verify = nil
	}
	if verify != nil {
		if err := verifySnapshot(snap, verify); err != nil {
			return fail("verify", err)
		}
	}
	r := opabundle.NewCustomReader(&memLoader{files: snap.files}).
		WithSizeLimitBytes(maxBundleBytes).
		WithBundleName("warden")
	if verify != nil {
		r = r.WithBundleVerificationConfig(verify)
	} else {
		r = r.WithSkipBundleVerification(true)
	}
	b, err := r.Read()
	if err != nil {
		return fail("parse", err)
	}
	switch {
	case b.Type() == opabundle.DeltaBundleType:
		return fail("parse", errors.New("delta bundles are not supported"))
	case len(b.WasmModules) > 0 || len(b.PlanModules) > 0:
		return fail("parse", errors.New("wasm and plan bundles are not supported; build with --target rego"))
	}

	// The store is the engine's rather than rego's own, so that the mask
	// query can be prepared against the same compiler and data; rego writes
	// the bundle's data into it only in a transaction it is given.
	compiler := ast.NewCompiler().WithCapabilities(e.caps)
	store := inmem.New()
	txn, err := store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		return fail("compile", err)
	}
	pq, err := rego.New(
		rego.ParsedQuery(e.query),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.Transaction(txn),
		rego.ParsedBundle("warden", &b),
	).PrepareForEval(ctx)
	if err != nil {
		store.Abort(ctx, txn)
		if nerr := networkError(err); nerr != nil {
			err = nerr
		}
		return fail("compile", err)
	}
	if err := store.Commit(ctx, txn); err != nil {
		return fail("compile", err)
	}
	// A decision no rule defines would deny every request: refuse the bundle
	// rather than activate it, so the previous policy keeps deciding.
	if len(compiler.GetRulesForVirtualDocument(e.decision)) == 0 && len(compiler.GetRulesWithPrefix(e.decision)) == 0 {
		return fail("compile", fmt.Errorf("no rule defines the decision %v", e.decision))
	}
	mask, err := prepareMask(ctx, compiler, store)
	if err != nil {
		return fail("compile", err)
	}

	rev := b.Manifest.Revision
	if rev == "" {
		rev = "sha256:" + hex.EncodeToString(snap.digest[:6])
	}
	c := &compiled{
		revision: rev,
		digest:   snap.digest,
		loadedAt: time.Now(),
		query:    pq,
		mask:     mask,
		key:      keySpecOf(compiler.Modules),
		ttl:      e.opts.CacheTTL,
		timeout:  e.opts.EvalTimeout,
	}
	c.cacheKey = c.key.names()
	if e.opts.CacheSize > 0 {
		c.cache = cache.New[Decision](cache.Options{Entries: e.opts.CacheSize, Bytes: e.opts.CacheBytes})
	}
	return c, nil
}
