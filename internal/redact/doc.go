// Package redact removes credentials from what warden logs or serves: URL
// userinfo and queries (signed URLs carry their signature there), query
// parameters that hold tokens, and header values whose names say they hold
// a credential. It is a leaf package: it imports nothing of warden's.
package redact
