// Package admin is warden's plaintext admin server: liveness, readiness and
// read-only views of the sidecar's state, all JSON with snake_case keys,
// RFC 3339 times and durations in seconds. It listens on loopback by default
// and must never expose secrets or change state.
package admin
