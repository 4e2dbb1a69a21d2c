package spiffe

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// PeerMatcher decides which peer SPIFFE IDs may talk to this workload. It is
// built once from WARDEN_ALLOWED_PEERS and is safe for concurrent use.
type PeerMatcher struct {
	exact    map[spiffeid.ID]struct{}
	prefixes []prefix
	patterns []string
}

// prefix is an allow-list entry "spiffe://td/p/*": the IDs of td whose path
// is strictly under /p ("spiffe://td/*": every ID of td with a path).
type prefix struct {
	td    spiffeid.TrustDomain
	under string // the entry's path and "/": an admitted path starts with it and goes on
}

// admits reports whether id is strictly under p: same trust domain, and a
// path that continues p's path after a "/". go-spiffe's MatchIDPrefix also
// admits the prefix itself ("spiffe://td/ns/default" for
// ".../ns/default/*"), and MatchMemberOf the trust domain's own ID: a "/*"
// entry here names what is below it, never the entry itself.
func (p prefix) admits(id spiffeid.ID) bool {
	path := id.Path()
	return id.MemberOf(p.td) && len(path) > len(p.under) && strings.HasPrefix(path, p.under)
}

// ParsePeerMatcher parses a comma-separated list of SPIFFE IDs and prefixes
// ending in "/*". A prefix allows the IDs under it, on a segment boundary:
// "spiffe://td/ns/default/*" allows "spiffe://td/ns/default/sa/x" but
// neither "spiffe://td/ns/default" nor "spiffe://td/ns/defaultX/sa/x".
// "spiffe://td/*" allows every workload ID of trust domain td (not the
// trust domain's own ID, which names no workload). An empty list is
// "spiffe://defaultTD/*".
func ParsePeerMatcher(list string, defaultTD spiffeid.TrustDomain) (*PeerMatcher, error) {
	m := &PeerMatcher{exact: make(map[spiffeid.ID]struct{})}
	for _, raw := range strings.Split(list, ",") {
		entry := strings.TrimSpace(raw)
		if entry == "" {
			continue
		}
		if base, ok := strings.CutSuffix(entry, "/*"); ok {
			id, err := spiffeid.FromString(base)
			if err != nil {
				return nil, fmt.Errorf("spiffe: allowed peer %q: %w", entry, err)
			}
			m.prefixes = append(m.prefixes, prefix{td: id.TrustDomain(), under: id.Path() + "/"})
			m.patterns = append(m.patterns, entry)
			continue
		}
		if strings.Contains(entry, "*") {
			return nil, fmt.Errorf("spiffe: allowed peer %q: a wildcard is only allowed as a final \"/*\"", entry)
		}
		id, err := spiffeid.FromString(entry)
		if err != nil {
			return nil, fmt.Errorf("spiffe: allowed peer %q: %w", entry, err)
		}
		m.exact[id] = struct{}{}
		m.patterns = append(m.patterns, entry)
	}
	if len(m.patterns) == 0 {
		if defaultTD.IsZero() {
			return nil, errors.New("spiffe: allowed peers: empty list and no trust domain to default to")
		}
		m.prefixes = append(m.prefixes, prefix{td: defaultTD, under: "/"})
		m.patterns = append(m.patterns, defaultTD.IDString()+"/*")
	}
	return m, nil
}

// Allowed reports whether id may talk to this workload.
func (m *PeerMatcher) Allowed(id spiffeid.ID) bool {
	if id.IsZero() {
		return false
	}
	if _, ok := m.exact[id]; ok {
		return true
	}
	for _, p := range m.prefixes {
		if p.admits(id) {
			return true
		}
	}
	return false
}

// Patterns returns the effective allow-list, for logs and admin output.
func (m *PeerMatcher) Patterns() []string {
	return append([]string(nil), m.patterns...)
}
