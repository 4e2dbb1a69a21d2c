package spiffetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// CA is a self-signed SPIFFE CA for one trust domain.
type CA struct {
	tb   testing.TB
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA creates a CA for td, valid from an hour ago for a day.
func NewCA(tb testing.TB, td spiffeid.TrustDomain) *CA {
	tb.Helper()
	key := newKey(tb)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: "spiffetest CA " + td.Name()},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &CA{tb: tb, td: td, cert: cert, key: key}
}

// Bundle is the trust bundle holding the CA certificate.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
}

// SVID issues an X.509-SVID for id valid from a minute ago for ttl; a
// negative ttl gives an SVID that has already expired.
func (ca *CA) SVID(id spiffeid.ID, ttl time.Duration) *x509svid.SVID {
	ca.tb.Helper()
	now := time.Now()
	return ca.SVIDWindow(id, now.Add(-time.Minute), now.Add(ttl))
}

// SVIDWindow issues an X.509-SVID for id valid from notBefore to notAfter.
// It also names 127.0.0.1 and localhost, so hostname-checking clients work.
func (ca *CA) SVIDWindow(id spiffeid.ID, notBefore, notAfter time.Time) *x509svid.SVID {
	ca.tb.Helper()
	if !id.MemberOf(ca.td) {
		ca.tb.Fatalf("spiffetest: CA of %s cannot issue %s", ca.td, id)
	}
	key := newKey(ca.tb)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(ca.tb),
		URIs:                  []*url.URL{id.URL()},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		ca.tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		ca.tb.Fatal(err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf}, PrivateKey: key}
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

func serial(tb testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
