package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"

	"github.com/warden-sidecar/warden/deploy/kubetest"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// The tests share one cluster, started by the first test that needs it and
// stopped when they have all run (TestMain): starting it takes most of the
// package's time.
var (
	once     sync.Once
	shared   *env
	setupErr error
	owner    = &packageTB{}
)

// env is the running cluster and what the tests reach it with.
type env struct {
	node   *Node
	spire  *SPIRE
	images Images
	// wardenID is the SPIFFE ID of every injected warden (the unix
	// attestor tells workloads apart by uid, and warden runs as 1337);
	// clientID is this test process's (uid 0).
	wardenID, clientID string

	demoOnce sync.Once // the demo Deployment (demo)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil && owner.Failed() {
		fmt.Fprint(os.Stderr, shared.node.Logs())
	}
	owner.runCleanups()
	if owner.Failed() && code == 0 {
		code = 1
	}
	os.Exit(code)
}

// cluster returns the shared cluster, starting it on first use. Without
// root or the tools, t skips (or fails under
// WARDEN_REQUIRE_PRIVILEGED_TESTS) before anything starts.
func cluster(t *testing.T) *env {
	t.Helper()
	tools := FindTools(t)
	kubetest.Tool(t, "kube-apiserver")
	kubetest.Tool(t, "etcd")
	spireBins(t)
	once.Do(func() {
		start := time.Now()
		setupErr = owner.run(func() { shared = startEnv(owner, tools) })
		if setupErr != nil {
			shared = nil
			return
		}
		fmt.Fprintf(os.Stderr, "cluster: ready in %s\n", time.Since(start).Round(time.Second))
	})
	if setupErr != nil {
		t.Fatalf("the cluster did not start: %v", setupErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(shared.node.Logs())
		}
	})
	return shared
}

func startEnv(t testing.TB, tools Tools) *env {
	if err := cleanStale(); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	images := BuildImages(t, root, t.TempDir())
	e := &env{images: images,
		wardenID: "spiffe://" + TrustDomain + "/ns/shop/sa/demo",
		clientID: "spiffe://" + TrustDomain + "/ns/test/sa/client"}
	e.spire = StartSPIRE(t)
	e.spire.Entry(t, e.wardenID, 1337)
	e.spire.Entry(t, e.clientID, 0)
	e.node = Start(t, tools, images)
	e.startWebhook(t, root, filepath.Join(filepath.Dir(images[WardenImage]), "warden-static"))
	return e
}

// startWebhook runs `warden webhook` on loopback and registers it by URL
// with the configuration deploy/ ships, as TestAPIServerWebhook does.
func (e *env) startWebhook(t testing.TB, root, wardenBin string) {
	ca := kubetest.NewCA(t, "webhook CA")
	cert, key := ca.Issue(t, "webhook", nil, nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	dir := t.TempDir()
	write(t, filepath.Join(dir, "tls.crt"), string(cert))
	write(t, filepath.Join(dir, "tls.key"), string(key))
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	cmd := daemon(wardenBin, "webhook")
	cmd.Env = []string{"WARDEN_WEBHOOK_ADDR=" + addr, "WARDEN_WEBHOOK_CERT=" + filepath.Join(dir, "tls.crt"),
		"WARDEN_WEBHOOK_KEY=" + filepath.Join(dir, "tls.key"), "WARDEN_SIDECAR_IMAGE=" + WardenImage}
	testenv.StartProcess(t, "warden-webhook", cmd)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	testenv.Poll(t, "the webhook's /healthz", 30*time.Second, func() bool {
		resp, err := client.Get("https://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	client.CloseIdleConnections()

	b, err := os.ReadFile(filepath.Join(root, "deploy/webhook/mutatingwebhookconfiguration.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(b, &mwc); err != nil {
		t.Fatal(err)
	}
	for i := range mwc.Webhooks {
		url := "https://" + addr + *mwc.Webhooks[i].ClientConfig.Service.Path
		mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca.PEM}
	}
	if _, err := e.node.Create(context.Background(), mwc, false, nil); err != nil {
		t.Fatalf("registering the webhook: %v", err)
	}
}

// packageTB is the testing.TB of what the tests share: its cleanups run
// in TestMain after every test, and a Fatal during the start ends the
// start (run returns it) rather than the test that happened to start it.
// testing.TB has unexported methods; embedding the interface satisfies
// them, and the methods the harness calls are all defined here.
type packageTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

type fatal struct{ msg string }

func (p *packageTB) run(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if fe, ok := r.(fatal); ok {
				err = errors.New(fe.msg)
				return
			}
			panic(r)
		}
	}()
	f()
	return nil
}

func (p *packageTB) Helper()      {}
func (p *packageTB) Name() string { return "TestMain" }
func (p *packageTB) Failed() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.failed }
func (p *packageTB) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}
func (p *packageTB) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cluster: "+format+"\n", args...)
}
func (p *packageTB) Log(args ...any) { p.Logf("%s", fmt.Sprint(args...)) }
func (p *packageTB) Errorf(format string, args ...any) {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
	p.Logf(format, args...)
}
func (p *packageTB) Error(args ...any) { p.Errorf("%s", fmt.Sprint(args...)) }
func (p *packageTB) Fatalf(format string, args ...any) {
	p.Errorf(format, args...)
	panic(fatal{fmt.Sprintf(format, args...)})
}
func (p *packageTB) Fatal(args ...any) { p.Fatalf("%s", fmt.Sprint(args...)) }
func (p *packageTB) Skipf(format string, args ...any) {
	p.Fatalf("skipped: "+format, args...)
}
func (p *packageTB) Skip(args ...any) { p.Fatalf("skipped: %s", fmt.Sprint(args...)) }
func (p *packageTB) FailNow()         { p.Fatalf("FailNow") }
func (p *packageTB) Fail()            { p.Errorf("Fail") }
func (p *packageTB) TempDir() string {
	dir, err := os.MkdirTemp("", "wcluster-tb")
	if err != nil {
		p.Fatal(err)
	}
	p.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// runCleanups runs the cleanups, last registered first, as testing does.
func (p *packageTB) runCleanups() {
	for {
		p.mu.Lock()
		if len(p.cleanups) == 0 {
			p.mu.Unlock()
			return
		}
		f := p.cleanups[len(p.cleanups)-1]
		p.cleanups = p.cleanups[:len(p.cleanups)-1]
		p.mu.Unlock()
		func() {
			defer func() {
				if r := recover(); r != nil {
					if _, ok := r.(fatal); !ok {
						panic(r)
					}
				}
			}()
			f()
		}()
	}
}
