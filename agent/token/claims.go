package token

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
)

// decodeClaims reads a JWT claims set: one JSON object, numbers kept as
// json.Number (exact, and what OPA's input conversion takes), nothing after it.
func decodeClaims(payload []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, refuse(ReasonMalformed, "claims are not a JSON object")
	}
	if len(bytes.TrimSpace(payload[dec.InputOffset():])) != 0 {
		return nil, refuse(ReasonMalformed, "data after the claims object")
	}
	return claims, nil
}

// normalized holds the registered claims validate needs, and the claims
// map the policy sees.
type normalized struct {
	claims         map[string]any
	iss            string
	aud            []string
	exp, nbf, iat  int64
	hasNBF, hasIAT bool
}

// normalize rewrites claims in place so that a policy finds the common
// facts under one name whatever the issuer (gateway, Keycloak, SPIRE):
//
//	iss, sub, name   strings, when the token has them
//	aud              list of strings (a single string becomes a list)
//	exp              integer seconds, required
//	iat, nbf         integer seconds, when the token has them
//	user             preferred_username, else sub (absent when neither is)
//	roles            roles, else realm_access.roles (Keycloak), else groups: a list of strings
//	scope            "scope" split on spaces, else "scp" (string or list): a list of strings
//
// Every other claim stays as it is. A registered claim of the wrong type
// makes the token malformed rather than being dropped, so that a policy
// never mistakes a missing fact for an absent one.
func normalize(claims map[string]any) (normalized, error) {
	n := normalized{claims: claims}
	var err error
	for _, name := range [...]string{"iss", "sub", "name", "preferred_username"} {
		if v, ok := claims[name]; ok {
			if _, isStr := v.(string); !isStr {
				return n, refuse(ReasonMalformed, name+" is not a string")
			}
		}
	}
	n.iss, _ = claims["iss"].(string)

	exp, ok := claims["exp"]
	if !ok {
		return n, refuse(ReasonMalformed, "no exp: a token must expire")
	}
	if n.exp, err = seconds("exp", exp); err != nil {
		return n, err
	}
	claims["exp"] = n.exp
	if v, ok := claims["nbf"]; ok {
		if n.nbf, err = seconds("nbf", v); err != nil {
			return n, err
		}
		n.hasNBF = true
		claims["nbf"] = n.nbf
	}
	if v, ok := claims["iat"]; ok {
		if n.iat, err = seconds("iat", v); err != nil {
			return n, err
		}
		n.hasIAT = true
		claims["iat"] = n.iat
	}

	switch a := claims["aud"].(type) {
	case nil:
		if _, present := claims["aud"]; present {
			return n, refuse(ReasonMalformed, "aud is null")
		}
	case string:
		n.aud = []string{a}
	case []any:
		for _, v := range a {
			s, ok := v.(string)
			if !ok {
				return n, refuse(ReasonMalformed, "aud holds a non-string")
			}
			n.aud = append(n.aud, s)
		}
	default:
		return n, refuse(ReasonMalformed, "aud is neither a string nor a list")
	}
	claims["aud"] = strList(n.aud)

	if u, _ := claims["preferred_username"].(string); u != "" {
		claims["user"] = u
	} else if s, _ := claims["sub"].(string); s != "" {
		claims["user"] = s
	} else {
		delete(claims, "user")
	}

	roles := []string{}
	switch {
	case claims["roles"] != nil:
		roles = stringsOf(claims["roles"])
	case realmRoles(claims) != nil:
		roles = stringsOf(realmRoles(claims))
	case claims["groups"] != nil:
		roles = stringsOf(claims["groups"])
	}
	claims["roles"] = strList(roles)

	var scope []string
	switch s := claims["scope"].(type) {
	case string:
		scope = strings.Fields(s)
	case []any:
		scope = stringsOf(s)
	case nil:
		switch s := claims["scp"].(type) {
		case string:
			scope = strings.Fields(s)
		case []any:
			scope = stringsOf(s)
		}
	}
	claims["scope"] = strList(scope)
	return n, nil
}

func realmRoles(claims map[string]any) any {
	if ra, ok := claims["realm_access"].(map[string]any); ok {
		return ra["roles"]
	}
	return nil
}

// stringsOf takes the strings of a list (other items are skipped), or a
// single string as a one-item list.
func stringsOf(v any) []string {
	var out []string
	switch l := v.(type) {
	case string:
		out = append(out, l)
	case []any:
		for _, item := range l {
			if s, ok := item.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// strList is a list in the form OPA's input conversion and encoding/json
// both take without reflection.
func strList(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// maxSeconds bounds a NumericDate (year 33658) so that time arithmetic on
// it cannot overflow.
const maxSeconds = 1e12

// seconds reads a NumericDate: a JSON number of seconds, fractions dropped.
func seconds(name string, v any) (int64, error) {
	num, ok := v.(json.Number)
	if !ok {
		return 0, refuse(ReasonMalformed, name+" is not a number")
	}
	f, err := num.Float64()
	if i, ierr := num.Int64(); ierr == nil {
		f, err = float64(i), nil
	}
	if err != nil || math.IsNaN(f) || f > maxSeconds || f < -maxSeconds {
		return 0, refuse(ReasonMalformed, name+" is out of range")
	}
	return int64(f), nil
}
