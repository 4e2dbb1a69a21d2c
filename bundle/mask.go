package bundle

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// A bundle says what its decision log must not show the way OPA's bundles
// do: with data.system.log.mask, evaluated with the decision log event as
// input ({"input": <the policy's input>, "result": <the decision>}). The
// engine evaluates it with each decision it computes and hands the result
// to the decision logger in Decision.Mask; cached decisions keep theirs,
// since the mask depends on nothing the cache key leaves out (see keySpecOf).

// maskRef is the document OPA's decision logger asks.
var maskRef = ast.MustParseRef("data.system.log.mask")

// maskEverything is the mask of a decision whose mask could not be
// evaluated: a broken mask must hide too much rather than too little.
var maskEverything = []string{"/input"}

// prepareMask prepares the mask query against a bundle's compiler and
// store, or returns nil when the bundle defines no mask, in rules or data.
func prepareMask(ctx context.Context, compiler *ast.Compiler, store storage.Store) (*rego.PreparedEvalQuery, error) {
	if len(compiler.GetRulesForVirtualDocument(maskRef)) == 0 && len(compiler.GetRulesWithPrefix(maskRef)) == 0 {
		_, err := storage.ReadOne(ctx, store, storage.MustParsePath("/system/log/mask"))
		if storage.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("data.system.log.mask: %w", err)
		}
	}
	pq, err := rego.New(
		rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(maskRef)))),
		rego.Compiler(compiler),
		rego.Store(store),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("data.system.log.mask: %w", err)
	}
	return &pq, nil
}

// evalMask evaluates the mask for a decision on input whose result is
// result (nil when undefined or in error). It fails safe: whatever goes
// wrong masks the whole input, and the decision stands.
func (c *compiled) evalMask(ctx context.Context, cancel topdown.Cancel, input ast.Value, result any) []string {
	event := ast.NewObject(ast.Item(ast.InternedTerm("input"), ast.NewTerm(input)))
	if result != nil {
		r, err := ast.InterfaceToValue(result)
		if err != nil {
			return maskEverything
		}
		event.Insert(ast.InternedTerm("result"), ast.NewTerm(r))
	}
	rs, err := c.mask.Eval(ctx, rego.EvalParsedInput(event), rego.EvalExternalCancel(cancel))
	switch {
	case err != nil || len(rs) > 1:
		return maskEverything
	case len(rs) == 0 || len(rs[0].Expressions) == 0:
		return nil
	}
	m, err := readMask(rs[0].Expressions[0].Value)
	if err != nil {
		return maskEverything
	}
	return m
}

// readMask accepts what OPA's decision logger does: a set (or array) of
// paths such as "/input/headers/x-api-key", or of objects {"op": "remove",
// "path": ...} and {"op": "upsert", "path": ..., "value": ...}. Upserts are
// ignored, since warden's decision log only erases; a path under
// /nd_builtin_cache too, since its events have none. Anything else is an
// error. The paths come back sorted, without duplicates.
func readMask(v any) ([]string, error) {
	items, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("mask is %s, want a set", describe(v))
	}
	var paths []string
	for _, item := range items {
		var path string
		switch x := item.(type) {
		case string:
			path = x
		case map[string]any:
			switch op := x["op"]; op {
			case "upsert":
				continue
			case "remove":
				if path, ok = x["path"].(string); !ok {
					return nil, fmt.Errorf("mask path is %s, want a string", describe(x["path"]))
				}
			default:
				return nil, fmt.Errorf("mask op is %s, want remove or upsert", describe(op))
			}
		default:
			return nil, fmt.Errorf("mask element is %s, want a path or an object", describe(item))
		}
		switch keep, err := maskPath(path); {
		case err != nil:
			return nil, err
		case keep:
			paths = append(paths, path)
		}
	}
	slices.Sort(paths)
	return slices.Compact(paths), nil
}

// maskPath checks a path the way OPA does (slash-prefixed, under /input,
// /result or /nd_builtin_cache, each segment URL path-escaped) and reports
// whether it concerns warden's decision log.
func maskPath(p string) (bool, error) {
	if !strings.HasPrefix(p, "/") {
		return false, fmt.Errorf("mask path %q is not slash-prefixed", p)
	}
	segs := strings.Split(p[1:], "/")
	for _, s := range segs {
		if _, err := url.PathUnescape(s); err != nil {
			return false, fmt.Errorf("mask path %q: %w", p, err)
		}
	}
	switch segs[0] {
	case "input", "result":
		return true, nil
	case "nd_builtin_cache":
		return false, nil
	}
	return false, fmt.Errorf("mask path %q is not under /input or /result", p)
}
