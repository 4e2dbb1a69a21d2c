// Package metrics is warden's Prometheus registry: the counters and
// histograms the request path updates, the collectors that read the rest
// at scrape time (the rate limiter's counters from the kernel's maps, the
// SVID's expiry, open connections, dropped log lines), and the handler the
// admin server serves as GET /metrics.
//
// It owns the names, the labels and their values. No label takes a value
// from a request: every label's values are a fixed set known here (the
// pipeline's stages and outcomes, agent/token's reasons, agent/inspect's
// and agent/openapi's rules, status classes), except the policy revision,
// of which only the active one is exposed. Every series of the request
// path is resolved when the registry is built, so counting a request is a
// few atomic additions and no allocation.
//
// It implements proxy.Observer and authz.Observer; the agent wires it to
// the proxy, the pipeline, the policy engine's and the identity's
// callbacks. It must not read configuration or log: what it reads at
// scrape time it is given as functions (Sources).
package metrics
