package openapi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// doc wraps paths (YAML, indented for the paths object) in a minimal 3.0
// document.
func doc(version, paths string) string {
	return "openapi: " + version + "\ninfo: {title: t, version: '1'}\npaths:\n" + paths
}

func TestLoadErrorsNameFileAndField(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want []string // substrings of the error, after "openapi: <file>: "
	}{
		{"bad YAML", "openapi: 3.0.3\npaths: [unclosed", nil},
		{"not OpenAPI", "name: my-service\nreplicas: 3\n", []string{"not an OpenAPI 3 document"}},
		{"Swagger 2.0", "swagger: '2.0'\ninfo: {title: t, version: '1'}\npaths: {}\n", []string{"not an OpenAPI 3 document"}},
		{"OpenAPI 3.2 is not claimed", doc("3.2.0", "  /a:\n    get:\n      responses: {'200': {description: ok}}\n"), []string{`OpenAPI version "3.2.0" is not supported`}},
		{"no operation", doc("3.0.3", "  {}\n"), []string{"declares no operation"}},
		{"unresolved $ref", doc("3.0.3", `  /a/{id}:
    get:
      parameters: [{$ref: '#/components/parameters/Missing'}]
      responses: {'200': {description: ok}}
`), []string{"Missing"}},
		{"external $ref", doc("3.0.3", `  /a:
    get:
      parameters: [{$ref: 'other.yaml#/components/parameters/P'}]
      responses: {'200': {description: ok}}
`), []string{"other.yaml"}},
		{"unsupported parameter style", doc("3.0.3", `  /a:
    get:
      parameters: [{name: filter, in: query, style: deepObject, schema: {type: object}}]
      responses: {'200': {description: ok}}
`), []string{"paths./a.get: parameter filter (in query): style deepObject is not supported"}},
		{"matrix path style", doc("3.0.3", `  /a/{id}:
    get:
      parameters: [{name: id, in: path, required: true, style: matrix, schema: {type: string}}]
      responses: {'200': {description: ok}}
`), []string{"paths./a/{id}.get: parameter id (in path): style matrix is not supported in path"}},
		{"object query parameter", doc("3.0.3", `  /a:
    get:
      parameters: [{name: f, in: query, schema: {type: object}}]
      responses: {'200': {description: ok}}
`), []string{"paths./a.get: parameter f (in query): object parameters are not supported"}},
		{"content parameter", doc("3.0.3", `  /a:
    get:
      parameters: [{name: f, in: query, content: {application/json: {schema: {type: string}}}}]
      responses: {'200': {description: ok}}
`), []string{"paths./a.get: parameter f (in query): content"}},
		{"a parameter of two types", doc("3.1.0", `  /a:
    get:
      parameters: [{name: f, in: query, schema: {type: [integer, string]}}]
      responses: {'200': {description: ok}}
`), []string{"paths./a.get: parameter f (in query): schema: several types"}},
		{"a parameter inside a segment", doc("3.0.3", `  /files/{name}.json:
    get:
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      responses: {'200': {description: ok}}
`), []string{`paths./files/{name}.json: segment "{name}.json"`}},
		{"templates differing only in names", doc("3.0.3", `  /a/{x}:
    get:
      parameters: [{name: x, in: path, required: true, schema: {type: string}}]
      responses: {'200': {description: ok}}
  /a/{y}:
    put:
      parameters: [{name: y, in: path, required: true, schema: {type: string}}]
      responses: {'200': {description: ok}}
`), []string{"conflicting paths"}},
		{"undeclared path parameter", doc("3.0.3", `  /a/{id}:
    get:
      responses: {'200': {description: ok}}
`), []string{"id"}},
		{"a pattern that does not compile", doc("3.0.3", `  /a:
    get:
      parameters: [{name: q, in: query, schema: {type: string, pattern: '(unclosed'}}]
      responses: {'200': {description: ok}}
`), []string{"(unclosed"}},
		{"a 3.1 keyword the validator would skip", doc("3.1.0", `  /a:
    post:
      requestBody:
        content:
          application/json:
            schema:
              type: object
              properties:
                kind: {const: transfer}
      responses: {'200': {description: ok}}
`), []string{"paths./a.post: requestBody: content application/json: schema at /properties/kind: const"}},
		{"if/then/else in a parameter", doc("3.1.0", `  /a:
    get:
      parameters: [{name: q, in: query, schema: {type: string, if: {minLength: 1}, then: {maxLength: 3}}}]
      responses: {'200': {description: ok}}
`), []string{"paths./a.get: parameter q (in query): schema at /: if/then/else"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "spec.yaml")
			if err := os.WriteFile(file, []byte(tc.doc), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Load(file)
			if err == nil {
				t.Fatalf("loaded (%d operations)", s.Operations())
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.HasPrefix(msg, "openapi: "+file+": ") {
				t.Errorf("error %q does not start with openapi: <file>:", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
		})
	}
}

func TestLoadMissingFileNamesIt(t *testing.T) {
	file := filepath.Join(t.TempDir(), "absent.yaml")
	_, err := Load(file)
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("error %v does not name %s", err, file)
	}
}

func TestJSONDocumentLoads(t *testing.T) {
	s, err := Parse([]byte(`{"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
		"paths": {"/n/{v}": {"get": {"operationId": "n",
			"parameters": [{"name": "v", "in": "path", "required": true, "schema": {"type": ["number", "null"], "exclusiveMinimum": 0}}],
			"responses": {"200": {"description": "ok"}}}}}}`), "inline.json")
	if err != nil {
		t.Fatal(err)
	}
	op, _, v := s.Validate(req{path: "/n/2.5"}.build())
	if v != nil || op.PathParams["v"] != 2.5 {
		t.Fatalf("got %+v, %v; want v=2.5", op, v)
	}
	if _, _, v := s.Validate(req{path: "/n/0"}.build()); v == nil || v.Rule != "exclusive_minimum" {
		t.Errorf("0 with exclusiveMinimum 0 (3.1, numeric): %v", v)
	}
}

func TestRootAndTrailingSlashTemplates(t *testing.T) {
	s, err := Parse([]byte(doc("3.0.3", `  /:
    get: {operationId: root, responses: {'200': {description: ok}}}
  /dir/:
    get: {operationId: dir, responses: {'200': {description: ok}}}
  /dir:
    get: {operationId: file, responses: {'200': {description: ok}}}
`)), "inline")
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/": "root", "/dir/": "dir", "/dir": "file"} {
		op, _, v := s.Validate(req{path: path}.build())
		if v != nil || op.ID != want {
			t.Errorf("%s matched %+v (%v); want %s", path, op, v, want)
		}
	}
	if _, _, v := s.Validate(req{method: "HEAD", path: "/"}.build()); v == nil || v.Rule != "method" {
		t.Errorf("HEAD where only GET is declared: %v; want 404 method", v)
	}
}
