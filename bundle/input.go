package bundle

import (
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/warden-sidecar/warden/internal/header"
)

// Input is the policy input: one schema for the whole application. The PEP
// fills it per request; its strings may alias request buffers and are not
// retained past Decide (what the cache keeps is copied).
type Input struct {
	Method, Path, RawPath, RawQuery string   // Path is normalized by the PEP; RawQuery has no '?'
	Headers                         []Header // lower-cased names, credentials already removed
	Transaction                     string   // request id; keyed only if a rule reads it
	Sender                          string   // client IP
	PeerID, PeerTrustDomain         string
	DestinationID                   string
	Token                           map[string]any // verified JWT claims; nil when absent
	// TokenKey is a stable digest of Token computed by the verifier, and what
	// the cache key holds for it. When the policy reads the token, a Token
	// without a TokenKey bypasses the cache.
	TokenKey string
	// Operation is the OpenAPI operation the request matched
	// (WARDEN_OPENAPI_SPEC); nil without a spec.
	Operation *Operation
	// ParsedBody is the request's JSON body (WARDEN_POLICY_BODY=json), as
	// encoding/json decodes it with UseNumber; read-only. ParsedBodyRaw is
	// the body as received, "" when there is no parsed body: the cache key
	// holds it when the policy reads parsed_body.
	ParsedBody    any
	ParsedBodyRaw string
	// Signature is the request's verified HTTP message signature
	// (WARDEN_SIGNATURE_KEYS); nil when it carried none.
	Signature *Signature
	// GRPC is input.grpc, the service and method of a gRPC request; nil for
	// any other request.
	GRPC *GRPC
}

// GRPC is input.grpc: {"service": "pkg.Service", "method": "Method"}.
type GRPC struct{ Service, Method string }

// Signature is input.signature: {"key_id", "alg", "created",
// "components"}. Its strings are not retained past Decide.
type Signature struct {
	KeyID, Alg string
	Created    int64 // Unix seconds
	Components []string
}

// Operation is input.operation: {"id", "path_template", "path_params"}.
// Its values are not retained past Decide unless cached decisions need
// them, and then only through Key.
type Operation struct {
	ID           string
	PathTemplate string
	PathParams   map[string]any // typed per the spec's schemas
	// Key tells operations apart for the decision cache: equal keys, equal
	// operations (the spec's revision included).
	Key string
}

// Header is one request header, or one header a decision adds upstream.
type Header = header.Header

// own copies every string of in into one allocation. OPA may keep strings of
// the input beyond one evaluation (in results, in builtin caches keyed by
// value), and the PEP's strings alias buffers it reuses.
func own(in *Input) Input {
	n := len(in.Method) + len(in.Path) + len(in.RawPath) + len(in.RawQuery) + len(in.Transaction) +
		len(in.Sender) + len(in.PeerID) + len(in.PeerTrustDomain) + len(in.DestinationID) + len(in.TokenKey)
	for _, h := range in.Headers {
		n += len(h.Name) + len(h.Value)
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range [...]string{in.Method, in.Path, in.RawPath, in.RawQuery, in.Transaction,
		in.Sender, in.PeerID, in.PeerTrustDomain, in.DestinationID, in.TokenKey} {
		b.WriteString(s)
	}
	for _, h := range in.Headers {
		b.WriteString(h.Name)
		b.WriteString(h.Value)
	}
	all := block(b.String())
	next := func(s string) string { return all.take(len(s)) }
	out := Input{
		Method:          next(in.Method),
		Path:            next(in.Path),
		RawPath:         next(in.RawPath),
		RawQuery:        next(in.RawQuery),
		Transaction:     next(in.Transaction),
		Sender:          next(in.Sender),
		PeerID:          next(in.PeerID),
		PeerTrustDomain: next(in.PeerTrustDomain),
		DestinationID:   next(in.DestinationID),
		TokenKey:        next(in.TokenKey),
		Token:           in.Token,
		// Built for this request and not written after: OPA may keep them.
		Operation:  in.Operation,
		ParsedBody: in.ParsedBody,
		// Read only to tell "no body" from a JSON null; never given to OPA.
		ParsedBodyRaw: in.ParsedBodyRaw,
	}
	if g := in.GRPC; g != nil {
		// Copied: the PEP's strings alias the request.
		out.GRPC = &GRPC{Service: strings.Clone(g.Service), Method: strings.Clone(g.Method)}
	}
	if sig := in.Signature; sig != nil {
		// Copied: the verifier's strings may alias the request.
		out.Signature = &Signature{KeyID: strings.Clone(sig.KeyID), Alg: strings.Clone(sig.Alg), Created: sig.Created,
			Components: slices.Clone(sig.Components)}
	}
	if len(in.Headers) > 0 {
		out.Headers = make([]Header, len(in.Headers))
		for i, h := range in.Headers {
			out.Headers[i] = Header{Name: next(h.Name), Value: next(h.Value)}
		}
	}
	return out
}

// block hands out consecutive substrings of one string, so that several
// strings are copied with a single allocation.
type block string

func (b *block) take(n int) string {
	s := string((*b)[:n])
	*b = (*b)[n:]
	return s
}

// inputValue builds OPA's input document directly as an ast.Value:
//
//	{method, path, raw_path, query: {name: [values]}, headers: {name: value},
//	 transaction, sender, peer: {spiffe_id, trust_domain},
//	 destination: {spiffe_id}, token,     # token only when Token != nil
//	 operation: {id, path_template, path_params},  # with an OpenAPI spec
//	 parsed_body,                         # with WARDEN_POLICY_BODY=json and a JSON body
//	 signature: {key_id, alg, created, components},  # a verified signature
//	 grpc: {service, method}}             # a gRPC request
func inputValue(in *Input) (ast.Value, error) {
	obj := ast.NewObject(
		ast.Item(ast.StringTerm("method"), ast.StringTerm(in.Method)),
		ast.Item(ast.StringTerm("path"), ast.StringTerm(in.Path)),
		ast.Item(ast.StringTerm("raw_path"), ast.StringTerm(in.RawPath)),
		ast.Item(ast.StringTerm("query"), ast.NewTerm(queryValue(in.RawQuery))),
		ast.Item(ast.StringTerm("headers"), ast.NewTerm(headersValue(in.Headers))),
		ast.Item(ast.StringTerm("transaction"), ast.StringTerm(in.Transaction)),
		ast.Item(ast.StringTerm("sender"), ast.StringTerm(in.Sender)),
		ast.Item(ast.StringTerm("peer"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("spiffe_id"), ast.StringTerm(in.PeerID)),
			ast.Item(ast.StringTerm("trust_domain"), ast.StringTerm(in.PeerTrustDomain)),
		)),
		ast.Item(ast.StringTerm("destination"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("spiffe_id"), ast.StringTerm(in.DestinationID)),
		)),
	)
	if in.Token != nil {
		tok, err := ast.InterfaceToValue(in.Token)
		if err != nil {
			return nil, err
		}
		obj.Insert(ast.StringTerm("token"), ast.NewTerm(tok))
	}
	if op := in.Operation; op != nil {
		params, err := ast.InterfaceToValue(op.PathParams)
		if err != nil {
			return nil, fmt.Errorf("operation: %w", err)
		}
		if op.PathParams == nil {
			params = ast.NewObject()
		}
		obj.Insert(ast.StringTerm("operation"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("id"), ast.StringTerm(op.ID)),
			ast.Item(ast.StringTerm("path_template"), ast.StringTerm(op.PathTemplate)),
			ast.Item(ast.StringTerm("path_params"), ast.NewTerm(params)),
		))
	}
	if sig := in.Signature; sig != nil {
		comps := make([]*ast.Term, len(sig.Components))
		for i, c := range sig.Components {
			comps[i] = ast.StringTerm(c)
		}
		obj.Insert(ast.StringTerm("signature"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("key_id"), ast.StringTerm(sig.KeyID)),
			ast.Item(ast.StringTerm("alg"), ast.StringTerm(sig.Alg)),
			ast.Item(ast.StringTerm("created"), ast.IntNumberTerm(int(sig.Created))),
			ast.Item(ast.StringTerm("components"), ast.ArrayTerm(comps...)),
		))
	}
	if g := in.GRPC; g != nil {
		obj.Insert(ast.StringTerm("grpc"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("service"), ast.StringTerm(g.Service)),
			ast.Item(ast.StringTerm("method"), ast.StringTerm(g.Method)),
		))
	}
	if in.ParsedBodyRaw != "" {
		body, err := ast.InterfaceToValue(in.ParsedBody)
		if err != nil {
			return nil, fmt.Errorf("parsed_body: %w", err)
		}
		obj.Insert(ast.StringTerm("parsed_body"), ast.NewTerm(body))
	}
	return obj, nil
}

// headersValue joins repeated names with ", " (RFC 9110 §5.3), in order.
// It runs in time linear in the headers' size: a client repeating one header
// thousands of times must not make the sidecar copy the growing value at each
// repetition. A name seen once keeps its value as it is; a repeated one gets
// one builder, sized before anything is copied into it.
func headersValue(hs []Header) ast.Value {
	if len(hs) == 0 {
		return ast.NewObject()
	}
	type group struct {
		first  int              // the name's first header
		n      int              // how many headers have the name
		size   int              // the joined value's length
		joined *strings.Builder // for a repeated name only
	}
	groups := make([]group, 0, len(hs))
	index := make(map[string]int, len(hs))
	at := make([]int, len(hs)) // each header's group
	repeated := false
	for i, h := range hs {
		g, ok := index[h.Name]
		if !ok {
			g = len(groups)
			index[h.Name] = g
			groups = append(groups, group{first: i})
		} else {
			repeated = true
			groups[g].size += len(", ")
		}
		at[i] = g
		groups[g].n++
		groups[g].size += len(h.Value)
	}
	if repeated {
		for i, h := range hs {
			g := &groups[at[i]]
			switch {
			case g.n == 1:
				continue
			case g.joined == nil:
				g.joined = new(strings.Builder)
				g.joined.Grow(g.size)
			default:
				g.joined.WriteString(", ")
			}
			g.joined.WriteString(h.Value)
		}
	}
	obj := ast.NewObjectWithCapacity(len(groups))
	for _, g := range groups {
		v := hs[g.first].Value
		if g.joined != nil {
			v = g.joined.String()
		}
		obj.Insert(ast.StringTerm(hs[g.first].Name), ast.StringTerm(v))
	}
	return obj
}

// queryValue parses a raw query string into {name: [values]} the way
// fasthttp's Args and net/url do for well-formed input, and leniently for the
// rest: pairs split on '&' only, '+' is a space, and a '%' not followed by
// two hex digits stays as it is (net/url would drop the whole pair, which
// would hide it from the policy). A name without '=' has the value "".
func queryValue(raw string) ast.Value {
	obj := ast.NewObject()
	if raw == "" {
		return obj
	}
	var order []string
	vals := map[string][]*ast.Term{}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k = unescape(k)
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = append(vals[k], ast.StringTerm(unescape(v)))
	}
	for _, k := range order {
		obj.Insert(ast.StringTerm(k), ast.ArrayTerm(vals[k]...))
	}
	return obj
}

func unescape(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
