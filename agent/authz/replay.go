package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/warden-sidecar/warden/bundle"
)

// Logged is a decision log line read back (ReadLoggedInput): the input the
// policy saw, as far as the log kept it, and what the line says was decided.
type Logged struct {
	Input bundle.Input
	// Line is false for a bare input object; the fields below are then
	// empty.
	Line      bool
	Path      string // the decision's rule path
	Revision  string // the bundle revision that decided
	RequestID string
	Allow     bool   // what warden decided (warden.allow)
	Reason    string // and why (warden.reason)
	// Warnings name what of the input the policy saw the line does not
	// hold: values logged as REDACTED, fields erased by the bundle's mask,
	// the body, fields that are not part of warden's input.
	Warnings []string
}

// ReadLoggedInput reads one decision log line, or a bare input object (the
// line's "input", or one written by hand), into the input the policy saw:
// the logged query string is parsed as the request's was, the headers are
// logged once per name, joined as the policy saw them. Numbers stay
// json.Numbers, as bundle gives them to OPA. What the log does not keep
// (credentials, the body, what the mask erased) cannot be replayed: each
// such field is named in Warnings.
func ReadLoggedInput(data []byte) (*Logged, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("authz: not a JSON object: %w", err)
	}
	if doc == nil {
		return nil, errors.New("authz: not a JSON object: null")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("authz: more than one JSON value: give one decision log line")
	}
	l := &Logged{}
	input := doc
	if v, ok := doc["input"]; ok {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("authz: the line's input is %s, want an object", kind(v))
		}
		input, l.Line = obj, true
		l.readLine(doc)
	}
	if err := l.readInput(input); err != nil {
		return nil, err
	}
	return l, nil
}

// readLine reads what the line says besides the input: OPA's fields, and
// warden's (older lines had them at the top level).
func (l *Logged) readLine(doc map[string]any) {
	l.Path, _ = doc["path"].(string)
	if b, ok := doc["bundles"].(map[string]any); ok {
		if w, ok := b[bundleName].(map[string]any); ok {
			l.Revision, _ = w["revision"].(string)
		}
	}
	w, ok := doc["warden"].(map[string]any)
	if !ok {
		w = doc
		if l.Revision == "" {
			l.Revision, _ = doc["revision"].(string)
		}
	}
	l.RequestID, _ = w["request_id"].(string)
	l.Allow, _ = w["allow"].(bool)
	l.Reason, _ = w["reason"].(string)
	erased, _ := doc["erased"].([]any)
	for _, e := range erased {
		switch p, _ := e.(string); {
		case p == "/input/parsed_body":
			l.warn("input.parsed_body: the request's body is never logged; replayed without one")
		case p == "/input":
			l.warn("input: the bundle's mask erased the whole input from the log; replayed with an empty one")
		case strings.HasPrefix(p, "/input/query/"):
			// The query is logged as one string: erased whole.
			l.warn("input.query: erased from the log by the bundle's mask (%s); replayed without it", p)
		case strings.HasPrefix(p, "/input/"):
			l.warn("input%s: erased from the log by the bundle's mask; replayed without it", pointerToField(p))
		}
	}
}

func (l *Logged) warn(format string, args ...any) {
	l.Warnings = append(l.Warnings, fmt.Sprintf(format, args...))
}

// pointerToField turns /input/headers/x-a into .headers.x-a.
func pointerToField(p string) string {
	segs := strings.Split(strings.TrimPrefix(p, "/input"), "/")
	for i, s := range segs {
		if u, err := url.PathUnescape(s); err == nil {
			segs[i] = u
		}
	}
	return strings.Join(segs, ".")
}

// readInput fills l.Input from the logged input object.
func (l *Logged) readInput(obj map[string]any) error {
	in := &l.Input
	strs := []struct {
		name string
		dst  *string
	}{
		{"method", &in.Method}, {"path", &in.Path}, {"raw_path", &in.RawPath},
		{"transaction", &in.Transaction}, {"sender", &in.Sender},
	}
	for _, f := range strs {
		if err := str(obj, "input."+f.name, f.name, f.dst); err != nil {
			return err
		}
	}
	for _, f := range strs {
		l.replaced("input."+f.name, *f.dst)
	}
	for _, p := range []string{in.Path, in.RawPath} {
		if strings.Contains(p, ";"+redacted) {
			l.warn("input.path: its path parameters (;...) were logged as REDACTED; replayed as such")
			break
		}
	}
	if err := l.readQuery(obj["query"]); err != nil {
		return err
	}
	if err := l.readHeaders(obj["headers"]); err != nil {
		return err
	}
	if v, ok := obj["peer"]; ok {
		peer, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("authz: input.peer is %s, want an object", kind(v))
		}
		if err := str(peer, "input.peer.spiffe_id", "spiffe_id", &in.PeerID); err != nil {
			return err
		}
		if err := str(peer, "input.peer.trust_domain", "trust_domain", &in.PeerTrustDomain); err != nil {
			return err
		}
	}
	if v, ok := obj["destination"]; ok {
		dst, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("authz: input.destination is %s, want an object", kind(v))
		}
		if err := str(dst, "input.destination.spiffe_id", "spiffe_id", &in.DestinationID); err != nil {
			return err
		}
	}
	if v, ok := obj["token"]; ok {
		claims, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("authz: input.token is %s, want an object", kind(v))
		}
		in.Token = claims
	}
	if v, ok := obj["operation"]; ok {
		op, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("authz: input.operation is %s, want an object", kind(v))
		}
		in.Operation = &bundle.Operation{}
		if err := str(op, "input.operation.id", "id", &in.Operation.ID); err != nil {
			return err
		}
		if err := str(op, "input.operation.path_template", "path_template", &in.Operation.PathTemplate); err != nil {
			return err
		}
		switch p := op["path_params"].(type) {
		case map[string]any:
			in.Operation.PathParams = p
		case nil:
			if in.Operation.PathTemplate != "" && strings.Contains(in.Operation.PathTemplate, "{") {
				l.warn("input.operation.path_params: not in the line; replayed empty")
			}
		default:
			return fmt.Errorf("authz: input.operation.path_params is %s, want an object", kind(p))
		}
	}
	if v, ok := obj["grpc"]; ok {
		g, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("authz: input.grpc is %s, want an object", kind(v))
		}
		in.GRPC = &bundle.GRPC{}
		if err := str(g, "input.grpc.service", "service", &in.GRPC.Service); err != nil {
			return err
		}
		if err := str(g, "input.grpc.method", "method", &in.GRPC.Method); err != nil {
			return err
		}
	}
	if v, ok := obj["signature"]; ok {
		sig, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("authz: input.signature is %s, want an object", kind(v))
		}
		in.Signature = &bundle.Signature{}
		if err := str(sig, "input.signature.key_id", "key_id", &in.Signature.KeyID); err != nil {
			return err
		}
		if err := str(sig, "input.signature.alg", "alg", &in.Signature.Alg); err != nil {
			return err
		}
		if n, ok := sig["created"].(json.Number); ok {
			created, err := n.Int64()
			if err != nil {
				return fmt.Errorf("authz: input.signature.created: %w", err)
			}
			in.Signature.Created = created
		}
		comps, _ := sig["components"].([]any)
		for _, c := range comps {
			if s, ok := c.(string); ok {
				in.Signature.Components = append(in.Signature.Components, s)
			}
		}
	}
	if v, ok := obj["parsed_body"]; ok {
		// Never in a log line; an input written by hand may hold one.
		raw, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("authz: input.parsed_body: %w", err)
		}
		in.ParsedBody, in.ParsedBodyRaw = v, string(raw)
	}
	var unknown []string
	for name := range obj {
		switch name {
		case "method", "path", "raw_path", "query", "headers", "transaction", "sender", "peer",
			"destination", "token", "operation", "parsed_body", "signature":
		default:
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	for _, name := range unknown {
		l.warn("input.%s: not part of warden's input; ignored", name)
	}
	return nil
}

// readQuery takes the logged query (its raw string, which bundle parses as
// it parsed the request's), or an object of lists of strings as the policy
// sees it (an input written by hand).
func (l *Logged) readQuery(v any) error {
	switch q := v.(type) {
	case nil:
	case string:
		l.Input.RawQuery = q
		l.replaced("input.query", q)
		for pair := range strings.SplitSeq(q, "&") {
			if name, value, _ := strings.Cut(pair, "="); value == redacted {
				l.warn("input.query.%s: logged as REDACTED (a credential); replayed as such", name)
			}
		}
	case map[string]any:
		names := make([]string, 0, len(q))
		for name := range q {
			names = append(names, name)
		}
		slices.Sort(names)
		var b strings.Builder
		for _, name := range names {
			values, ok := q[name].([]any)
			if !ok {
				return fmt.Errorf("authz: input.query.%s is %s, want a list of strings", name, kind(q[name]))
			}
			for _, v := range values {
				s, ok := v.(string)
				if !ok {
					return fmt.Errorf("authz: input.query.%s holds %s, want strings", name, kind(v))
				}
				if b.Len() > 0 {
					b.WriteByte('&')
				}
				b.WriteString(url.QueryEscape(name) + "=" + url.QueryEscape(s))
			}
		}
		l.Input.RawQuery = b.String()
	default:
		return fmt.Errorf("authz: input.query is %s, want a string or an object", kind(v))
	}
	return nil
}

func (l *Logged) readHeaders(v any) error {
	if v == nil {
		return nil
	}
	hs, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("authz: input.headers is %s, want an object", kind(v))
	}
	names := make([]string, 0, len(hs))
	for name := range hs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		value, ok := hs[name].(string)
		if !ok {
			return fmt.Errorf("authz: input.headers.%s is %s, want a string", name, kind(hs[name]))
		}
		if value == redacted {
			l.warn("input.headers.%s: logged as REDACTED (its name says it holds a credential); replayed as such", name)
		}
		l.replaced("input.headers."+name, value)
		// Names are lower case in the policy's input.
		l.Input.Headers = append(l.Input.Headers, bundle.Header{Name: strings.ToLower(name), Value: value})
	}
	return nil
}

// replaced warns when s holds U+FFFD: the log writes each byte of a value
// that is not UTF-8 as U+FFFD (JSON holds only text), so the policy may
// have seen other bytes.
func (l *Logged) replaced(field, s string) {
	if strings.ContainsRune(s, utf8.RuneError) {
		l.warn("%s: holds U+FFFD, which the log writes for bytes that are not UTF-8; the policy may have seen others", field)
	}
}

// str reads obj[name] into dst when it is there: a string.
func str(obj map[string]any, field, name string, dst *string) error {
	v, ok := obj[name]
	if !ok {
		return nil
	}
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("authz: %s is %s, want a string", field, kind(v))
	}
	*dst = s
	return nil
}

func kind(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "the number " + v.String()
	case string:
		return "the string " + strconv.Quote(v)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}

// Replayed is a decision made again from a logged input (Explain).
type Replayed struct {
	Allow    bool   `json:"allow"`
	Status   int    `json:"status,omitempty"` // what a denied client gets
	Reason   string `json:"reason,omitempty"` // as the decision log's warden.reason
	Revision string `json:"revision,omitempty"`
	Error    string `json:"error,omitempty"`
	// What the PEP would also apply: the policy's rate_limit and
	// block_for_seconds (before WARDEN_MAX_BLOCK_FOR caps it).
	RateLimit       *ReplayedRateLimit `json:"rate_limit,omitempty"`
	BlockForSeconds int64              `json:"block_for_seconds,omitempty"`
}

// ReplayedRateLimit is a replayed decision's rate_limit, as the policy
// wrote it.
type ReplayedRateLimit struct {
	Key       string `json:"key"`
	PerSecond int64  `json:"per_second"`
	Burst     int64  `json:"burst"`
}

// Explain decides the logged input l again with the engine's active
// revision, as Check would (fail closed, warden's reasons), and writes
// OPA's explanation of the evaluation in mode to w. It adds to l.Warnings
// when the line was decided by another rule path or revision, or the
// replay decides otherwise than the line says.
func Explain(ctx context.Context, e *bundle.Engine, l *Logged, mode bundle.ExplainMode, w io.Writer) Replayed {
	d, err := e.Explain(ctx, &l.Input, mode, w)
	r := Replayed{Allow: d.Allow && err == nil, Revision: d.Revision}
	r.Reason, _ = reasonOf(&d, err)
	if err == nil && d.RateLimit.PerSecond > 0 {
		r.RateLimit = &ReplayedRateLimit{Key: d.RateLimit.Key, PerSecond: d.RateLimit.PerSecond, Burst: d.RateLimit.Burst}
	}
	if err == nil {
		r.BlockForSeconds = int64(d.BlockFor / time.Second)
	}
	if !r.Allow {
		r.Status = deniedStatus(d.Status)
	}
	if err != nil {
		r.Error = err.Error()
	}
	if !l.Line {
		return r
	}
	if l.Path != "" && l.Path != e.DecisionPath() {
		l.warn("the line was decided by %s; replayed with %s (--decision)", l.Path, e.DecisionPath())
	}
	if l.Revision != "" && l.Revision != d.Revision {
		l.warn("the line was decided by revision %s; replayed with revision %s", l.Revision, d.Revision)
	}
	if l.Allow != r.Allow || !l.Allow && l.Reason != "" && l.Reason != r.Reason {
		l.warn("the line says allow %v (%s); the replay decides allow %v (%s)", l.Allow, l.Reason, r.Allow, r.Reason)
	}
	return r
}
