package spiffe

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Files a DevCA keeps in its directory. ca.pem doubles as the trust bundle
// that clients of a dev-mode warden verify it with.
const (
	DevCACertFile = "ca.pem"
	DevCAKeyFile  = "ca_key.pem"
)

const devCAValidity = 365 * 24 * time.Hour

// DevCA is the embedded development identity provider: a self-signed CA for
// one trust domain that issues X.509-SVIDs. It stands in for SPIRE when
// WARDEN_IDENTITY=dev and must never be used in production.
type DevCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	td   spiffeid.TrustDomain
	now  func() time.Time
}

// LoadOrCreateDevCA reuses the CA in dir, or creates one for td when dir holds
// none. A CA that exists for another trust domain, has expired, or is
// unreadable is an error: it is never silently replaced, since clients may
// trust it already.
func LoadOrCreateDevCA(dir string, td spiffeid.TrustDomain) (*DevCA, error) {
	ca, err := LoadDevCA(dir)
	switch {
	case err == nil:
		if !td.IsZero() && ca.td != td {
			return nil, fmt.Errorf("spiffe: dev CA in %s is for trust domain %q, not %q: remove the directory or change the SPIFFE ID", dir, ca.td, td)
		}
		return ca, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	return createDevCA(dir, td)
}

// LoadDevCA loads the CA kept in dir.
func LoadDevCA(dir string) (*DevCA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, DevCACertFile))
	if err != nil {
		return nil, fmt.Errorf("spiffe: dev CA: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, DevCAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("spiffe: dev CA: %w", err)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("spiffe: dev CA %s: %w", filepath.Join(dir, DevCACertFile), err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("spiffe: dev CA %s: %w", filepath.Join(dir, DevCAKeyFile), err)
	}
	if !cert.IsCA || len(cert.URIs) != 1 {
		return nil, fmt.Errorf("spiffe: dev CA %s: not a SPIFFE CA certificate", dir)
	}
	td, err := spiffeid.TrustDomainFromURI(cert.URIs[0])
	if err != nil {
		return nil, fmt.Errorf("spiffe: dev CA %s: %w", dir, err)
	}
	if now := time.Now(); now.After(cert.NotAfter) {
		return nil, fmt.Errorf("spiffe: dev CA %s expired at %s: remove the directory to create a new one", dir, cert.NotAfter.Format(time.RFC3339))
	}
	return &DevCA{cert: cert, key: key, td: td, now: time.Now}, nil
}

func createDevCA(dir string, td spiffeid.TrustDomain) (*DevCA, error) {
	if td.IsZero() {
		return nil, errors.New("spiffe: dev CA: no trust domain to create it for")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("spiffe: dev CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Organization: []string{"warden development CA"}, CommonName: td.Name()},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(devCAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("spiffe: dev CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("spiffe: dev CA: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("spiffe: dev CA: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spiffe: dev CA: %w", err)
	}
	// The key goes first so that a crash between the writes leaves no
	// certificate without its key (LoadDevCA then reports the missing file).
	if err := writeFileAtomic(filepath.Join(dir, DevCAKeyFile), pemBlock("PRIVATE KEY", keyDER), 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, DevCACertFile), pemBlock("CERTIFICATE", der), 0o644); err != nil {
		return nil, err
	}
	return &DevCA{cert: cert, key: key, td: td, now: time.Now}, nil
}

// TrustDomain is the trust domain the CA issues SVIDs for.
func (ca *DevCA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Bundle is the trust bundle that verifies SVIDs the CA issued.
func (ca *DevCA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
}

// IssueOptions tune an issued SVID.
type IssueOptions struct {
	TTL time.Duration
	// DNSNames and IPs are added as SANs beside the SPIFFE ID so that clients
	// doing hostname verification (curl) accept a dev-mode server.
	DNSNames []string
	IPs      []net.IP
}

// Issue mints an X.509-SVID for id, which must be in the CA's trust domain.
func (ca *DevCA) Issue(id spiffeid.ID, opts IssueOptions) (*x509svid.SVID, error) {
	if !id.MemberOf(ca.td) {
		return nil, fmt.Errorf("spiffe: dev CA for %q cannot issue %q: the ID is outside its trust domain", ca.td, id)
	}
	if opts.TTL <= 0 {
		return nil, fmt.Errorf("spiffe: issue %q: TTL must be positive, got %s", id, opts.TTL)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("spiffe: issue %q: %w", id, err)
	}
	now := ca.now()
	notAfter := now.Add(opts.TTL)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Organization: []string{"warden development SVID"}},
		URIs:                  []*url.URL{id.URL()},
		DNSNames:              opts.DNSNames,
		IPAddresses:           opts.IPs,
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("spiffe: issue %q: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("spiffe: issue %q: %w", id, err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf}, PrivateKey: key}, nil
}

// WriteSVID writes svid.pem, svid_key.pem and bundle.pem into dir: the files
// curl's --cert, --key and --cacert take.
func (ca *DevCA) WriteSVID(dir string, svid *x509svid.SVID) error {
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return fmt.Errorf("spiffe: write SVID: %w", err)
	}
	bundlePEM, err := ca.Bundle().Marshal()
	if err != nil {
		return fmt.Errorf("spiffe: write SVID: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("spiffe: write SVID: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"svid_key.pem", keyPEM, 0o600},
		{"svid.pem", certPEM, 0o644},
		{"bundle.pem", bundlePEM, 0o644},
	} {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand does not fail on supported platforms.
		panic(err)
	}
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM PRIVATE KEY block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", key)
	}
	return signer, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("spiffe: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("spiffe: write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("spiffe: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("spiffe: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("spiffe: write %s: %w", path, err)
	}
	return nil
}
