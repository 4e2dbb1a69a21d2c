// Package header holds the one type for an HTTP header that warden's
// packages pass to each other: a decision's headers for the app (bundle),
// the pipeline's verdict (agent/pep) and what the proxies apply. One type,
// so that a cached decision's headers reach the proxy without a copy. It
// imports nothing.
package header

// Header is one header field: a name and its value.
type Header struct{ Name, Value string }
