// Package openapi validates requests against the app's OpenAPI document
// (WARDEN_OPENAPI_SPEC) before the policy decides on them: a request that
// matches no operation is refused with 404 not_found, one whose parameters
// or JSON body break their schemas with 400 invalid_request (415
// unsupported_media_type for a body of a media type the operation does not
// list), and an accepted one is named to the policy as input.operation
// (operationId, path template, typed path parameters).
//
// It owns: loading a document (OpenAPI 3.0 or 3.1, YAML or JSON,
// self-contained: no external $ref) with kin-openapi, which parses it,
// resolves its $refs and validates it; compiling it once into a route tree
// (a map lookup per path segment, literal segments before parameters) and a
// plan per operation; parsing the request's path, query, headers and
// cookies by the parameters' styles and converting their strings by their
// schema types; decoding JSON bodies; and the Store that swaps in a new
// document when the file changes and keeps the old one when it fails.
// Values are checked against their schemas by kin-openapi's
// Schema.VisitJSON, except simple scalar parameter schemas (bounds,
// lengths, pattern, string enum, format), which a compiled check decides
// without allocating, as the library would (a test and a fuzz target
// compare the two).
//
// What is enforced, and what is refused at load rather than skipped:
//   - Parameter styles: path simple, query form (explode true: ?a=1&a=2;
//     false: ?a=1,2), header simple, cookie form. Other styles (matrix,
//     label, spaceDelimited, pipeDelimited, deepObject), object
//     parameters, array cookies, parameters described by content instead
//     of schema, and parameter schemas with several types or a bare
//     oneOf/anyOf/allOf are refused at load. Header parameters named
//     Accept, Content-Type or Authorization are ignored, as OpenAPI says.
//   - Path templates whose parameters are part of a segment
//     ("/f/{name}.json") are refused; a trailing slash is significant.
//   - Schema keywords kin-openapi's validator does not enforce (3.1's
//     const, prefixItems, contains, patternProperties, dependentRequired,
//     dependentSchemas, propertyNames, unevaluated*, if/then/else,
//     $dynamicRef) are refused at load. Formats enforced: date,
//     date-time, byte, int32, int64, uuid, email, ipv4, ipv6; others are
//     annotations.
//   - Bodies: required, media type among requestBody.content (exact, then
//     type/*, then */*), and for JSON media types (application/json,
//     *+json) the schema. Other media types are checked for type only; an
//     operation without requestBody takes any body unchecked.
//   - Unknown query parameters, headers and cookies are allowed.
//
// Where two readers of a request could disagree, it refuses rather than
// picks: a parameter sent twice (unless an exploded array), a ';' in the
// query, malformed percent-encoding anywhere in the query or path, invalid
// UTF-8, numbers outside JSON's grammar (no '+', leading zeros, hex, NaN),
// a JSON object with a key twice, a lone surrogate escape.
//
// It must not read the environment or import other warden packages than
// agent/pep and internal/; it never logs or returns a parameter's value
// (Violation.Detail names the rule, not the value). The Store logs through
// the zerolog logger it is given.
package openapi
