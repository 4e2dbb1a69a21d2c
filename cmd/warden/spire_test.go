package main

// End-to-end tests against a real SPIRE: a spire-server and a spire-agent
// (v1.13.3, built by `make spire` into WARDEN_SPIRE_BIN_DIR) run on loopback
// in a temporary directory, and warden takes its identity from the agent's
// Workload API exactly as in a cluster. Workloads are told apart by the
// unix attestor's path selector: the warden binary, a copy of it for a
// second identity, and this test binary for the client.

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/warden-sidecar/warden/internal/spiretest"
	"github.com/warden-sidecar/warden/internal/testenv"
	"github.com/warden-sidecar/warden/spiffe"
)

const spireTD = "warden.test"

var (
	ordersID   = spiffeid.RequireFromString("spiffe://warden.test/ns/shop/sa/orders")
	frontendID = spiffeid.RequireFromString("spiffe://warden.test/ns/shop/sa/frontend")
	clientID   = spiffeid.RequireFromString("spiffe://warden.test/ns/test/sa/client")
)

// spireBins finds spire-server and spire-agent in WARDEN_SPIRE_BIN_DIR. Without
// them the test skips, unless WARDEN_REQUIRE_PRIVILEGED_TESTS says it must run.
func spireBins(t *testing.T) (server, agent string) {
	t.Helper()
	const install = "run `make spire` and set WARDEN_SPIRE_BIN_DIR, or use `make unit`"
	dir := os.Getenv("WARDEN_SPIRE_BIN_DIR")
	if dir == "" {
		testenv.Missing(t, "SPIRE binaries ("+install+")")
	}
	return testenv.NeedTool(t, filepath.Join(dir, "spire-server"), install),
		testenv.NeedTool(t, filepath.Join(dir, "spire-agent"), install)
}

// spire is a SPIRE server and agent on loopback (internal/spiretest) whose
// unix attestor tells workloads apart by their binary's path.
type spire struct {
	*spiretest.SPIRE
	dir string
}

func startSPIRE(t *testing.T) *spire {
	t.Helper()
	serverBin, agentBin := spireBins(t)
	// Short: unix socket paths must stay under about 100 bytes.
	dir, err := os.MkdirTemp("", "spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Workload X.509-SVIDs live a minute, so the agent rotates them every
	// half-minute or so.
	sp := spiretest.Start(t, spiretest.Options{ServerBin: serverBin, AgentBin: agentBin, TrustDomain: spireTD, Dir: dir,
		X509SVIDTTL: "1m", UnixAttestor: "discover_workload_path = true\nworkload_size_limit = -1"})
	return &spire{SPIRE: sp, dir: dir}
}

// entry registers id for workloads whose binary is at path.
func (s *spire) entry(t *testing.T, id spiffeid.ID, path string) {
	t.Helper()
	s.Entry(t, id.String(), "unix:path:"+path)
}

// stopAgent stops the SPIRE agent, as when its pod or node goes away.
func (s *spire) stopAgent(t *testing.T) {
	t.Helper()
	_ = s.Agent.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.Agent.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("spire-agent did not stop")
	}
}

func TestSPIRE(t *testing.T) {
	sp := startSPIRE(t)

	// Three workloads, three binaries, three identities.
	ordersBin, err := filepath.EvalSymlinks(wardenBin)
	if err != nil {
		t.Fatal(err)
	}
	frontendBin := filepath.Join(sp.dir, "warden-frontend")
	copyFile(t, ordersBin, frontendBin)
	testBin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sp.entry(t, ordersID, ordersBin)
	sp.entry(t, frontendID, frontendBin)
	sp.entry(t, clientID, testBin)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clientSrc, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(sp.AgentAddr())))
	if err != nil {
		t.Fatalf("the test's own SVID from SPIRE: %v", err)
	}
	defer clientSrc.Close()
	if svid, _ := clientSrc.GetX509SVID(); svid.ID != clientID {
		t.Fatalf("the test got %s from SPIRE, want %s", svid.ID, clientID)
	}

	appAddr, _ := slowApp(t)
	common := []string{"WARDEN_IDENTITY=workloadapi", "SPIFFE_ENDPOINT_SOCKET=" + sp.AgentAddr(),
		"WARDEN_INBOUND_ADDR=127.0.0.1:0", "WARDEN_ADMIN_ADDR=127.0.0.1:0", "WARDEN_UPSTREAM_ADDR=" + appAddr,
		"WARDEN_IDENTITY_TIMEOUT=60s", "WARDEN_LOG_LEVEL=info"}
	orders := startWardenBin(t, ordersBin, append(common, "WARDEN_OUTBOUND_ADDR=off")...)
	ordersIn := orders.listenAddr(t, "inbound")
	ordersAdmin := "http://" + orders.listenAddr(t, "admin")
	direct := spiffeHTTPClient(clientSrc, ordersID, false)

	t.Run("warden serves with its SPIRE-issued SVID to a SPIRE-identified client", func(t *testing.T) {
		testenv.Poll(t, "orders ready", 30*time.Second, func() bool { code, _ := get(t, ordersAdmin+"/readyz"); return code == 200 })
		var view struct {
			SPIFFEID           string   `json:"spiffe_id"`
			BundleTrustDomains []string `json:"bundle_trust_domains"`
			Mode               string   `json:"mode"`
			SVIDExpiry         string   `json:"svid_expiry"`
			LastRotation       string   `json:"last_rotation"`
		}
		_, body := get(t, ordersAdmin+"/identity")
		if err := json.Unmarshal([]byte(body), &view); err != nil {
			t.Fatal(err)
		}
		if view.SPIFFEID != ordersID.String() || fmt.Sprint(view.BundleTrustDomains) != "[warden.test]" || view.Mode != "workloadapi" {
			t.Errorf("/identity %s", body)
		}
		for _, ts := range []string{view.SVIDExpiry, view.LastRotation} {
			if _, err := time.Parse(time.RFC3339, ts); err != nil {
				t.Errorf("/identity time %q: %v", ts, err)
			}
		}
		code, got, cert, err := fetch(direct, "https://"+ordersIn+"/hello", "")
		if err != nil || code != 200 {
			t.Fatalf("GET /hello: %d %v", code, err)
		}
		if want := "app saw /hello with XFCC By=" + ordersID.String() + ";URI=" + clientID.String(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		if lifetime := cert.NotAfter.Sub(cert.NotBefore); lifetime > 2*time.Minute {
			t.Errorf("warden presented a certificate living %s: not the SPIRE SVID (1m)", lifetime)
		}
	})

	frontend := startWardenBin(t, frontendBin, append(common, "WARDEN_OUTBOUND_ADDR=127.0.0.1:0",
		"WARDEN_OUTBOUND_ROUTES=orders="+ordersIn+"|"+ordersID.String())...)
	outbound := "http://" + frontend.listenAddr(t, "outbound")
	plain := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(plain.CloseIdleConnections)

	t.Run("outbound mTLS from one warden to another with SPIRE identities", func(t *testing.T) {
		code, got, _, err := fetch(plain, outbound+"/from-frontend", "orders")
		if err != nil || code != 200 {
			t.Fatalf("outbound GET: %d %v %s", code, err, got)
		}
		if want := "app saw /from-frontend with XFCC By=" + ordersID.String() + ";URI=" + frontendID.String(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		code, got, _, _ = fetch(plain, outbound+"/", "elsewhere.example")
		if code != 403 || !strings.Contains(got, `"error":"unknown_destination"`) {
			t.Errorf("unrouted Host: %d %s", code, got)
		}
	})

	t.Run("a JWT-SVID from SPIRE is verified with the Workload API's JWT bundles", func(t *testing.T) {
		jw := startWardenBin(t, ordersBin, append(common, "WARDEN_OUTBOUND_ADDR=off",
			"WARDEN_JWT_JWKS=spiffe", "WARDEN_JWT_AUDIENCES="+ordersID.String())...)
		in, admin := "https://"+jw.listenAddr(t, "inbound"), "http://"+jw.listenAddr(t, "admin")
		testenv.Poll(t, "the JWT warden ready", 30*time.Second, func() bool { code, _ := get(t, admin+"/readyz"); return code == 200 })

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		wl, err := workloadapi.New(ctx, workloadapi.WithAddr(sp.AgentAddr()))
		if err != nil {
			t.Fatal(err)
		}
		defer wl.Close()
		svid, err := wl.FetchJWTSVID(ctx, jwtsvid.Params{Audience: ordersID.String()})
		if err != nil || svid.ID != clientID {
			t.Fatalf("JWT-SVID from SPIRE: %v %v", svid, err)
		}
		if code, _, body := call(t, direct, "GET", in+"/jwt", svid.Marshal()); code != 200 {
			t.Errorf("JWT-SVID for warden's audience: %d %s", code, body)
		}
		jw.find(t, func(l map[string]any) bool {
			in, _ := l["input"].(map[string]any)
			tok, _ := in["token"].(map[string]any)
			return decision(l)["event"] == "decision" && tok["sub"] == clientID.String() && tok["user"] == clientID.String()
		})

		elsewhere, err := wl.FetchJWTSVID(ctx, jwtsvid.Params{Audience: frontendID.String()})
		if err != nil {
			t.Fatal(err)
		}
		if code, challenge, _ := call(t, direct, "GET", in+"/jwt", elsewhere.Marshal()); code != 401 || challenge == "" {
			t.Errorf("JWT-SVID for another audience: %d %q, want 401", code, challenge)
		}
		jw.find(t, func(l map[string]any) bool {
			return l["event"] == "token_invalid" && l["reason"] == "token:wrong_audience"
		})
		if code, _, _ := call(t, direct, "GET", in+"/jwt", ""); code != 401 {
			t.Errorf("no token: %d, want 401", code)
		}
	})

	t.Run("rotation swaps the served certificate with no failed request under load", func(t *testing.T) {
		// Four clients, each at most one request per 20ms: two open a new
		// connection per request (and so see each certificate warden
		// presents), one keeps its connection, one goes through the other
		// warden's outbound listener (whose SVID rotates too).
		keepAlive := spiffeHTTPClient(clientSrc, ordersID, true)
		var (
			mu       sync.Mutex
			serials  = map[string]time.Time{}
			failures []string
			requests atomic.Int64
		)
		record := func(name string, code int, err error) {
			requests.Add(1)
			if err != nil || code != 200 {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%s: %d %v", name, code, err))
				mu.Unlock()
			}
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		worker := func(name string, do func()) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						do()
					}
				}
			}()
		}
		for i := range 2 {
			worker(fmt.Sprint("new-connection-", i), func() {
				code, _, cert, err := fetch(direct, "https://"+ordersIn+"/load", "")
				record("new connection", code, err)
				if err == nil {
					mu.Lock()
					s := cert.SerialNumber.String()
					if _, ok := serials[s]; !ok {
						serials[s] = time.Now()
					}
					mu.Unlock()
				}
			})
		}
		worker("keep-alive", func() {
			code, _, _, err := fetch(keepAlive, "https://"+ordersIn+"/load", "")
			record("keep-alive", code, err)
		})
		worker("outbound", func() {
			code, _, _, err := fetch(plain, outbound+"/load", "orders")
			record("outbound", code, err)
		})

		// Run until warden presented a second certificate, and a little
		// beyond, within the lifetime of the first (a minute) and some.
		testenv.Poll(t, "a rotated certificate presented", 90*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(serials) >= 2
		})
		rotated := time.Now()
		testenv.Poll(t, "load after the rotation", 10*time.Second, func() bool { return time.Since(rotated) > 2*time.Second })
		close(stop)
		wg.Wait()
		keepAlive.CloseIdleConnections()

		if len(failures) > 0 {
			t.Errorf("%d of %d requests failed during rotation; first: %s", len(failures), requests.Load(), failures[0])
		}
		t.Logf("%d requests, %d certificates presented", requests.Load(), len(serials))
		orders.find(t, func(l map[string]any) bool { return l["event"] == "svid_rotated" })
	})

	t.Run("with the SPIRE agent gone warden keeps serving, then turns unready before expiry", func(t *testing.T) {
		sp.stopAgent(t)
		lost := orders.find(t, func(l map[string]any) bool { return l["event"] == "workload_api_unavailable" })
		if lost["level"] != "warn" {
			t.Errorf("agent loss logged at %v, want warn", lost["level"])
		}
		code, _, cert, err := fetch(direct, "https://"+ordersIn+"/after-agent", "")
		if err != nil || code != 200 {
			t.Fatalf("request with the agent gone: %d %v", code, err)
		}
		if code, body := get(t, ordersAdmin+"/readyz"); code != 200 && time.Until(cert.NotAfter) > 7*time.Second {
			t.Errorf("/readyz with the agent gone and the SVID valid for %s: %d %s", time.Until(cert.NotAfter), code, body)
		}
		// The SVID lives a minute: its margin is 6s. Readiness must turn
		// 503 before the expiry.
		var unready time.Time
		testenv.Poll(t, "/readyz 503 before the SVID expires", time.Until(cert.NotAfter)+5*time.Second, func() bool {
			code, body := get(t, ordersAdmin+"/readyz")
			if code == 503 {
				unready = time.Now()
				if !strings.Contains(body, "SVID near expiry") {
					t.Errorf("/readyz reason: %s", body)
				}
			}
			return code == 503
		})
		if !unready.Before(cert.NotAfter) {
			t.Errorf("readiness turned 503 at %v, after the SVID expired at %v", unready, cert.NotAfter)
		}
		// And once, the security event: the SVID nears expiry unrenewed.
		ev := orders.find(t, func(l map[string]any) bool { return l["event"] == "identity_expiring" })
		if ev["event_type"] != "security" || ev["reason"] != "near_expiry" || ev["severity"] != "high" ||
			ev["spiffe_id"] != ordersID.String() || ev["svid_expiry"] != cert.NotAfter.UTC().Format(time.RFC3339) {
			t.Errorf("identity_expiring %v, want near_expiry, high, for %s expiring at %s", ev, ordersID, cert.NotAfter.UTC())
		}
		near := 0
		for _, ev := range securityEvents(orders.logLines(), "identity_expiring") {
			if ev["reason"] == "near_expiry" {
				near++
			}
		}
		if near != 1 {
			t.Errorf("%d identity_expiring events with reason near_expiry, want 1", near)
		}
	})
}

// spiffeHTTPClient presents src's SVID and accepts only server.
func spiffeHTTPClient(src *workloadapi.X509Source, server spiffeid.ID, keepAlive bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   spiffe.ClientTLSConfig(src, src, tlsconfig.AuthorizeID(server)),
		DisableKeepAlives: !keepAlive,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// fetch GETs url (with Host set when host is not empty) and returns the
// status, body and the server certificate when TLS was used.
func fetch(c *http.Client, url, host string) (int, string, *x509.Certificate, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, "", nil, err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	var cert *x509.Certificate
	if resp.TLS != nil {
		cert = resp.TLS.PeerCertificates[0]
	}
	return resp.StatusCode, string(b), cert, err
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// Startup in workloadapi mode waits for the first SVID with the admin
// server up and /readyz at 503, then exits with one line naming the socket.
// No SPIRE needed: nothing answers on the socket.
func TestWorkloadAPIStartupTimeoutNamesTheSocket(t *testing.T) {
	socket := "unix://" + t.TempDir() + "/no-agent.sock"
	p := startWarden(t, "WARDEN_IDENTITY=workloadapi", "SPIFFE_ENDPOINT_SOCKET="+socket,
		"WARDEN_ADMIN_ADDR=127.0.0.1:0", "WARDEN_INBOUND_ADDR=127.0.0.1:0", "WARDEN_IDENTITY_TIMEOUT=2s")
	admin := "http://" + p.listenAddr(t, "admin")
	if code, body := get(t, admin+"/readyz"); code != 503 || !strings.Contains(body, "identity not loaded") {
		t.Errorf("/readyz while waiting for the SVID: %d %s", code, body)
	}
	var err error
	select {
	case err = <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("warden did not give up waiting")
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit %v, want status 1", err)
	}
	var last string
	for _, line := range strings.Split(strings.TrimSpace(p.rawLog()), "\n") {
		last = line
	}
	want := "warden: agent: WARDEN_IDENTITY_TIMEOUT=2s passed without an SVID from SPIFFE_ENDPOINT_SOCKET=" + socket
	if !strings.HasPrefix(last, want) || !strings.Contains(last, "no such file or directory") {
		t.Errorf("last line %q\nwant it to start with %q and give the cause", last, want)
	}
}
