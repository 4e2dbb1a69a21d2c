// Package bundle is warden's Policy Decision Point: it loads OPA bundles (the
// ones `opa build` makes and `opa sign` signs) from the embedded default, a
// directory, a .tar.gz file or an http(s) URL; verifies their signatures with
// OPA's own verifier; compiles each revision once into a prepared query; and
// answers Decide from a per-revision decision cache. Explain evaluates one
// input with OPA's tracer and prints OPA's explanation, for replaying a
// decision offline (warden policy eval); the request path never traces.
//
// Each revision's decision cache is keyed on the input fields its rules read
// (Status.CacheKey), bounded in entries and bytes, and evicts with CLOCK so
// that the decisions in use survive a scan of one-off requests. A bundle's
// data.system.log.mask, as OPA defines it, is evaluated with each decision
// and returned in Decision.Mask for the decision logger. Policies cannot do
// network I/O unless Options.AllowNetwork says so, and each evaluation can
// be given a deadline.
//
// A new revision becomes active atomically (an atomic.Pointer swap of an
// immutable compiled state that owns its cache); a bundle that cannot be read,
// verified or compiled is never activated, the active revision keeps deciding
// and the error is kept in Status. Every decision fails closed: an undefined
// result, a malformed result or an evaluation error denies.
//
// The package owns the bundle sources, their polling and the decision cache:
// what it keys on, what a decision counts in bytes and when it is dropped;
// internal/cache holds the entries.
// It must not log (errors go back to the caller and to Options.OnError), read
// the environment, or import agent: the agent wires it and logs for it.
// bundle/default/ is the policy shipped in the binary.
package bundle
