package openapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// MaxSpecBytes bounds the document Load reads: a spec is configuration,
// and a bigger file is a mistake (or a YAML bomb's carrier).
const MaxSpecBytes = 16 << 20

// Spec is a compiled OpenAPI document: immutable, safe for concurrent use.
type Spec struct {
	source   string
	revision string
	root     *node
	ops      []*operation // in document order: paths sorted, then methods
}

// Load reads, parses, validates and compiles the document at path (YAML or
// JSON). Errors name the file and what is wrong
// ("openapi: /etc/spec.yaml: paths./a/{id}.get: parameter id: ...").
func Load(path string) (*Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err) // *PathError names the file
	}
	defer f.Close()
	data, err := readAtMost(f, MaxSpecBytes)
	if err != nil {
		return nil, fmt.Errorf("openapi: %s: %w", path, err)
	}
	return Parse(data, path)
}

// Parse parses, validates and compiles data, an OpenAPI 3.0 or 3.1 document
// in YAML or JSON; source names it in errors.
//
// The document must be self-contained: a $ref to another file or a URL is
// refused (bundle the document first), so that what is enforced is exactly
// the bytes that were read and digested.
func Parse(data []byte, source string) (*Spec, error) {
	fail := func(err error) (*Spec, error) { return nil, fmt.Errorf("openapi: %s: %w", source, err) }
	if len(data) > MaxSpecBytes {
		return fail(fmt.Errorf("document is larger than %d MiB", MaxSpecBytes>>20))
	}
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = false
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return fail(err)
	}
	switch v := doc.OpenAPI; {
	case v == "":
		return fail(errors.New("not an OpenAPI 3 document: no openapi field (Swagger 2.0 documents must be converted)"))
	case !strings.HasPrefix(v, "3.0.") && !strings.HasPrefix(v, "3.1.") && v != "3.0" && v != "3.1":
		return fail(fmt.Errorf("OpenAPI version %q is not supported: want 3.0.x or 3.1.x", v))
	}
	// Examples do not change what is enforced: a stale one must not stop
	// warden. Patterns do: one that does not compile is an error here,
	// not a check skipped at run time.
	if err := doc.Validate(context.Background(),
		openapi3.DisableExamplesValidation(),
		openapi3.EnableSchemaPatternValidation(),
	); err != nil {
		return fail(err)
	}
	sum := sha256.Sum256(data)
	s := &Spec{source: source, revision: hex.EncodeToString(sum[:6]), root: &node{}}
	if err := s.compile(doc); err != nil {
		return fail(err)
	}
	return s, nil
}

// Revision is a short digest of the document's bytes.
func (s *Spec) Revision() string { return s.revision }

// Source is the file (or name) the document was read from.
func (s *Spec) Source() string { return s.source }

// Operations is the number of operations the document declares.
func (s *Spec) Operations() int { return len(s.ops) }

// methods are the operations of a path item, in the order they are
// compiled (and so numbered).
var methods = []struct {
	name string
	op   func(*openapi3.PathItem) *openapi3.Operation
}{
	{"GET", func(p *openapi3.PathItem) *openapi3.Operation { return p.Get }},
	{"PUT", func(p *openapi3.PathItem) *openapi3.Operation { return p.Put }},
	{"POST", func(p *openapi3.PathItem) *openapi3.Operation { return p.Post }},
	{"DELETE", func(p *openapi3.PathItem) *openapi3.Operation { return p.Delete }},
	{"OPTIONS", func(p *openapi3.PathItem) *openapi3.Operation { return p.Options }},
	{"HEAD", func(p *openapi3.PathItem) *openapi3.Operation { return p.Head }},
	{"PATCH", func(p *openapi3.PathItem) *openapi3.Operation { return p.Patch }},
	{"TRACE", func(p *openapi3.PathItem) *openapi3.Operation { return p.Trace }},
}

func (s *Spec) compile(doc *openapi3.T) error {
	if doc.Paths == nil || doc.Paths.Len() == 0 {
		return errors.New("paths: the document declares no operation")
	}
	templates := doc.Paths.InMatchingOrder()
	slices.Sort(templates) // document order is lost in the map: be deterministic
	for _, tmpl := range templates {
		item := doc.Paths.Value(tmpl)
		where := "paths." + tmpl
		if item == nil {
			continue
		}
		if item.Ref != "" {
			return fmt.Errorf("%s: $ref path items are not supported", where)
		}
		segs, err := parseTemplate(tmpl)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		n, err := s.root.insert(segs)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if n.template != "" {
			return fmt.Errorf("%s: same route as %s: templates differing only in parameter names are ambiguous", where, n.template)
		}
		n.template = tmpl
		for _, m := range methods {
			o := m.op(item)
			if o == nil {
				continue
			}
			where := where + "." + strings.ToLower(m.name)
			op, err := compileOperation(doc, tmpl, segs, item, o, m.name)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			op.key = s.revision + "\x00" + strconv.Quote(op.op.ID) + "\x00" + strconv.Quote(tmpl)
			if len(op.path) == 0 {
				op.op.Key = op.key
			}
			n.ops = append(n.ops, op)
			s.ops = append(s.ops, op)
		}
	}
	if len(s.ops) == 0 {
		return errors.New("paths: the document declares no operation")
	}
	return nil
}

// readAtMost reads r whole, failing when it holds more than limit bytes.
func readAtMost(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("document is larger than %d MiB", limit>>20)
	}
	return data, nil
}
