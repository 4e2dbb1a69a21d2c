// Package inspect is the body threat protection of the decision pipeline:
// it says whether a JSON or XML request body is well-formed and within the
// limits that keep the app's parser safe (nesting, members, elements,
// string and text sizes, duplicate names, DTDs and entities), before the
// app parses it.
//
// It owns: which bodies are JSON or XML (Classify, from the Content-Type
// and, without one, the first bytes), the limits (JSONLimits, XMLLimits,
// checked by Validate) and the checks (CheckJSON, CheckXML), which read a
// body once as a stream of tokens and never build it as a tree. JSON is
// tokenized by github.com/go-json-experiment/json/jsontext, whose decoders
// are pooled with the state of a duplicate-name check of this package's
// own, so that a body within the limits costs no allocation; XML by
// encoding/xml with Strict set and no entity map, and any DTD refused
// before anything in it could be used.
//
// A check answers with a *Violation: the rule broken, the limit, the byte
// offset and where in the document (a JSON pointer, RFC 6901, or an element
// path). It is for the operator's log: it never holds a string value, text
// or attribute value of the body, only member and element names, cut to
// 256 bytes. What the client sees is the pipeline's business.
//
// The package must not read the environment, log, or import anything of
// warden's but internal/: the agent passes the limits in and decides what a
// violation costs the request.
package inspect
