package openapi

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// segment is one '/'-separated part of a path template: a literal, or a
// parameter that takes the whole segment.
type segment struct {
	literal string
	param   string // the parameter's name; "" for a literal
}

// parseTemplate splits a path template ("/accounts/{id}/items") into its
// segments. A parameter must be a whole segment: "/files/{name}.json" and
// "/a/{x}-{y}" are refused, since matching them needs a grammar per
// segment that OpenAPI leaves open.
func parseTemplate(t string) ([]segment, error) {
	if !strings.HasPrefix(t, "/") {
		return nil, errors.New("a path template must start with '/'")
	}
	var segs []segment
	seen := map[string]bool{}
	for _, s := range strings.Split(t[1:], "/") {
		if !strings.ContainsAny(s, "{}") {
			segs = append(segs, segment{literal: s})
			continue
		}
		name, ok := strings.CutPrefix(s, "{")
		name, ok2 := strings.CutSuffix(name, "}")
		if !ok || !ok2 || name == "" || strings.ContainsAny(name, "{}") {
			return nil, fmt.Errorf("segment %q: a path parameter must be a whole segment (\"{name}\")", s)
		}
		if seen[name] {
			return nil, fmt.Errorf("parameter %s appears twice in the template", name)
		}
		seen[name] = true
		segs = append(segs, segment{param: name})
	}
	return segs, nil
}

// node is a route tree level: literal children by segment, at most one
// parameter child (whatever its name in each template), and the
// operations of the template that ends here. Matching costs one map
// lookup per segment (plus backtracking, below), however many operations
// the document has.
type node struct {
	literal  map[string]*node
	param    *node
	template string       // the path template that ends here, "" if none
	ops      []*operation // by method; a few, so a scan
	depth    int          // the deepest template below, in segments
}

func (n *node) insert(segs []segment) (*node, error) {
	n.depth = max(n.depth, len(segs))
	if len(segs) == 0 {
		return n, nil
	}
	s := segs[0]
	var c *node
	if s.param != "" {
		if n.param == nil {
			n.param = &node{}
		}
		c = n.param
	} else {
		if n.literal == nil {
			n.literal = map[string]*node{}
		}
		if c = n.literal[s.literal]; c == nil {
			c = &node{}
			n.literal[s.literal] = c
		}
	}
	return c.insert(segs[1:])
}

// lookup finds the operation for method at the path of segs. A literal
// segment beats a parameter at each level, but when the literal branch
// has no operation for the request the parameter branch is tried: OpenAPI
// prefers concrete paths, and a path that only a templated one matches
// must still find it (/accounts/me/payments against /accounts/me and
// /accounts/{id}/payments). The tree is the document's, so backtracking
// costs at most 2^depth steps of the deepest template, whatever the
// request. pathFound is set when some template matched the path but not
// the method. An empty segment matches literals only ("/accounts/" is not
// /accounts/{id} with an empty id).
func (n *node) lookup(segs [][]byte, method []byte, pathFound *bool) *operation {
	if len(segs) == 0 {
		if n.template == "" {
			return nil
		}
		for _, op := range n.ops {
			if op.method == string(method) {
				return op
			}
		}
		*pathFound = true
		return nil
	}
	if len(segs) > n.depth {
		return nil
	}
	if c := n.literal[string(segs[0])]; c != nil {
		if op := c.lookup(segs[1:], method, pathFound); op != nil {
			return op
		}
	}
	if n.param != nil && len(segs[0]) > 0 {
		return n.param.lookup(segs[1:], method, pathFound)
	}
	return nil
}

// maxSegments bounds the segments split on the stack; a longer path is
// split on the heap, and matches nothing deeper than the document's
// templates anyway.
const maxSegments = 16

// splitPath returns the request path's segments, each percent-decoded.
//
// The segments are those of RawPath, as sent, so that "/accounts/a%2Fb"
// is one segment "a/b" and never the two of its decoded form. RawPath is
// trusted only when its decoded segments, joined, are Path (what warden
// normalized and the app receives): when warden resolved dot segments or
// merged slashes they differ, and Path's segments are the app's. If they
// differ and RawPath had an encoded '/', no split is sure: the request is
// refused. Decoded segments that are not valid UTF-8 are refused too.
func splitPath(dst [][]byte, r *Request) ([][]byte, *Violation) {
	raw := r.RawPath
	if len(raw) == 0 || raw[0] != '/' {
		return splitDecoded(dst, r.Path), nil
	}
	dst, ok := splitRaw(dst, raw)
	if !ok {
		return nil, pathViolation("encoding", "malformed percent-encoding or invalid UTF-8 in the path")
	}
	if joinsTo(dst, r.Path) {
		return dst, nil
	}
	if hasEncodedSlash(raw) {
		return nil, pathViolation("encoding", "an encoded '/' in a path that warden had to normalize")
	}
	return splitDecoded(dst[:0], r.Path), nil
}

func pathViolation(rule, detail string) *Violation {
	return &Violation{Status: 400, Code: CodeInvalid, In: "path", Rule: rule, Detail: detail}
}

// splitDecoded splits a decoded path: "/a/b" is [a b], "/" is [""], "/a/"
// is [a ""].
func splitDecoded(dst [][]byte, p []byte) [][]byte {
	if len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	for {
		i := bytes.IndexByte(p, '/')
		if i < 0 {
			return append(dst, p)
		}
		dst = append(dst, p[:i])
		p = p[i+1:]
	}
}

// splitRaw splits raw (starting with '/') and percent-decodes each
// segment; a segment without '%' aliases raw.
func splitRaw(dst [][]byte, raw []byte) ([][]byte, bool) {
	dst = splitDecoded(dst, raw)
	for i, s := range dst {
		if bytes.IndexByte(s, '%') < 0 {
			continue
		}
		d, ok := unescape(nil, s, false)
		if !ok || !utf8.Valid(d) {
			return dst, false
		}
		dst[i] = d
	}
	return dst, true
}

// joinsTo reports whether "/" + strings.Join(segs, "/") == p.
func joinsTo(segs [][]byte, p []byte) bool {
	for _, s := range segs {
		if len(p) == 0 || p[0] != '/' || !bytes.HasPrefix(p[1:], s) {
			return false
		}
		p = p[1+len(s):]
	}
	return len(p) == 0
}

func hasEncodedSlash(raw []byte) bool {
	for i := 0; i+2 < len(raw); i++ {
		if raw[i] == '%' && raw[i+1] == '2' && (raw[i+2] == 'F' || raw[i+2] == 'f') {
			return true
		}
	}
	return false
}

// unescape appends s percent-decoded to dst; with plus, '+' is a space (as
// in a query). It fails on a '%' not followed by two hex digits. When
// there is nothing to decode it returns s itself.
func unescape(dst, s []byte, plus bool) ([]byte, bool) {
	if bytes.IndexByte(s, '%') < 0 && (!plus || bytes.IndexByte(s, '+') < 0) {
		return s, true
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '%':
			if i+2 >= len(s) {
				return dst, false
			}
			h, l := unhex(s[i+1]), unhex(s[i+2])
			if h < 0 || l < 0 {
				return dst, false
			}
			dst = append(dst, byte(h<<4|l))
			i += 2
		case c == '+' && plus:
			dst = append(dst, ' ')
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
