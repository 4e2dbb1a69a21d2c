package spiffe

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ServerTLSConfig is the inbound mTLS configuration: warden presents its
// current SVID, requires a client X.509-SVID and verifies it against the
// trust bundle of the client's trust domain (go-spiffe does the parsing and
// the chain check). Which verified peers may send requests is decided later,
// per connection, by a PeerMatcher, so that a refused peer gets an HTTP 403
// rather than an opaque handshake failure.
//
// Session resumption stays on because it saves a full handshake per new
// connection, but Go does not call VerifyPeerCertificate for a resumed
// session: VerifyConnection re-verifies the certificates a ticket carries
// against the bundle as it is now, so a rotated-out CA or an expired client
// SVID cannot ride an old ticket.
//
// An own SVID past its expiry is never presented: the handshake fails
// instead (see Unexpired).
func ServerTLSConfig(svid x509svid.Source, bundle x509bundle.Source) *tls.Config {
	cfg := tlsconfig.MTLSServerConfig(Unexpired(svid), bundle, tlsconfig.AuthorizeAny())
	cfg.MinVersion = tls.VersionTLS12
	cfg.NextProtos = []string{"http/1.1"}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if !cs.DidResume {
			return nil
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("spiffe: resumed session without a client certificate")
		}
		if _, _, err := x509svid.Verify(cs.PeerCertificates, bundle); err != nil {
			return fmt.Errorf("spiffe: resumed session: %w", err)
		}
		return nil
	}
	return cfg
}

// ClientTLSConfig is an mTLS client configuration presenting svid and
// accepting servers that authorize allows. Tests and the outbound path use it.
// Like ServerTLSConfig, it never presents an expired SVID.
func ClientTLSConfig(svid x509svid.Source, bundle x509bundle.Source, allow tlsconfig.Authorizer) *tls.Config {
	cfg := tlsconfig.MTLSClientConfig(Unexpired(svid), bundle, allow)
	cfg.MinVersion = tls.VersionTLS12
	return cfg
}

// PeerID returns the SPIFFE ID of a verified TLS peer: the URI SAN of its
// leaf certificate, read by go-spiffe exactly as the handshake checked it.
func PeerID(cs *tls.ConnectionState) (spiffeid.ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, errors.New("spiffe: peer presented no certificate")
	}
	return x509svid.IDFromCert(cs.PeerCertificates[0])
}
