package bundle

import (
	"encoding/binary"
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// A decision depends only on what its policy reads of the input, so that is
// what the cache keys on. Keying on every field made every request a miss
// as soon as one header varied per request (a user agent, a client's request
// counter, a content length), while most policies read the method, the path
// and the peer. Once per revision, compile walks the compiled modules for
// their references to input and derives a keySpec from them.

// field is a part of Input that a key can hold.
type field uint32

const (
	fMethod field = 1 << iota
	fPath
	fRawPath
	fQuery
	fHeaders // all of them; keySpec.headers names single ones
	fTransaction
	fSender
	fPeerID
	fPeerTrustDomain
	fDestination
	fToken
	fOperation
	fParsedBody
	fSignatureKey     // input.signature's key_id, alg and components
	fSignatureCreated // and its created, different on every request
	fGRPC             // input.grpc: a gRPC request's service and method

	// fInput is every field: a rule reads the input as a whole.
	fInput = fGRPC<<1 - 1
)

// fieldNames name the fields for Status.CacheKey, in key order.
var fieldNames = [...]struct {
	f    field
	name string
}{
	{fMethod, "method"}, {fPath, "path"}, {fRawPath, "raw_path"}, {fQuery, "query"},
	{fHeaders, "headers"}, {fTransaction, "transaction"}, {fSender, "sender"},
	{fPeerID, "peer.spiffe_id"}, {fPeerTrustDomain, "peer.trust_domain"},
	{fDestination, "destination"}, {fToken, "token"}, {fOperation, "operation"},
	{fParsedBody, "parsed_body"}, {fSignatureKey, "signature.key_id"}, {fSignatureCreated, "signature.created"},
	{fGRPC, "grpc"},
}

// keySpec is what of an input a revision's decisions can depend on.
type keySpec struct {
	fields field
	// headers are the header names rules read one by one (input.headers["x"]),
	// sorted; empty when fields has fHeaders.
	headers []string
}

// keySpecOf derives the key from the compiled modules' references to input.
// A reference whose path starts with constant strings keys the field they
// name: input.headers["x-user"] only that header, input.peer.trust_domain
// only the trust domain. Anything less precise keys more: a variable or any
// other term where a field or header name would be (input.headers[k],
// input[x]) keys the whole field or the whole input, and so does input
// itself, however it is used (x := input, json.marshal(input),
// `with input as`), and so does a name read does not know.
//
// Every module counts, the mask policy's too. Its input is the decision log
// event, which holds the policy's input under "input": so input.input.<path>
// is read as input.<path> as well. Reading both ways, for every rule, is
// sound without knowing which query reaches which rule.
func keySpecOf(modules map[string]*ast.Module) keySpec {
	var k keySpec
	named := map[string]bool{}
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case ast.Ref:
			if !x.HasPrefix(ast.InputRootRef) {
				return false
			}
			k.read(x[1:], named)
			if len(x) > 1 && x[1].Value.Compare(ast.String("input")) == 0 {
				k.read(x[2:], named)
			}
			// The head is input itself, not a use of it as a whole; terms
			// after it may hold further references.
			for _, t := range x[1:] {
				vis.Walk(t)
			}
			return true
		case ast.Var:
			// The compiler turns every use of input into a ref; should one
			// remain a bare variable, it is a read of the whole input.
			if x == ast.InputRootDocument.Value {
				k.fields = fInput
			}
		case *ast.Head:
			// Not walked by the generic visitor.
			if x.Reference != nil {
				vis.Walk(x.Reference)
			}
		}
		return false
	})
	for _, m := range modules {
		for _, r := range m.Rules {
			vis.Walk(r)
		}
	}
	if k.fields&fHeaders == 0 {
		for name := range named {
			k.headers = append(k.headers, name)
		}
		slices.Sort(k.headers)
	}
	return k
}

// read records a reference to input whose path after input is path.
func (k *keySpec) read(path ast.Ref, named map[string]bool) {
	if len(path) == 0 {
		k.fields = fInput
		return
	}
	name, ok := path[0].Value.(ast.String)
	if !ok {
		k.fields = fInput
		return
	}
	var sub ast.String
	subConst := false
	if len(path) > 1 {
		sub, subConst = path[1].Value.(ast.String)
	}
	switch name {
	case "method":
		k.fields |= fMethod
	case "path":
		k.fields |= fPath
	case "raw_path":
		k.fields |= fRawPath
	case "query":
		k.fields |= fQuery
	case "headers":
		if subConst {
			named[string(sub)] = true
		} else {
			k.fields |= fHeaders
		}
	case "transaction":
		k.fields |= fTransaction
	case "sender":
		k.fields |= fSender
	case "peer":
		switch {
		case !subConst:
			k.fields |= fPeerID | fPeerTrustDomain
		case sub == "spiffe_id":
			k.fields |= fPeerID
		case sub == "trust_domain":
			k.fields |= fPeerTrustDomain
		}
	case "destination":
		k.fields |= fDestination
	case "token":
		k.fields |= fToken
	case "operation":
		k.fields |= fOperation
	case "parsed_body":
		k.fields |= fParsedBody
	case "signature":
		// A policy that asks which key signed keeps its decisions cached;
		// one that reads created (or the whole signature) decides anew
		// for every request, since created changes with each.
		k.fields |= fSignatureKey
		if !subConst || sub == "created" {
			k.fields |= fSignatureCreated
		}
	case "grpc":
		k.fields |= fGRPC
	case "input", "result":
		// The mask policy's event: input.input is read again as input by
		// the caller, and the result follows from the keyed fields.
	default:
		// A field this switch does not know: one inputValue gained after
		// it was written, or a name no input has. Keying the whole input is
		// right for both; forgetting a field would hand one request's
		// decision to another (TestKeySpecKnowsEveryInputField).
		k.fields = fInput
	}
}

// names lists what the key holds, for Status: ["input"] for the whole
// input, a field's name, or headers.<name> for a header read by name.
func (k *keySpec) names() []string {
	if k.fields == fInput {
		return []string{"input"}
	}
	var out []string
	for _, fn := range fieldNames {
		switch {
		case k.fields&fn.f != 0:
			out = append(out, fn.name)
		case fn.f == fHeaders:
			for _, h := range k.headers {
				out = append(out, "headers."+h)
			}
		}
	}
	return out
}

// maxPooledKey keeps one huge request from pinning a huge buffer in the pool.
const maxPooledKey = 64 << 10

var keyPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func putKey(buf *[]byte, key []byte) {
	if cap(key) > maxPooledKey {
		return
	}
	*buf = key
	keyPool.Put(buf)
}

// appendKey serializes the fields of in that k keys on, each length-prefixed,
// so that two inputs share a key only if every field a rule can read is the
// same in both. A header read by name is written as each of its values
// preceded by a 1, then a 0: absent, empty, present once or repeated, no two
// look alike. Token is represented by TokenKey and a byte saying whether it
// is present. The spec is the same for every key of a cache (one revision),
// so keys need not say which fields they hold.
func appendKey(b []byte, k *keySpec, in *Input) []byte {
	f := k.fields
	if f&fMethod != 0 {
		b = appendString(b, in.Method)
	}
	if f&fPath != 0 {
		b = appendString(b, in.Path)
	}
	if f&fRawPath != 0 {
		b = appendString(b, in.RawPath)
	}
	if f&fQuery != 0 {
		b = appendString(b, in.RawQuery)
	}
	if f&fHeaders != 0 {
		b = binary.AppendUvarint(b, uint64(len(in.Headers)))
		for i := range in.Headers {
			b = appendString(b, in.Headers[i].Name)
			b = appendString(b, in.Headers[i].Value)
		}
	} else {
		for _, name := range k.headers {
			for i := range in.Headers {
				if in.Headers[i].Name == name {
					b = appendString(append(b, 1), in.Headers[i].Value)
				}
			}
			b = append(b, 0)
		}
	}
	if f&fTransaction != 0 {
		b = appendString(b, in.Transaction)
	}
	if f&fSender != 0 {
		b = appendString(b, in.Sender)
	}
	if f&fPeerID != 0 {
		b = appendString(b, in.PeerID)
	}
	if f&fPeerTrustDomain != 0 {
		b = appendString(b, in.PeerTrustDomain)
	}
	if f&fDestination != 0 {
		b = appendString(b, in.DestinationID)
	}
	if f&fToken != 0 {
		if in.Token != nil {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = appendString(b, in.TokenKey)
	}
	if f&fOperation != 0 {
		if in.Operation != nil {
			b = appendString(append(b, 1), in.Operation.Key)
		} else {
			b = append(b, 0)
		}
	}
	if f&(fSignatureKey|fSignatureCreated) != 0 {
		if sig := in.Signature; sig != nil {
			b = appendString(append(b, 1), sig.KeyID)
			b = appendString(b, sig.Alg)
			b = binary.AppendUvarint(b, uint64(len(sig.Components)))
			for _, c := range sig.Components {
				b = appendString(b, c)
			}
			if f&fSignatureCreated != 0 {
				b = binary.AppendVarint(b, sig.Created)
			}
		} else {
			b = append(b, 0)
		}
	}
	if f&fGRPC != 0 {
		// Absent (not gRPC) and present with empty names look apart.
		if g := in.GRPC; g != nil {
			b = appendString(append(b, 1), g.Service)
			b = appendString(b, g.Method)
		} else {
			b = append(b, 0)
		}
	}
	if f&fParsedBody != 0 {
		// A JSON body is never empty: "" is no parsed body.
		b = appendString(b, in.ParsedBodyRaw)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// uncacheable reports whether in must bypass the cache: a Token without its
// TokenKey could not be told apart from another token in the key, nor an
// Operation without its Key from another operation.
func (k *keySpec) uncacheable(in *Input) bool {
	return k.fields&fToken != 0 && in.Token != nil && in.TokenKey == "" ||
		k.fields&fOperation != 0 && in.Operation != nil && in.Operation.Key == ""
}

// keysBody reports whether the key of in holds its parsed body. Such a
// decision is cached only when the policy asks for it (cache_ttl_seconds):
// bodies rarely repeat, and each would fill the cache with up to
// WARDEN_POLICY_BODY_MAX_BYTES of key.
func (k *keySpec) keysBody(in *Input) bool {
	return k.fields&fParsedBody != 0 && in.ParsedBodyRaw != ""
}
