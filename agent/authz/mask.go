package authz

import (
	"encoding/json"
	"net/url"
	"strings"
)

// logMask is a decision's Mask (OPA's data.system.log.mask) read for the
// decision log: which parts of the logged input and result to erase. Paths
// name the policy's input ("/input/headers/x-api-key", "/input/token/email",
// "/input" for all of it); a path under a part erases that part's child, a
// path naming a part erases it whole. The query is logged as a string, so
// any path under /input/query erases the query. /result erases the reason
// and status; allow stays, since it is what the audit log is for.
type logMask struct {
	all      bool                // /input
	fields   map[string]bool     // /input/<field>
	children map[string][]string // /input/<field>/<child>: field → children (unescaped)
	token    [][]string          // /input/token/<path...>
	result   bool                // /result or under it
}

func readLogMask(paths []string) *logMask {
	if len(paths) == 0 {
		return nil
	}
	m := &logMask{fields: map[string]bool{}, children: map[string][]string{}}
	for _, p := range paths {
		segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
		for i, s := range segs {
			if u, err := url.PathUnescape(s); err == nil {
				segs[i] = u
			}
		}
		switch {
		case segs[0] == "result":
			m.result = true
		case segs[0] != "input":
		case len(segs) == 1:
			m.all = true
		case len(segs) == 2:
			m.fields[segs[1]] = true
		case segs[1] == "token":
			m.token = append(m.token, segs[2:])
		default:
			m.children[segs[1]] = append(m.children[segs[1]], segs[2])
		}
	}
	return m
}

// field reports whether the input field name is erased whole.
func (m *logMask) field(name string) bool {
	return m != nil && (m.all || m.fields[name] || name == "query" && len(m.children["query"]) > 0)
}

// child reports whether field's child (a header name, peer.spiffe_id) is
// erased.
func (m *logMask) child(field, name string) bool {
	if m == nil {
		return false
	}
	for _, c := range m.children[field] {
		if strings.EqualFold(c, name) {
			return true
		}
	}
	return false
}

// tokenJSON returns the token's claims without the masked ones, or nil when
// they are all masked or cannot be read.
func (m *logMask) tokenJSON(claims []byte) []byte {
	if m == nil || len(m.token) == 0 {
		return claims
	}
	var doc map[string]any
	if json.Unmarshal(claims, &doc) != nil {
		return nil
	}
	for _, path := range m.token {
		erase(doc, path)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil
	}
	return out
}

// erase deletes the value at path in doc, if there is one.
func erase(doc map[string]any, path []string) {
	for len(path) > 1 {
		next, ok := doc[path[0]].(map[string]any)
		if !ok {
			return
		}
		doc, path = next, path[1:]
	}
	delete(doc, path[0])
}
