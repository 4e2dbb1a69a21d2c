package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	opabundle "github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/compile"
)

// Policies the tests load, in package warden.authz.
const (
	allowGET = `package warden.authz
default allow := false
allow if input.method == "GET"
`
	allowPOST = `package warden.authz
default allow := false
allow if input.method == "POST"
`
)

const manifest = `{"roots": ["warden"]}`

// testKey is a signing key and the file warden verifies with.
type testKey struct {
	alg        string
	signing    string // private key PEM file, or the HMAC secret file
	verifyPath string // public key PEM file, or the same secret file
}

func newKey(t *testing.T, alg string) testKey {
	t.Helper()
	dir := t.TempDir()
	k := testKey{alg: alg, signing: filepath.Join(dir, "signing"), verifyPath: filepath.Join(dir, "verify")}
	var priv any
	var err error
	switch alg {
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "HS256":
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		s := []byte(hex.EncodeToString(secret))
		writeFile(t, k.signing, s)
		k.verifyPath = k.signing
		return k
	default:
		t.Fatalf("no key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, k.signing, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	pubDER, err := x509.MarshalPKIXPublicKey(priv.(crypto.Signer).Public())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, k.verifyPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
	return k
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// build makes a bundle archive with OPA's compile package, as `opa build -b`
// does: files maps paths to contents (a .manifest with roots ["warden"] is
// added unless given), rev is the manifest revision, and key signs it.
func build(t testing.TB, rev string, files map[string]string, key *testKey) []byte {
	t.Helper()
	dir := t.TempDir()
	if _, ok := files[".manifest"]; !ok {
		files[".manifest"] = manifest
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	// Built from the directory's own file system, so that file names in the
	// archive are relative to the bundle root ("/authz.rego").
	c := compile.New().WithAsBundle(true).WithFS(os.DirFS(dir)).WithPaths(".").WithOutput(&out)
	if rev != "" {
		c = c.WithRevision(rev)
	}
	if key != nil {
		c = c.WithBundleSigningConfig(opabundle.NewSigningConfig(key.signing, key.alg, "")).
			WithBundleVerificationKeyID("test")
	}
	if err := c.Build(context.Background()); err != nil {
		t.Fatalf("compile: %v", err)
	}
	return out.Bytes()
}

func policy(rego string) map[string]string { return map[string]string{"authz.rego": rego} }

// unpackArchive lists an archive's regular files.
func unpackArchive(t testing.TB, tgz []byte) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(h.Name, "/")] = b
	}
}

// packArchive writes files into a .tar.gz, for bundles compile cannot make
// (broken Rego, a file changed after signing).
func packArchive(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: "/" + name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tamper changes one file of a signed bundle, keeping its signature.
func tamper(t testing.TB, tgz []byte, name, content string) []byte {
	t.Helper()
	files := unpackArchive(t, tgz)
	if _, ok := files[name]; !ok {
		t.Fatalf("bundle has no %s", name)
	}
	files[name] = []byte(content)
	return packArchive(t, files)
}

// writeDir replaces dir's contents with the archive's files.
func writeDir(t testing.TB, dir string, tgz []byte) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range unpackArchive(t, tgz) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// writeTarball replaces the file atomically, as a deployment tool would.
func writeTarball(t testing.TB, path string, tgz []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, tgz, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// bundleServer serves one bundle over HTTP on 127.0.0.1 with an ETag.
type bundleServer struct {
	*httptest.Server
	mu       sync.Mutex
	body     []byte
	etag     string
	status   int // when non-zero, every request gets it
	noETag   bool
	requests atomic.Int64
	notMod   atomic.Int64
	sent     atomic.Int64 // body bytes
}

func newBundleServer(t *testing.T) *bundleServer {
	s := &bundleServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *bundleServer) set(body []byte) {
	sum := sha256.Sum256(body)
	s.mu.Lock()
	s.body, s.etag, s.status = body, `"`+hex.EncodeToString(sum[:8])+`"`, 0
	s.mu.Unlock()
}

func (s *bundleServer) fail(status int) {
	s.mu.Lock()
	s.status = status
	s.mu.Unlock()
}

func (s *bundleServer) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	body, etag, status, noETag := s.body, s.etag, s.status, s.noETag
	s.mu.Unlock()
	switch {
	case status != 0:
		http.Error(w, "unavailable", status)
		return
	case !noETag && r.Header.Get("If-None-Match") == etag:
		s.notMod.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if !noETag {
		w.Header().Set("ETag", etag)
	}
	w.Header().Set("Content-Type", "application/gzip")
	n, _ := w.Write(body)
	s.sent.Add(int64(n))
}

// engine builds an Engine and counts its activations and errors.
type testEngine struct {
	*Engine
	activations atomic.Int64
	errs        atomic.Int64
}

func newEngine(t *testing.T, opts Options) *testEngine {
	t.Helper()
	te := &testEngine{}
	opts.OnActivate = func(Status) { te.activations.Add(1) }
	opts.OnError = func(error) { te.errs.Add(1) }
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	te.Engine = e
	return te
}

func (te *testEngine) mustLoad(t *testing.T) {
	t.Helper()
	if err := te.Load(context.Background()); err != nil {
		t.Fatalf("Load: %v", err)
	}
}

// mustReject loads and expects a rejection whose text holds want, with the
// active revision unchanged and the error in Status.
func (te *testEngine) mustReject(t *testing.T, want string) {
	t.Helper()
	before := te.Status()
	err := te.Load(context.Background())
	if err == nil {
		t.Fatalf("Load accepted the bundle; want an error with %q", want)
	}
	if !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "bundle: ") {
		t.Fatalf("Load: %v; want bundle: ... %q", err, want)
	}
	st := te.Status()
	if st.Revision != before.Revision || st.Active != before.Active || !st.LoadedAt.Equal(before.LoadedAt) {
		t.Fatalf("status changed from %+v to %+v", before, st)
	}
	if st.LastError != err.Error() || st.LastErrorAt.IsZero() {
		t.Fatalf("Status.LastError = %q at %v; want %q", st.LastError, st.LastErrorAt, err)
	}
}

func request(method, path string) *Input {
	return &Input{
		Method: method, Path: path, RawPath: path,
		Headers:     []Header{{Name: "accept", Value: "*/*"}, {Name: "user-agent", Value: "test"}},
		Transaction: "tx-1", Sender: "127.0.0.1",
		PeerID: "spiffe://example.org/client", PeerTrustDomain: "example.org",
		DestinationID: "spiffe://example.org/app",
	}
}

func decide(t *testing.T, e *Engine, in *Input) Decision {
	t.Helper()
	d, err := e.Decide(context.Background(), in)
	if err != nil {
		t.Fatalf("Decide(%s %s): %v", in.Method, in.Path, err)
	}
	return d
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
