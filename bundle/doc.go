// Package bundle is warden's Policy Decision Point: it loads OPA bundles (the
// ones `opa build` makes and `opa sign` signs) from the embedded default, a
// directory, a .tar.gz file or an http(s) URL; verifies their signatures with
// OPA's own verifier; compiles each revision once into a prepared query; and
// answers Decide from a per-revision decision cache.
//
// A new revision becomes active atomically (an atomic.Pointer swap of an
// immutable compiled state that owns its cache); a bundle that cannot be read,
// verified or compiled is never activated, the active revision keeps deciding
// and the error is kept in Status. Every decision fails closed: an undefined
// result, a malformed result or an evaluation error denies.
//
// The package owns the bundle sources, their polling and the decision cache.
// It must not log (errors go back to the caller and to Options.OnError), read
// the environment, or import agent: the agent wires it and logs for it.
// bundle/default/ is the policy shipped in the binary.
package bundle
