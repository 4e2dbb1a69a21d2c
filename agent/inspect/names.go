package inspect

import (
	"bytes"
	"hash/maphash"

	"github.com/go-json-experiment/json/jsontext"
)

// nameSet is CheckJSON's duplicate check: the member names of the open
// objects, innermost last, decoded so that "a" and "\u0061" are one name.
//
// jsontext has a duplicate check of its own, on by default, but past 64
// names (or 1 KiB of names) in an object it moves them into a
// map[string]struct{} with a string allocated per name: 1 MiB of objects of
// 1000 short members costs 100,000 allocations and 14 MB of garbage, 8 times
// the time of the same body in small objects, which an attacker chooses.
// This one keeps all its memory in CheckJSON's pool: a linear search for
// small objects, then an open-addressing table per object depth, with a
// seeded hash that a body cannot aim collisions at. FuzzCheckJSON holds it
// to jsontext's verdicts.
type nameSet struct {
	seed   maphash.Seed
	body   []byte    // the body being checked: names without escapes are read there
	arena  []byte    // names with escapes, decoded
	names  []name    // the names of the open objects, innermost object's last
	objs   []int     // per open object, the index in names of its first name
	tables [][]int32 // per object depth: the hash table of a wide object there, name index + 1 (0 is empty)
}

// name is a member name: body[start:end], or arena[start:end] if escaped.
type name struct {
	start, end int
	escaped    bool
	hash       uint64 // set once the object's names are in a table
}

func (s *nameSet) bytes(n name) []byte {
	if n.escaped {
		return s.arena[n.start:n.end]
	}
	return s.body[n.start:n.end]
}

// linearNames is how many names an object holds before they go into a
// table: up to there, comparing with each is cheaper than hashing.
const linearNames = 16

func (s *nameSet) reset(body []byte) {
	s.body, s.arena, s.names, s.objs = body, s.arena[:0], s.names[:0], s.objs[:0]
	// Do not pin in the pool what one unusual body needed.
	if cap(s.arena) > 64<<10 {
		s.arena = nil
	}
	if cap(s.names) > 4<<10 {
		s.names = nil
	}
	for i, t := range s.tables {
		if cap(t) > 4<<10 {
			s.tables[i] = nil
		}
	}
	if len(s.tables) > 64 {
		clear(s.tables[64:])
		s.tables = s.tables[:64]
	}
}

func (s *nameSet) push() { s.objs = append(s.objs, len(s.names)) }

func (s *nameSet) pop() {
	first := s.objs[len(s.objs)-1]
	s.objs = s.objs[:len(s.objs)-1]
	for _, n := range s.names[first:] {
		if n.escaped {
			s.arena = s.arena[:n.start]
			break
		}
	}
	s.names = s.names[:first]
}

// add adds the member name at body[start:end] (as written, quotes
// included) to the innermost object and reports whether the object already
// had it.
func (s *nameSet) add(start, end int) (dup bool) {
	n := name{start: start + 1, end: end - 1}
	if hasBackslash(s.body[n.start:n.end]) {
		n = name{start: len(s.arena), escaped: true}
		s.arena, _ = jsontext.AppendUnquote(s.arena, s.body[start:end]) // valid: jsontext read it
		n.end = len(s.arena)
	}
	nm := s.bytes(n)
	depth := len(s.objs) - 1
	first := s.objs[depth]
	switch count := len(s.names) - first; {
	case count < linearNames:
		for _, o := range s.names[first:] {
			if o.end-o.start == len(nm) && string(s.bytes(o)) == string(nm) {
				s.drop(n)
				return true
			}
		}
	default:
		t := s.table(depth, first, count+1)
		n.hash = maphash.Bytes(s.seed, nm)
		mask := uint64(len(t) - 1)
		i := n.hash & mask
		for ; t[i] != 0; i = (i + 1) & mask {
			if o := s.names[t[i]-1]; o.hash == n.hash && string(s.bytes(o)) == string(nm) {
				s.drop(n)
				return true
			}
		}
		t[i] = int32(len(s.names) + 1)
	}
	s.names = append(s.names, n)
	return false
}

// hasBackslash is bytes.IndexByte(b, '\\') >= 0 without the cost of a
// call for the short names most objects have.
func hasBackslash(b []byte) bool {
	if len(b) > 32 {
		return bytes.IndexByte(b, '\\') >= 0
	}
	for _, c := range b {
		if c == '\\' {
			return true
		}
	}
	return false
}

// drop frees what add took for n in arena.
func (s *nameSet) drop(n name) {
	if n.escaped {
		s.arena = s.arena[:n.start]
	}
}

// table returns the hash table of the object at depth, whose names start at
// first, large enough for want names at most half full: built from its
// names when it outgrows the linear search or its table.
func (s *nameSet) table(depth, first, want int) []int32 {
	for len(s.tables) <= depth {
		s.tables = append(s.tables, nil)
	}
	t := s.tables[depth]
	count := len(s.names) - first
	if count > linearNames && 2*want <= len(t) {
		return t
	}
	size := 4 * linearNames
	for size < 2*want {
		size *= 2
	}
	if cap(t) >= size {
		t = t[:size]
		clear(t)
	} else {
		t = make([]int32, size)
	}
	s.tables[depth] = t
	mask := uint64(size - 1)
	for j := first; j < len(s.names); j++ {
		o := &s.names[j]
		if count == linearNames { // the first table of this object: hash its names once
			o.hash = maphash.Bytes(s.seed, s.bytes(*o))
		}
		i := o.hash & mask
		for t[i] != 0 {
			i = (i + 1) & mask
		}
		t[i] = int32(j + 1)
	}
	return t
}
