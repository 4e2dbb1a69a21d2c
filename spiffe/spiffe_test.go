package spiffe

import (
	"crypto/tls"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var td = spiffeid.RequireTrustDomainFromString("warden.test")

func TestPeerMatcher(t *testing.T) {
	tests := []struct {
		name    string
		list    string
		allowed []string
		refused []string
	}{
		{
			name:    "empty list allows the whole default trust domain",
			list:    "",
			allowed: []string{"spiffe://warden.test/a", "spiffe://warden.test/ns/x/sa/y"},
			refused: []string{"spiffe://other.test/a"},
		},
		{
			name:    "exact IDs allow only themselves",
			list:    "spiffe://warden.test/ns/a/sa/b, spiffe://other.test/ns/c/sa/d",
			allowed: []string{"spiffe://warden.test/ns/a/sa/b", "spiffe://other.test/ns/c/sa/d"},
			refused: []string{"spiffe://warden.test/ns/a/sa/bb", "spiffe://warden.test/ns/a", "spiffe://warden.test/ns/a/sa/b/c"},
		},
		{
			name:    "a prefix admits the IDs under it, on segment boundaries only",
			list:    "spiffe://warden.test/ns/default/*",
			allowed: []string{"spiffe://warden.test/ns/default/sa/app", "spiffe://warden.test/ns/default/x/y", "spiffe://warden.test/ns/default/x"},
			refused: []string{"spiffe://warden.test/ns/defaultevil/sa/app", "spiffe://warden.test/ns/defaultX/sa/x", "spiffe://warden.test/ns/defaultX",
				"spiffe://other.test/ns/default/sa/app", "spiffe://warden.test/ns/other/sa/app", "spiffe://warden.test/ns", "spiffe://warden.test"},
		},
		{
			name:    "a prefix does not admit the ID it is made of",
			list:    "spiffe://warden.test/ns/default/*",
			refused: []string{"spiffe://warden.test/ns/default"},
		},
		{
			name:    "a prefix and the exact ID admit both",
			list:    "spiffe://warden.test/ns/default/*, spiffe://warden.test/ns/default",
			allowed: []string{"spiffe://warden.test/ns/default", "spiffe://warden.test/ns/default/sa/app"},
		},
		{
			name:    "a trust domain wildcard allows a federated domain's workloads, not its own ID",
			list:    "spiffe://partner.test/*",
			allowed: []string{"spiffe://partner.test/anything", "spiffe://partner.test/ns/a/sa/b"},
			refused: []string{"spiffe://warden.test/a", "spiffe://partner.test", "spiffe://partner.testx/a"},
		},
		{
			name:    "the empty list's default trust domain does not admit its own ID",
			list:    " , ",
			allowed: []string{"spiffe://warden.test/a"},
			refused: []string{"spiffe://warden.test"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParsePeerMatcher(tt.list, td)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.allowed {
				if !m.Allowed(spiffeid.RequireFromString(s)) {
					t.Errorf("%s refused, want allowed", s)
				}
			}
			for _, s := range tt.refused {
				if m.Allowed(spiffeid.RequireFromString(s)) {
					t.Errorf("%s allowed, want refused", s)
				}
			}
			if m.Allowed(spiffeid.ID{}) {
				t.Error("the zero ID is allowed")
			}
		})
	}
}

func TestPeerMatcherRejectsMalformedEntries(t *testing.T) {
	for _, bad := range []string{
		"warden.test/ns/a",               // no scheme
		"spiffe://warden.test/ns/*/sa/a", // wildcard in the middle
		"spiffe://warden.test/ns/a*",     // wildcard glued to a segment
		"spiffe://Warden.Test/a",         // upper case trust domain
		"spiffe://warden.test/ns/../a",   // dot segment
		"https://warden.test/a",
	} {
		if _, err := ParsePeerMatcher(bad, td); err == nil {
			t.Errorf("%q accepted, want an error", bad)
		} else if !strings.HasPrefix(err.Error(), "spiffe: allowed peer ") {
			t.Errorf("%q: error %q lacks the package prefix and the entry", bad, err)
		}
	}
}

func TestDevCAIsCreatedOnceAndReused(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateDevCA(dir, td)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, DevCAKeyFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("CA key file mode %v, err %v: want 0600", info.Mode(), err)
	}
	again, err := LoadOrCreateDevCA(dir, td)
	if err != nil {
		t.Fatal(err)
	}
	if !again.cert.Equal(ca.cert) {
		t.Fatal("a second start created a new CA instead of reusing the one clients trust")
	}
	// ca.pem is the trust bundle clients use.
	bundle, err := x509bundle.Load(td, filepath.Join(dir, DevCACertFile))
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Issue(spiffeid.RequireFromPath(td, "/ns/a/sa/b"), IssueOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
		t.Fatalf("issued SVID does not verify against ca.pem: %v", err)
	}
}

func TestDevCARefusals(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateDevCA(dir, td)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateDevCA(dir, spiffeid.RequireTrustDomainFromString("other.test")); err == nil || !strings.Contains(err.Error(), `is for trust domain "warden.test", not "other.test"`) {
		t.Errorf("reusing a CA for another trust domain: %v", err)
	}
	if _, err := ca.Issue(spiffeid.RequireFromString("spiffe://other.test/a"), IssueOptions{TTL: time.Minute}); err == nil {
		t.Error("CA issued an SVID outside its trust domain")
	}
	if _, err := LoadDevCA(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("loading from an empty dir: %v, want not-exist", err)
	}
	if err := os.WriteFile(filepath.Join(dir, DevCACertFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateDevCA(dir, td); err == nil || !strings.Contains(err.Error(), "no PEM CERTIFICATE block") {
		t.Errorf("a corrupt ca.pem: %v, want a precise error and no silent replacement", err)
	}
}

func TestDevSVIDIsValidForServerAndClient(t *testing.T) {
	ca, err := LoadOrCreateDevCA(t.TempDir(), td)
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromPath(td, "/ns/default/sa/app")
	src, err := NewDevSource(ca, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	svid, _ := src.GetX509SVID()
	leaf := svid.Certificates[0]
	if got, err := x509svid.IDFromCert(leaf); err != nil || got != id {
		t.Fatalf("SVID ID %v, %v", got, err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("curl against 127.0.0.1 would fail: %v", err)
	}
	if ttl := leaf.NotAfter.Sub(leaf.NotBefore); ttl > DevSVIDTTL+2*time.Minute {
		t.Errorf("dev SVID lives %s, want about %s", ttl, DevSVIDTTL)
	}
	if _, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("other.test")); err == nil {
		t.Error("dev source returned a bundle for a foreign trust domain")
	}
}

// swappableBundle is a bundle source whose content a test can rotate.
type swappableBundle struct {
	mu sync.Mutex
	b  *x509bundle.Bundle
}

func (s *swappableBundle) set(b *x509bundle.Bundle) { s.mu.Lock(); s.b = b; s.mu.Unlock() }

func (s *swappableBundle) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.GetX509BundleForTrustDomain(td)
}

// Go skips VerifyPeerCertificate when a session resumes; ServerTLSConfig
// re-verifies the ticket's certificates, so a client whose CA was rotated out
// cannot come back on an old ticket.
func TestResumedSessionIsReverifiedAgainstCurrentBundle(t *testing.T) {
	ca, err := LoadOrCreateDevCA(t.TempDir(), td)
	if err != nil {
		t.Fatal(err)
	}
	serverID := spiffeid.RequireFromPath(td, "/server")
	src, err := NewDevSource(ca, serverID, nil)
	if err != nil {
		t.Fatal(err)
	}
	bundle := &swappableBundle{b: ca.Bundle()}
	addr, _ := echoServer(t, src, bundle)

	clientSVID, err := ca.Issue(spiffeid.RequireFromPath(td, "/client"), IssueOptions{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ClientTLSConfig(clientSVID, ca.Bundle(), tlsconfig.AuthorizeID(serverID))
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	dial := func() (bool, error) {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return false, err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		// The server's verdict arrives with the first read in TLS 1.3.
		if _, err := c.Write([]byte("ok")); err != nil {
			return false, err
		}
		if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
			return false, err
		}
		return c.ConnectionState().DidResume, nil
	}
	if _, err := dial(); err != nil {
		t.Fatal(err)
	}
	if resumed, err := dial(); err != nil || !resumed {
		t.Fatalf("second connection: resumed=%v err=%v, want a resumed session", resumed, err)
	}

	// Rotate the trust bundle to a CA that never signed the client.
	other, err := LoadOrCreateDevCA(t.TempDir(), td)
	if err != nil {
		t.Fatal(err)
	}
	bundle.set(other.Bundle())
	if resumed, err := dial(); err == nil {
		t.Fatalf("client of a rotated-out CA connected (resumed=%v)", resumed)
	}
}

// An expired client SVID must fail the handshake, like one from a foreign CA.
func TestExpiredClientSVIDIsRefused(t *testing.T) {
	ca, err := LoadOrCreateDevCA(t.TempDir(), td)
	if err != nil {
		t.Fatal(err)
	}
	serverID := spiffeid.RequireFromPath(td, "/server")
	src, err := NewDevSource(ca, serverID, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := echoServer(t, src, src)

	// A CA clock two hours back issues a one-hour SVID that expired an hour ago.
	past := *ca
	past.now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	expired, err := past.Issue(spiffeid.RequireFromPath(td, "/client"), IssueOptions{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// go-spiffe's own client config, not ClientTLSConfig, which would refuse
	// to present the expired SVID: the server must be the one to refuse it.
	cfg := tlsconfig.MTLSClientConfig(expired, ca.Bundle(), tlsconfig.AuthorizeID(serverID))
	c, err := tls.Dial("tcp", addr, cfg)
	if err == nil {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err = c.Write([]byte("ok")); err == nil {
			_, err = io.ReadFull(c, make([]byte, 2))
		}
	}
	if err == nil {
		t.Fatal("a client with an expired SVID got through")
	}
}

// BenchmarkPeerMatcherAllowed is the per-connection peer check against a
// list of exact IDs and prefixes, for an ID the last prefix admits and one
// none does.
func BenchmarkPeerMatcherAllowed(b *testing.B) {
	m, err := ParsePeerMatcher("spiffe://warden.test/ns/a/sa/b, spiffe://warden.test/ns/ops/*, spiffe://partner.test/*, spiffe://warden.test/ns/default/*", td)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		id   spiffeid.ID
		want bool
	}{
		{"admitted", spiffeid.RequireFromString("spiffe://warden.test/ns/default/sa/frontend"), true},
		{"refused", spiffeid.RequireFromString("spiffe://warden.test/ns/defaultX/sa/frontend"), false},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if m.Allowed(c.id) != c.want {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}
