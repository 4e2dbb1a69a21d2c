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
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

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
	testenv.StartProcess(t, "etcd", daemon(etcd,
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
	testenv.StartProcess(t, "kube-apiserver", daemon(apiserver,
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

// daemon is a command for etcd or the API server, killed with the test
// process if that dies first (a test binary's -timeout panics without
// running cleanups).
func daemon(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}
