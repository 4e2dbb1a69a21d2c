package bundle

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/lineage"
)

// ExplainMode is how much of an evaluation Explain shows, as OPA's
// `opa eval --explain` names its modes.
type ExplainMode string

const (
	// ExplainFails shows each expression that failed, with the rules and
	// queries that led to it: why a rule did not allow.
	ExplainFails ExplainMode = "fails"
	// ExplainFull shows the whole evaluation but unifications.
	ExplainFull ExplainMode = "full"
	// ExplainNotes shows the policy's trace() notes, with their context.
	ExplainNotes ExplainMode = "notes"
)

// ParseExplainMode accepts fails, full or notes.
func ParseExplainMode(s string) (ExplainMode, error) {
	switch m := ExplainMode(s); m {
	case ExplainFails, ExplainFull, ExplainNotes:
		return m, nil
	}
	return "", fmt.Errorf("bundle: explain mode %q: want fails, full or notes", s)
}

// DecisionPath is the rule Decide asks, as a path under data
// ("warden/authz/allow"): the decision log's "path".
func (e *Engine) DecisionPath() string { return strings.Trim(e.opts.Decision, "/") }

// Explain evaluates in as Decide would, never from the cache and without
// the mask, with OPA's tracer, and writes OPA's explanation of the
// evaluation in mode to w as `opa eval --explain=<mode> --format=pretty
// --var-values` does: each step with the file and line of its rule and the
// values of the expression's variables. Every rule is tried (no rule
// indexing nor early exit), so that each one's failure shows. It is for
// replaying a decision offline (warden policy eval), not for the request
// path: a trace holds every step.
func (e *Engine) Explain(ctx context.Context, in *Input, mode ExplainMode, w io.Writer) (Decision, error) {
	c := e.state.Load()
	if c == nil {
		return Decision{}, ErrNotReady
	}
	if _, err := ParseExplainMode(string(mode)); err != nil {
		return Decision{Revision: c.revision}, err
	}
	owned := own(in)
	input, err := inputValue(&owned)
	if err != nil {
		return Decision{Revision: c.revision}, fmt.Errorf("bundle: revision %s: input: %w", c.revision, err)
	}
	buf := topdown.NewBufferTracer()
	d, _, _, err := c.decide(ctx, neverCancel, input, 0, buf)
	trace := *buf
	switch mode {
	case ExplainFails:
		trace = lineage.Fails(trace)
	case ExplainFull:
		trace = lineage.Full(trace)
	case ExplainNotes:
		trace = lineage.Notes(trace)
	}
	topdown.PrettyTraceWithOpts(w, trace, topdown.PrettyTraceOptions{Locations: true, ExprVariables: true})
	return d, err
}
