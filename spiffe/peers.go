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
	prefixes []spiffeid.Matcher
	domains  []spiffeid.TrustDomain
	patterns []string
}

// ParsePeerMatcher parses a comma-separated list of SPIFFE IDs and prefixes
// ending in "/*". "spiffe://td/*" allows every ID of trust domain td. An empty
// list allows every member of defaultTD.
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
			if id.Path() == "" {
				m.domains = append(m.domains, id.TrustDomain())
			} else {
				m.prefixes = append(m.prefixes, spiffeid.MatchIDPrefix(id))
			}
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
		m.domains = append(m.domains, defaultTD)
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
	for _, td := range m.domains {
		if id.MemberOf(td) {
			return true
		}
	}
	for _, match := range m.prefixes {
		if match(id) == nil {
			return true
		}
	}
	return false
}

// Patterns returns the effective allow-list, for logs and admin output.
func (m *PeerMatcher) Patterns() []string {
	return append([]string(nil), m.patterns...)
}
