package load

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const clientSPIFFEID = "spiffe://warden.local/ns/default/sa/client"

// testPKI is a CA, a server certificate for 127.0.0.1 and localhost, and a
// client certificate carrying a SPIFFE ID, all minted for one test and
// written as PEM files.
type testPKI struct {
	caPool                    *x509.CertPool
	serverCert                tls.Certificate
	caFile, certFile, keyFile string
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "loadgen test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(serial int64, tmpl *x509.Certificate) (certPEM, keyPEM []byte) {
		key := newKey(t)
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	}
	srvCert, srvKey := issue(2, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "server"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:    []string{"localhost"},
	})
	spiffe, err := url.Parse(clientSPIFFEID)
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey := issue(3, &x509.Certificate{
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{spiffe},
	})

	p := &testPKI{
		caPool:   x509.NewCertPool(),
		caFile:   filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "client.pem"),
		keyFile:  filepath.Join(dir, "client-key.pem"),
	}
	p.caPool.AddCert(ca)
	if p.serverCert, err = tls.X509KeyPair(srvCert, srvKey); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	writeFile(t, p.certFile, cliCert)
	writeFile(t, p.keyFile, cliKey)
	return p
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// testServer is a real fasthttp server on 127.0.0.1:0 that counts what it
// sees: accepted TCP connections, completed TLS handshakes, requests, and
// requests whose client certificate carried clientSPIFFEID.
type testServer struct {
	url        string
	accepted   atomic.Int64
	handshakes atomic.Int64
	requests   atomic.Int64
	spiffePeer atomic.Int64
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startServer serves h over mTLS (tls.RequireAndVerifyClientCert against
// p's CA) when p is not nil, over plaintext HTTP otherwise.
func startServer(t testing.TB, p *testPKI, h fasthttp.RequestHandler) *testServer {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{}
	var ln net.Listener = countingListener{tcp, &s.accepted}
	scheme := "http"
	if p != nil {
		scheme = "https"
		ln = tls.NewListener(ln, &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{p.serverCert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    p.caPool,
			VerifyConnection: func(tls.ConnectionState) error {
				s.handshakes.Add(1)
				return nil
			},
		})
	}
	s.url = scheme + "://" + tcp.Addr().String() + "/"
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			s.requests.Add(1)
			if cs := ctx.TLSConnectionState(); cs != nil && len(cs.PeerCertificates) > 0 {
				for _, u := range cs.PeerCertificates[0].URIs {
					// Field by field: u.String() would allocate per request.
					if u.Scheme == "spiffe" && u.Host == "warden.local" && u.Path == "/ns/default/sa/client" {
						s.spiffePeer.Add(1)
					}
				}
			}
			h(ctx)
		},
		Logger: testLogger{t},
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.ShutdownWithContext(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
		<-served
	})
	return s
}

type testLogger struct{ t testing.TB }

// Printf keeps the start of each server log line: enough to see what went
// wrong without a dump of the bytes a non-TLS client sent.
func (l testLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if len(msg) > 160 {
		msg = msg[:160] + "..."
	}
	l.t.Logf("server: %s", msg)
}

func hello(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("hello") }

// mtlsConfig is a short bounded run against s with p's client certificate.
func mtlsConfig(p *testPKI, s *testServer) Config {
	c := DefaultConfig()
	c.URL = s.url
	c.CertFile, c.KeyFile, c.CAFile = p.certFile, p.keyFile, p.caFile
	c.Connections = 4
	c.Duration = 300 * time.Millisecond
	c.Warmup = 0
	return c
}
