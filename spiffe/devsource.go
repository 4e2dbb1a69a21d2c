package spiffe

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// DevSource is the Source of dev mode: it issues its own SVID from a DevCA
// and renews it at half its lifetime, like a SPIRE agent would.
type DevSource struct {
	ca   *DevCA
	id   spiffeid.ID
	opts IssueOptions
	svid atomic.Pointer[x509svid.SVID]

	// rotated is called after each renewal; it may be nil.
	rotated func(*x509svid.SVID)
}

// DevSVIDTTL is the lifetime of the SVID a DevSource issues itself.
const DevSVIDTTL = time.Hour

// NewDevSource issues the first SVID for id. The SVID also names localhost,
// 127.0.0.1 and ::1 so that curl's hostname check passes in the quickstart.
func NewDevSource(ca *DevCA, id spiffeid.ID, rotated func(*x509svid.SVID)) (*DevSource, error) {
	s := &DevSource{
		ca: ca,
		id: id,
		opts: IssueOptions{
			TTL:      DevSVIDTTL,
			DNSNames: []string{"localhost"},
			IPs:      []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		},
		rotated: rotated,
	}
	svid, err := ca.Issue(id, s.opts)
	if err != nil {
		return nil, err
	}
	s.svid.Store(svid)
	return s, nil
}

// GetX509SVID returns the current SVID; new handshakes pick up a renewal at once.
func (s *DevSource) GetX509SVID() (*x509svid.SVID, error) {
	return s.svid.Load(), nil
}

// GetX509BundleForTrustDomain returns the dev CA's bundle for its own trust
// domain and an error for any other.
func (s *DevSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != s.ca.td {
		return nil, fmt.Errorf("spiffe: no X.509 bundle for trust domain %q", td)
	}
	return s.ca.Bundle(), nil
}

// Run renews the SVID at half its lifetime until ctx is done.
func (s *DevSource) Run(ctx context.Context) error {
	for {
		cur := s.svid.Load().Certificates[0]
		wait := time.Until(cur.NotBefore.Add(cur.NotAfter.Sub(cur.NotBefore) / 2))
		timer := time.NewTimer(max(wait, time.Second))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		svid, err := s.ca.Issue(s.id, s.opts)
		if err != nil {
			return fmt.Errorf("spiffe: renew dev SVID: %w", err)
		}
		s.svid.Store(svid)
		if s.rotated != nil {
			s.rotated(svid)
		}
	}
}

// TrustDomains lists the one trust domain a DevSource has a bundle for.
func (s *DevSource) TrustDomains() []spiffeid.TrustDomain {
	return []spiffeid.TrustDomain{s.ca.td}
}
