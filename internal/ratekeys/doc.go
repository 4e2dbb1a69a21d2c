// Package ratekeys keeps the rate limits whose key only layer 7 knows: a
// policy decision's rate_limit key, a peer's SPIFFE ID. It is a bounded
// table of GCRA buckets (package gcra's arithmetic, the kernel's) by key,
// least recently used forgotten first, with the count of keys forgotten
// (the overflow) for /ratelimit and metrics.
//
// It owns the state and the clock that package gcra leaves out, and
// nothing else: what a key means, and what a refusal answers, are the
// pipeline's (agent/authz). It must not import any warden package but
// internal/gcra.
package ratekeys
