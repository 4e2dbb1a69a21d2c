package config

import (
	"fmt"

	"github.com/warden-sidecar/warden/internal/redact"
)

// Error is an invalid configuration: the variable at fault, its value and
// what was expected. Callers that map a setting back to where it came from
// (the webhook, to a pod annotation) match it with errors.As rather than
// reading the message.
type Error struct {
	Variable string
	Value    string // shown with redact.URL: a URL keeps scheme://host/path only
	Expected string
	// Related is the second variable of an error about two (WARDEN_JWT_JWKS
	// for "WARDEN_JWT_ISSUERS is empty"), or "". Expected names it too.
	Related string

	msg string // the whole message, when it does not read NAME="value": expected ...
	err error  // the cause, if another package found the fault
}

// Error reads config: NAME="value": expected ..., followed by the cause if
// there is one; errors about a missing or conflicting setting say so in
// their own words.
func (e *Error) Error() string {
	if e.msg != "" {
		return e.msg
	}
	s := fmt.Sprintf("config: %s=%q: expected %s", e.Variable, e.Value, e.Expected)
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.err }

// invalid is the common error: name holds value, which is not what was
// expected.
func invalid(name, value, expected string) *Error {
	return &Error{Variable: name, Value: redact.URL(value), Expected: expected}
}

// emptyError says that name is empty (or unset) while a value is needed.
func emptyError(name, related, expected string) *Error {
	return &Error{Variable: name, Expected: expected, Related: related,
		msg: "config: " + name + " is empty: expected " + expected}
}
