package signature

import (
	"fmt"
	"strings"
	"time"

	"github.com/dunglas/httpsfv"

	"github.com/warden-sidecar/warden/agent/token"
)

// candidate is the signature chosen for verification, its parameters read.
type candidate struct {
	label      string
	keyID      string
	key        token.Key
	alg        algorithm
	components []component
	params     string // the @signature-params value: the Inner List serialized
	sig        []byte
	created    int64
	expires    int64  // 0: none
	deadline   int64  // Unix ns from which the signature is stale anyway: the replay cache keeps it until then
	err        *Error // why this label cannot be verified
}

// maxCandidates bounds the signatures by known keys covering the required
// components that one request may carry: each costs a public-key operation.
const maxCandidates = 2

// candidates returns the labels, in order, whose keyid names a usable key
// and whose components cover the required ones, each with its parameters
// read, or the refusal of a label found wrong (err set: the next may still
// verify). With none, it returns the refusal of the best label seen: a
// known key that covers too little (component_not_covered) over unknown
// keys.
func (v *Verifier) candidates(r *Request, inputs, sigs *httpsfv.Dictionary) ([]*candidate, *Error) {
	var (
		best  *Error
		cands []*candidate
	)
	for _, label := range inputs.Names() {
		m, _ := inputs.Get(label)
		list, ok := m.(httpsfv.InnerList)
		if !ok {
			return nil, refuse(ReasonMalformed, "Signature-Input "+quote(label)+" is not an inner list")
		}
		sm, ok := sigs.Get(label)
		if !ok {
			return nil, refuse(ReasonMalformed, "no Signature for label "+quote(label))
		}
		keyID, ok := stringParam(list.Params, "keyid")
		if !ok {
			if best == nil {
				best = refuse(ReasonUnknownKey, "signature "+quote(label)+" has no keyid")
			}
			continue
		}
		key, err := v.keys.Lookup(keyID, "")
		if err != nil {
			if best == nil {
				best = refuse(ReasonUnknownKey, "signature "+quote(label)+": "+tokenDetail(err))
			}
			continue
		}
		alg, err := algorithmFor(key)
		if err != nil {
			if best == nil {
				best = refuse(ReasonUnknownKey, "signature "+quote(label)+": key "+quote(keyID)+": "+err.Error())
			}
			continue
		}
		c := &candidate{label: label, keyID: keyID, key: key, alg: alg}
		c.components, c.err = parseComponents(label, list)
		if c.err == nil {
			if missing := v.uncovered(r, c.components); missing != "" {
				// Perhaps another signer's narrower signature, by a key
				// we also know: the next label may cover enough.
				best = refuse(ReasonNotCovered, "signature "+quote(label)+" by key "+quote(keyID)+" does not cover "+missing)
				continue
			}
		}
		if len(cands) == maxCandidates {
			return nil, refuse(ReasonMalformed, fmt.Sprintf("more than %d signatures by known keys", maxCandidates))
		}
		cands = append(cands, c)
		if c.err != nil {
			continue
		}
		item, _ := sm.(httpsfv.Item)
		if c.sig, ok = item.Value.([]byte); !ok {
			c.err = refuse(ReasonMalformed, "Signature "+quote(label)+" is not a byte sequence")
			continue
		}
		if c.err = v.readParams(c, list.Params); c.err != nil {
			continue
		}
		params, merr := httpsfv.Marshal(list)
		if merr != nil {
			c.err = refuse(ReasonMalformed, "Signature-Input "+quote(label)+": "+merr.Error())
			continue
		}
		c.params = params
	}
	if len(cands) > 0 {
		return cands, nil
	}
	if best == nil { // no labels: an empty dictionary
		best = refuse(ReasonMalformed, "Signature-Input names no signature")
	}
	return nil, best
}

// tokenDetail is the detail of agent/token's lookup refusal.
func tokenDetail(err error) string {
	if te, ok := err.(*token.Error); ok {
		return te.Detail
	}
	return err.Error()
}

// readParams checks the signature parameters' types and reads created,
// expires and alg. Other parameters (nonce, tag, unknown ones) are covered
// by the signature, as every parameter is, and otherwise ignored.
func (v *Verifier) readParams(c *candidate, p *httpsfv.Params) *Error {
	for _, name := range p.Names() {
		val, _ := p.Get(name)
		var ok bool
		switch name {
		case "created", "expires":
			var n int64
			n, ok = val.(int64)
			ok = ok && n >= 0
			if name == "created" {
				c.created = n
			} else {
				c.expires = n
			}
		case "keyid", "nonce", "tag":
			_, ok = val.(string)
		case "alg":
			var s string
			s, ok = val.(string)
			if ok && s != c.alg.String() {
				return refuse(ReasonBadSignature, "signature "+quote(c.label)+": alg "+quote(s)+" does not fit key "+quote(c.keyID)+" ("+c.alg.String()+")")
			}
		default:
			ok = true
		}
		if !ok {
			return refuse(ReasonMalformed, "signature "+quote(c.label)+": parameter "+quote(name)+" has the wrong type")
		}
	}
	if _, ok := p.Get("created"); !ok {
		return refuse(ReasonMalformed, "signature "+quote(c.label)+" has no created")
	}
	if _, ok := p.Get("expires"); ok && c.expires < c.created {
		return refuse(ReasonMalformed, "signature "+quote(c.label)+" expires before it was created")
	}
	return nil
}

// checkTimes applies the freshness rules and sets the replay deadline:
// created within MaxAge (plus the skew) and not in the future (beyond the
// skew), expires not past (plus the skew).
func (v *Verifier) checkTimes(c *candidate, now time.Time) *Error {
	created := time.Unix(c.created, 0)
	if created.After(now.Add(v.skew)) {
		return refuse(ReasonStale, "signature "+quote(c.label)+" created in the future, at "+utc(created))
	}
	last := created.Add(v.maxAge + v.skew)
	if now.After(last) {
		return refuse(ReasonStale, "signature "+quote(c.label)+" created at "+utc(created)+", more than "+v.maxAge.String()+" ago")
	}
	if c.expires != 0 {
		exp := time.Unix(c.expires, 0).Add(v.skew)
		if now.After(exp) {
			return refuse(ReasonExpired, "signature "+quote(c.label)+" expired at "+utc(time.Unix(c.expires, 0)))
		}
		if exp.Before(last) {
			last = exp
		}
	}
	// The signature is fresh up to last included; the cache forgets an
	// entry at its deadline, so one nanosecond after.
	c.deadline = last.UnixNano() + 1
	return nil
}

func utc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// uncovered returns the first required component comps does not cover, or
// "". A field is required only when the request carries it, but
// content-digest always when there is a body.
func (v *Verifier) uncovered(r *Request, comps []component) string {
	for _, d := range v.derived {
		if !covers(comps, d) {
			return d
		}
	}
	for _, f := range v.fields {
		if covers(comps, f) {
			continue
		}
		if f == "content-digest" && len(r.Body) > 0 {
			return f
		}
		for _, h := range r.Headers {
			if equalFold(h.Name, f) {
				return f
			}
		}
	}
	return ""
}

// covers reports whether comps covers the whole of component name: the
// name without parameters, or a field with bs (its every line, wrapped).
func covers(comps []component, name string) bool {
	for _, c := range comps {
		if c.name == name && c.qpName == "" {
			return true
		}
	}
	return false
}

// stringParam returns a String parameter.
func stringParam(p *httpsfv.Params, name string) (string, bool) {
	v, ok := p.Get(name)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

// component is one covered component identifier. Of RFC 9421's component
// parameters only name (of @query-param) and bs (of a field) are
// understood: sf and key need the field's structured type, req applies to
// responses, tr to trailers, which the request path refuses; a component
// using them is refused (section 2.5 asks for an error on parameters not
// understood).
type component struct {
	name   string // "@method", "content-digest"
	qpName string // @query-param's name
	bs     bool
}

// String is the identifier as Signature-Input serializes it, without the
// name's quotes.
func (c component) String() string {
	if c.qpName == "" && !c.bs {
		return c.name
	}
	b := c.appendIdentifier(make([]byte, 0, len(c.name)+len(c.qpName)+12))
	return string(b[1:len(c.name)+1]) + string(b[len(c.name)+2:])
}

// appendIdentifier appends the serialized component identifier.
func (c component) appendIdentifier(b []byte) []byte {
	b = append(b, '"')
	b = append(b, c.name...)
	b = append(b, '"')
	switch {
	case c.qpName != "":
		b = append(b, `;name=`...)
		b = appendSFString(b, c.qpName)
	case c.bs:
		b = append(b, ";bs"...)
	}
	return b
}

// appendSFString serializes an sf-string whose characters were checked
// printable ASCII.
func appendSFString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// requestDerived are the derived components of a request.
var requestDerived = map[string]bool{
	"@method": true, "@target-uri": true, "@authority": true, "@scheme": true,
	"@request-target": true, "@path": true, "@query": true, "@query-param": true,
}

// parseComponents reads the covered components of a signature.
func parseComponents(label string, list httpsfv.InnerList) ([]component, *Error) {
	if len(list.Items) > maxComponents {
		return nil, refuse(ReasonMalformed, fmt.Sprintf("signature %s covers more than %d components", quote(label), maxComponents))
	}
	comps := make([]component, 0, len(list.Items))
	for _, item := range list.Items {
		name, ok := item.Value.(string)
		if !ok {
			return nil, refuse(ReasonMalformed, "signature "+quote(label)+": a component identifier is not a string")
		}
		c := component{name: name}
		bad := func(what string) *Error {
			return refuse(ReasonMalformed, "signature "+quote(label)+": component "+quote(name)+": "+what)
		}
		derived := strings.HasPrefix(name, "@")
		switch {
		case derived && !requestDerived[name]:
			return nil, bad("not a derived component of a request")
		case !derived && !validFieldName(name):
			return nil, bad("not a lower-case field name")
		}
		for _, p := range item.Params.Names() {
			val, _ := item.Params.Get(p)
			switch {
			case p == "name" && name == "@query-param":
				s, ok := val.(string)
				if !ok || s == "" || !printable(s) {
					return nil, bad("name is not a string")
				}
				c.qpName = s
			case p == "bs" && !derived:
				if val != true {
					return nil, bad("bs is not true")
				}
				c.bs = true
			default:
				return nil, bad("parameter " + quote(p) + " is not supported")
			}
		}
		if name == "@query-param" && c.qpName == "" {
			return nil, bad("no name")
		}
		for _, prev := range comps {
			if prev == c {
				return nil, bad("covered twice")
			}
		}
		comps = append(comps, c)
	}
	return comps, nil
}

// validFieldName reports whether s is a lower-case field name (RFC 9110
// token).
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// printable reports whether s is printable ASCII (VCHAR or SP).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
