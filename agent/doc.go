// Package agent is warden's sidecar runtime: it builds the root logger, the
// security events' log (WARDEN_SECURITY_LOG, events.go), the identity source, the inbound and outbound proxies and the admin server from one
// config.Config, tracks readiness, and drains on shutdown. Subpackages hold
// the parts; this package only wires them and owns their lifecycle.
package agent
