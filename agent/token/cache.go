package token

import (
	"encoding/json"
	"unsafe"

	"github.com/warden-sidecar/warden/internal/cache"
)

// DefaultCacheBytes bounds what the verified tokens kept hold when
// Options.CacheSize is 0: about 4000 typical tokens (see cacheEntryBytes),
// fewer large ones.
const DefaultCacheBytes = 16 << 20

// cacheEntryBytes is about what the cache counts for a typical token, a
// 700-byte Keycloak access token: the token, its claims decoded, their JSON
// and digest, and the entry. A cache of an explicit size gets that much per
// entry, so that its size is what bounds it for such tokens.
const cacheEntryBytes = 4 << 10

// cached is what the cache keeps for a token: the verification and the key
// set generation it was made with. Only verified tokens are stored, so an
// attacker sending garbage cannot evict anything.
type cached struct {
	v   *Verified
	gen uint64
}

// newCache follows Options.CacheSize; nil keeps no tokens.
func newCache(size int) *cache.Cache[cached] {
	switch {
	case size == 0:
		return cache.New[cached](cache.Options{Entries: DefaultCacheSize, Bytes: DefaultCacheBytes})
	case size > 0:
		return cache.New[cached](cache.Options{Entries: size, Bytes: max(int64(size)*cacheEntryBytes, 1<<20)})
	}
	return nil
}

// size estimates what vt holds: the Verified, its JSON and digest, and its
// claims with all they point to, so that the cache's byte bound is a bound
// on the memory it keeps (the claims are most of it, several times their
// JSON).
func (vt *Verified) size() int {
	return int(unsafe.Sizeof(*vt)) + len(vt.JSON) + len(vt.Key) + claimSize(vt.Claims)
}

// claimSize estimates the bytes a claim value decoded from JSON and
// normalized holds beyond the interface that holds it: a string or number
// is boxed with its bytes; a list is boxed with its array; a map has a
// header and a power of two of slots (a string key, an interface and a
// control byte each), at least 8, filled up to 7/8.
func claimSize(v any) int {
	const header, iface = 16, 16
	switch v := v.(type) {
	case string:
		return header + len(v)
	case json.Number:
		return header + len(v)
	case int64, float64:
		return 8
	case []any:
		n := 24 + iface*cap(v)
		for _, e := range v {
			n += claimSize(e)
		}
		return n
	case map[string]any:
		slots := 8
		for slots*7/8 < len(v) {
			slots *= 2
		}
		n := 48 + (header+iface+1)*slots
		for k, e := range v {
			n += len(k) + claimSize(e)
		}
		return n
	}
	return 0 // nil and booleans are not allocated
}
