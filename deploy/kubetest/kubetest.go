// Package kubetest runs a real Kubernetes API server for tests: etcd and
// kube-apiserver (built by .ci/kube-tools.sh into the tools cache) on
// loopback, with no controller manager, scheduler or kubelet, and a small
// client for it. It also mints the certificates such tests need.
//
// A test that needs the binaries skips without them, unless
// WARDEN_REQUIRE_PRIVILEGED_TESTS is set (CI sets it): then it fails.
// Name such tests TestAPIServer...
package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/warden-sidecar/warden/internal/testenv"
)

// BinDir is where the tools are: WARDEN_KUBE_BIN_DIR, else
// ${WARDEN_TOOLS_DIR:-$HOME/.cache/warden/tools}/bin, where
// .ci/kube-tools.sh puts them.
func BinDir() string {
	if d := os.Getenv("WARDEN_KUBE_BIN_DIR"); d != "" {
		return d
	}
	tools := os.Getenv("WARDEN_TOOLS_DIR")
	if tools == "" {
		home, _ := os.UserHomeDir()
		tools = filepath.Join(home, ".cache", "warden", "tools")
	}
	return filepath.Join(tools, "bin")
}

// Tool is the path of one of the tools (kube-apiserver, etcd, kubectl).
// Without it the test skips, or fails under WARDEN_REQUIRE_PRIVILEGED_TESTS.
func Tool(t testing.TB, name string) string {
	t.Helper()
	return testenv.NeedTool(t, filepath.Join(BinDir(), name), "run `make kube` (.ci/kube-tools.sh), or set WARDEN_KUBE_BIN_DIR")
}

// Cluster is a running API server.
type Cluster struct {
	URL        string // https://127.0.0.1:port
	CAPEM      []byte // the API server's serving CA
	Kubeconfig string // a kubeconfig file for kubectl, as cluster admin
	Dir        string

	client *http.Client

	mu        sync.Mutex
	resources map[string]resource // by "apiVersion/Kind"
}

type resource struct {
	path       string // /api/v1 or /apis/group/version
	name       string // plural
	namespaced bool
}

// Start runs etcd and kube-apiserver until the test ends, and waits until
// the API server is ready.
func Start(t testing.TB) *Cluster {
	t.Helper()
	apiserver, etcd := Tool(t, "kube-apiserver"), Tool(t, "etcd")
	// Short: etcd and the API server put unix sockets under it.
	dir, err := os.MkdirTemp("", "kubetest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	clientPort, peerPort, apiPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	testenv.StartProcess(t, "etcd", exec.Command(etcd,
		"--name=kubetest", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		"--unsafe-no-fsync", "--log-level=error"))

	ca := NewCA(t, "kubetest CA")
	serverCert, serverKey := ca.Issue(t, "kube-apiserver", nil, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	adminCert, adminKey := ca.Issue(t, "kubetest-admin", []string{"system:masters"}, nil, nil)
	saKey := newKey(t)
	files := map[string][]byte{
		"ca.pem": ca.PEM, "server.pem": serverCert, "server-key.pem": serverKey,
		"admin.pem": adminCert, "admin-key.pem": adminKey, "sa-key.pem": keyPEM(t, saKey),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := &Cluster{URL: "https://127.0.0.1:" + strconv.Itoa(apiPort), CAPEM: ca.PEM, Dir: dir}
	testenv.StartProcess(t, "kube-apiserver", exec.Command(apiserver,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(apiPort),
		// On loopback the API server cannot publish itself as the
		// kubernetes Service's endpoint; nothing here needs it.
		"--endpoint-reconciler-type=none",
		"--tls-cert-file="+filepath.Join(dir, "server.pem"), "--tls-private-key-file="+filepath.Join(dir, "server-key.pem"),
		"--client-ca-file="+filepath.Join(dir, "ca.pem"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(dir, "sa-key.pem"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa-key.pem"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--profiling=false"))

	pair, err := tls.X509KeyPair(adminCert, adminKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	c.client = &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}},
	}
	t.Cleanup(c.client.CloseIdleConnections)

	testenv.Poll(t, "kube-apiserver /readyz 200", 90*time.Second, func() bool {
		code, _, err := c.raw(context.Background(), http.MethodGet, "/readyz", nil)
		return err == nil && code == http.StatusOK
	})
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster: {server: %q, certificate-authority: %q}
users:
- name: admin
  user: {client-certificate: %q, client-key: %q}
contexts:
- name: kubetest
  context: {cluster: kubetest, user: admin}
current-context: kubetest
`, c.URL, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "admin.pem"), filepath.Join(dir, "admin-key.pem"))
	if err := os.WriteFile(c.Kubeconfig, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// StatusError is the API server's answer to a request it refused.
type StatusError struct {
	Code    int
	Reason  string
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("kubetest: %d %s: %s", e.Code, e.Reason, e.Message)
}

// IsNotFound says whether err is a 404 of the API server.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

func (c *Cluster) raw(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	code, b, _, err := c.rawWarn(ctx, method, path, body)
	return code, b, err
}

// rawWarn is raw that also returns the warnings the API server sent
// (Warning headers: admission webhooks' among them).
func (c *Cluster) rawWarn(ctx context.Context, method, path string, body []byte) (int, []byte, []string, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	var warnings []string
	for _, h := range resp.Header.Values("Warning") {
		// 299 - "text" (RFC 7234), as the API server writes them.
		if _, text, ok := strings.Cut(h, " - "); ok {
			if uq, err := strconv.Unquote(text); err == nil {
				text = uq
			}
			warnings = append(warnings, text)
		}
	}
	return resp.StatusCode, b, warnings, err
}

// Do sends in (JSON-encoded, unless nil) to path and decodes the answer
// into out (unless nil). An answer other than 2xx is a *StatusError.
func (c *Cluster) Do(ctx context.Context, method, path string, in, out any) error {
	_, err := c.do(ctx, method, path, in, out)
	return err
}

func (c *Cluster) do(ctx context.Context, method, path string, in, out any) ([]string, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return nil, err
		}
	}
	code, b, warnings, err := c.rawWarn(ctx, method, path, body)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %s %s: %w", method, path, err)
	}
	if code < 200 || code > 299 {
		var st struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &st) != nil || st.Message == "" {
			st.Message = string(b)
		}
		return warnings, &StatusError{Code: code, Reason: st.Reason, Message: st.Message}
	}
	if out != nil {
		return warnings, json.Unmarshal(b, out)
	}
	return warnings, nil
}

// Object is any API object: a typed one from k8s.io/api, or a manifest
// decoded into a map.
type Object any

// Create creates obj, or with dryRun only has the API server validate and
// admit it (?dryRun=All). Unknown fields are errors (fieldValidation=Strict,
// as kubectl apply does). The created object is decoded into out (unless
// nil); the warnings are the API server's (and its webhooks').
func (c *Cluster) Create(ctx context.Context, obj Object, dryRun bool, out any) ([]string, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, err
	}
	path, err := c.CollectionPath(ctx, meta.APIVersion, meta.Kind, meta.Metadata.Namespace)
	if err != nil {
		return nil, err
	}
	q := url.Values{"fieldValidation": {"Strict"}}
	if dryRun {
		q.Set("dryRun", "All")
	}
	return c.do(ctx, http.MethodPost, path+"?"+q.Encode(), json.RawMessage(b), out)
}

// CollectionPath is the REST path of a kind's collection (in namespace ns
// when the kind is namespaced), found by API discovery.
func (c *Cluster) CollectionPath(ctx context.Context, apiVersion, kind, ns string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := apiVersion + "/" + kind
	r, ok := c.resources[key]
	if !ok {
		base := "/apis/" + apiVersion
		if !strings.Contains(apiVersion, "/") {
			base = "/api/" + apiVersion
		}
		var list struct {
			Resources []struct {
				Name       string `json:"name"`
				Kind       string `json:"kind"`
				Namespaced bool   `json:"namespaced"`
			} `json:"resources"`
		}
		if err := c.Do(ctx, http.MethodGet, base, nil, &list); err != nil {
			return "", fmt.Errorf("kubetest: discover %s: %w", apiVersion, err)
		}
		if c.resources == nil {
			c.resources = make(map[string]resource)
		}
		for _, res := range list.Resources {
			if !strings.Contains(res.Name, "/") {
				c.resources[apiVersion+"/"+res.Kind] = resource{path: base, name: res.Name, namespaced: res.Namespaced}
			}
		}
		if r, ok = c.resources[key]; !ok {
			return "", fmt.Errorf("kubetest: the API server serves no %s in %s", kind, apiVersion)
		}
	}
	if !r.namespaced {
		return r.path + "/" + r.name, nil
	}
	if ns == "" {
		ns = "default"
	}
	return r.path + "/namespaces/" + ns + "/" + r.name, nil
}

// CreateNamespace creates a namespace with labels, and its default
// ServiceAccount, which the controller manager would create (the
// ServiceAccount admission plugin refuses pods without it).
func (c *Cluster) CreateNamespace(t testing.TB, name string, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name, "labels": labels}}
	if _, err := c.Create(ctx, ns, false, nil); err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	sa := map[string]any{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": map[string]any{"name": "default", "namespace": name}}
	if _, err := c.Create(ctx, sa, false, nil); err != nil {
		t.Fatalf("namespace %s: default service account: %v", name, err)
	}
}

// Kubectl runs kubectl against the cluster with stdin, and returns its
// output.
func (c *Cluster) Kubectl(t testing.TB, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(Tool(t, "kubectl"), append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Documents splits a multi-document YAML stream into objects, dropping
// empty documents.
func Documents(stream []byte) ([]map[string]any, error) {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(stream))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var doc bytes.Buffer
	flush := func() error {
		var obj map[string]any
		if err := yaml.Unmarshal(doc.Bytes(), &obj); err != nil {
			return err
		}
		if len(obj) > 0 {
			out = append(out, obj)
		}
		doc.Reset()
		return nil
	}
	for sc.Scan() {
		if line := sc.Text(); line == "---" || strings.HasPrefix(line, "--- ") {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		doc.Write(sc.Bytes())
		doc.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// CA is a certificate authority for tests.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte
}

// NewCA creates a CA valid for a day.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Issue returns a certificate (PEM) for both server and client use, and
// its key (PEM).
func (ca *CA) Issue(t testing.TB, commonName string, orgs, dns []string, ips []net.IP) (certPEM, keyPEMBytes []byte) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: commonName, Organization: orgs},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM(t, key)
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func keyPEM(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
