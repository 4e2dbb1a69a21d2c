package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/spiffe"
	"github.com/warden-sidecar/warden/spiffe/spiffetest"
)

// These tests run the agent in-process against spiffetest's fake Workload
// API, which lets them deliver, rotate, federate and withdraw identities at
// will; cmd/warden's TestSPIRE does the same against a real SPIRE.

var (
	td        = spiffeid.RequireTrustDomainFromString("warden.test")
	partnerTD = spiffeid.RequireTrustDomainFromString("partner.test")
	appID     = spiffeid.RequireFromPath(td, "/ns/shop/sa/orders")
)

// running is an agent started by startAgent.
type running struct {
	agent *Agent
	log   *lockedBuffer
	done  chan error
	stop  context.CancelFunc
}

// startAgent runs an agent with env (on top of loopback listeners on
// ephemeral ports, in front of app) until the test ends.
func startAgent(t *testing.T, app string, env map[string]string) *running {
	t.Helper()
	vars := map[string]string{
		"WARDEN_INBOUND_ADDR":  "127.0.0.1:0",
		"WARDEN_ADMIN_ADDR":    "127.0.0.1:0",
		"WARDEN_OUTBOUND_ADDR": "127.0.0.1:0",
		"WARDEN_UPSTREAM_ADDR": app,
		"WARDEN_DRAIN_TIMEOUT": "2s",
		// eBPF is tested in cmd/warden's TestBPF tests, in namespaces.
		"WARDEN_RATE_LIMIT_MODE": "userspace",
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.FromEnv(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	r := &running{log: &lockedBuffer{}, done: make(chan error, 1)}
	// The root logger's writer, which security events on stderr share.
	out := NewBatchWriter(r.log, 0)
	r.agent = New(cfg, testLogger().Output(r.log), WithLogWriter(out))
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go func() { r.done <- r.agent.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
		_ = out.Close()
		if t.Failed() {
			out, _ := r.log.snapshot()
			t.Logf("agent log:\n%s", out)
		}
	})
	return r
}

// testLogger is built once: NewLogger sets zerolog's global time format,
// which agents already running read.
var testLogger = sync.OnceValue(func() zerolog.Logger { return NewLogger(io.Discard, "debug", "json") })

func (r *running) admin(t *testing.T) string {
	t.Helper()
	return "http://" + waitFor(t, "admin listener", func() net.Addr { _, a := r.agent.Addrs(); return a }).String()
}

func (r *running) inbound(t *testing.T) string {
	t.Helper()
	return waitFor(t, "inbound listener", func() net.Addr { a, _ := r.agent.Addrs(); return a }).String()
}

func waitFor[T comparable](t *testing.T, what string, get func() T) T {
	t.Helper()
	var zero T
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if v := get(); v != zero {
			return v
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %s within 10s", what)
	return zero
}

// logLine polls the agent's log for a line with event, and returns it.
func (r *running) logLine(t *testing.T, event string) map[string]any {
	t.Helper()
	p := waitFor(t, "log event "+event, func() *map[string]any {
		out, _ := r.log.snapshot()
		for _, line := range strings.Split(out, "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["event"] == event {
				return &m
			}
		}
		return nil
	})
	return *p
}

// securityEvent polls the agent's log for the security event name with
// reason, and returns it, after checking that it fired exactly once.
func (r *running) securityEvent(t *testing.T, name, reason string) map[string]any {
	t.Helper()
	match := func() []map[string]any {
		out, _ := r.log.snapshot()
		var found []map[string]any
		for _, line := range strings.Split(out, "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["event_type"] == "security" && m["event"] == name && m["reason"] == reason {
				found = append(found, m)
			}
		}
		return found
	}
	waitFor(t, "security event "+name+" "+reason, func() bool { return len(match()) > 0 })
	if found := match(); len(found) != 1 {
		t.Fatalf("%d %s events with reason %s, want 1: %v", len(found), name, reason, found)
	}
	return match()[0]
}

// readyz returns the status code and reason of /readyz.
func readyz(t *testing.T, admin string) (int, string) {
	t.Helper()
	resp, err := http.Get(admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Reason string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Reason
}

func waitReady(t *testing.T, admin string, want int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("/readyz %d", want), func() bool { code, _ := readyz(t, admin); return code == want })
}

// echoApp is the app behind warden: it answers with the identity header.
func echoApp(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.WriteString(string(ctx.Request.Header.Peek("X-Forwarded-Client-Cert")))
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// client is an mTLS client with a fixed SVID; each request is a new
// handshake, so it sees what warden presents now.
func client(t *testing.T, svid *x509svid.SVID, bundles ...*x509bundle.Bundle) *http.Client {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig:   spiffe.ClientTLSConfig(svid, x509bundle.NewSet(bundles...), tlsconfig.AuthorizeAny()),
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// call sends GET / through warden and returns the status, the body and
// the serial of the certificate warden presented.
func call(c *http.Client, inbound string) (int, string, string, error) {
	resp, err := c.Get("https://" + inbound + "/")
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
}

func serialOf(s *x509svid.SVID) string { return s.Certificates[0].SerialNumber.String() }

func TestStartupWaitsForTheFirstSVIDWithReadinessDown(t *testing.T) {
	ca := spiffetest.NewCA(t, td)
	wapi := spiffetest.NewWorkloadAPI(t) // no identity yet
	r := startAgent(t, echoApp(t), map[string]string{"SPIFFE_ENDPOINT_SOCKET": wapi.Addr()})
	admin := r.admin(t)

	if code, reason := readyz(t, admin); code != 503 || reason != "identity not loaded" {
		t.Fatalf("/readyz while waiting: %d %q, want 503 identity not loaded", code, reason)
	}
	var view map[string]any
	getJSON(t, admin+"/identity", &view)
	if view["mode"] != "workloadapi" || view["spiffe_id"] != "" || fmt.Sprint(view["bundle_trust_domains"]) != "[]" {
		t.Errorf("/identity while waiting: %v", view)
	}
	r.logLine(t, "workload_api_unavailable")

	svid := ca.SVID(appID, time.Hour)
	wapi.Set(svid, ca.Bundle())
	waitReady(t, admin, 200)
	r.logLine(t, "workload_api_restored")
	code, _, serial, err := call(client(t, ca.SVID(spiffeid.RequireFromPath(td, "/client"), time.Hour), ca.Bundle()), r.inbound(t))
	if err != nil || code != 200 || serial != serialOf(svid) {
		t.Errorf("request after the SVID arrived: %d %v; served serial %s, want %s", code, err, serial, serialOf(svid))
	}
}

func TestStartupTimeoutNamesTheSocket(t *testing.T) {
	wapi := spiffetest.NewWorkloadAPI(t) // never issues an identity
	r := startAgent(t, "127.0.0.1:1", map[string]string{
		"SPIFFE_ENDPOINT_SOCKET":  wapi.Addr(),
		"WARDEN_IDENTITY_TIMEOUT": "700ms",
	})
	var err error
	select {
	case err = <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not give up")
	}
	r.done <- err // for the cleanup
	want := "agent: WARDEN_IDENTITY_TIMEOUT=700ms passed without an SVID from SPIFFE_ENDPOINT_SOCKET=" + wapi.Addr() +
		": spiffe: no X.509-SVID from the Workload API at " + wapi.Addr() +
		": context deadline exceeded (last error: rpc error: code = PermissionDenied desc = no identity issued)"
	if err == nil || err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestRotationAndFederationShowInIdentityAndHandshakes(t *testing.T) {
	ca, partner := spiffetest.NewCA(t, td), spiffetest.NewCA(t, partnerTD)
	wapi := spiffetest.NewWorkloadAPI(t)
	first := ca.SVID(appID, time.Hour)
	wapi.Set(first, ca.Bundle())
	r := startAgent(t, echoApp(t), map[string]string{
		"SPIFFE_ENDPOINT_SOCKET": wapi.Addr(),
		"WARDEN_ALLOWED_PEERS":   "spiffe://warden.test/*, spiffe://partner.test/payments",
	})
	admin := r.admin(t)
	waitReady(t, admin, 200)
	started := time.Now()

	type view struct {
		SPIFFEID           string    `json:"spiffe_id"`
		TrustDomain        string    `json:"trust_domain"`
		SVIDExpiry         time.Time `json:"svid_expiry"`
		BundleTrustDomains []string  `json:"bundle_trust_domains"`
		LastRotation       time.Time `json:"last_rotation"`
		Mode               string    `json:"mode"`
	}
	var v view
	getJSON(t, admin+"/identity", &v)
	if v.SPIFFEID != appID.String() || v.TrustDomain != "warden.test" || v.Mode != "workloadapi" ||
		!v.SVIDExpiry.Equal(first.Certificates[0].NotAfter) || fmt.Sprint(v.BundleTrustDomains) != "[warden.test]" ||
		v.LastRotation.IsZero() || v.LastRotation.After(started) {
		t.Errorf("/identity %+v", v)
	}

	partnerClient := client(t, partner.SVID(spiffeid.RequireFromPath(partnerTD, "/payments"), time.Hour), ca.Bundle())
	if _, _, _, err := call(partnerClient, r.inbound(t)); err == nil {
		t.Error("a partner.test client got in before the federated bundle arrived")
	}

	second := ca.SVID(appID, 2*time.Hour)
	wapi.Set(second, ca.Bundle(), partner.Bundle())
	r.logLine(t, "svid_rotated")
	waitFor(t, "the rotation in /identity", func() bool {
		getJSON(t, admin+"/identity", &v)
		return v.SVIDExpiry.Equal(second.Certificates[0].NotAfter) && len(v.BundleTrustDomains) == 2
	})
	if fmt.Sprint(v.BundleTrustDomains) != "[partner.test warden.test]" || !v.LastRotation.After(started) {
		t.Errorf("/identity after rotation %+v", v)
	}
	code, body, serial, err := call(partnerClient, r.inbound(t))
	if err != nil || code != 200 || serial != serialOf(second) {
		t.Fatalf("federated client: %d %v, served %s want %s", code, err, serial, serialOf(second))
	}
	if want := "By=" + appID.String() + ";URI=spiffe://partner.test/payments"; body != want {
		t.Errorf("app saw %q, want %q", body, want)
	}
}

func TestAgentLossKeepsServingUntilNearExpiry(t *testing.T) {
	ca := spiffetest.NewCA(t, td)
	wapi := spiffetest.NewWorkloadAPI(t)
	// Six seconds of life: the margin is a tenth of it, 0.6s.
	now := time.Now()
	svid := ca.SVIDWindow(appID, now, now.Add(6*time.Second))
	notAfter := svid.Certificates[0].NotAfter
	wapi.Set(svid, ca.Bundle())
	r := startAgent(t, echoApp(t), map[string]string{"SPIFFE_ENDPOINT_SOCKET": wapi.Addr()})
	admin := r.admin(t)
	waitReady(t, admin, 200)
	inbound := r.inbound(t)
	c := client(t, ca.SVID(spiffeid.RequireFromPath(td, "/client"), time.Hour), ca.Bundle())

	wapi.Stop()
	lost := r.logLine(t, "workload_api_unavailable")
	if lost["level"] != "warn" || lost["socket"] != wapi.Addr() {
		t.Errorf("loss logged as %v", lost)
	}
	if code, _, serial, err := call(c, inbound); err != nil || code != 200 || serial != serialOf(svid) {
		t.Fatalf("request with the agent gone: %d %v", code, err)
	}

	// Readiness turns 503 before the SVID expires; handshakes go on until
	// the expiry and stop after it.
	var unready time.Time
	for deadline := notAfter.Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, reason := readyz(t, admin); code == 503 {
			if reason != "SVID near expiry and not renewed" {
				t.Fatalf("readiness reason %q", reason)
			}
			unready = time.Now()
			break
		}
	}
	if unready.IsZero() || !unready.Before(notAfter) {
		t.Fatalf("readiness turned 503 at %v; the SVID expires at %v", unready, notAfter)
	}
	l := r.securityEvent(t, "identity_expiring", "near_expiry")
	if l["severity"] != "high" || l["spiffe_id"] != appID.String() || l["svid_expiry"] != notAfter.UTC().Format(time.RFC3339) {
		t.Errorf("identity_expiring event %v", l)
	}
	waitFor(t, "the expiry", func() bool { return time.Now().After(notAfter) })
	if _, _, _, err := call(c, inbound); err == nil {
		t.Error("warden completed a handshake with an expired SVID")
	}
	if l := r.securityEvent(t, "identity_expiring", "expired"); l["severity"] != "critical" {
		t.Errorf("identity_expiring event for the expiry %v", l)
	}

	// The agent comes back with a new SVID: ready again.
	wapi.Set(ca.SVID(appID, time.Hour), ca.Bundle())
	wapi.Start()
	waitReady(t, admin, 200)
	if code, _, _, err := call(c, inbound); err != nil || code != 200 {
		t.Errorf("request after the agent came back: %d %v", code, err)
	}
}

func TestOutboundBetweenTwoAgents(t *testing.T) {
	ca := spiffetest.NewCA(t, td)
	frontendID := spiffeid.RequireFromPath(td, "/ns/shop/sa/frontend")
	serverAPI, clientAPI := spiffetest.NewWorkloadAPI(t), spiffetest.NewWorkloadAPI(t)
	serverAPI.Set(ca.SVID(appID, time.Hour), ca.Bundle())
	clientAPI.Set(ca.SVID(frontendID, time.Hour), ca.Bundle())

	server := startAgent(t, echoApp(t), map[string]string{"SPIFFE_ENDPOINT_SOCKET": serverAPI.Addr()})
	routes := "orders=" + server.inbound(t) + "|" + appID.String() + ",billing=" + server.inbound(t) + "|spiffe://warden.test/ns/shop/sa/billing"
	front := startAgent(t, "127.0.0.1:1", map[string]string{
		"SPIFFE_ENDPOINT_SOCKET": clientAPI.Addr(),
		"WARDEN_OUTBOUND_ROUTES": routes,
	})
	// Both ready: the server's policy must be active before its first
	// request, or it is denied policy_not_ready (fail closed).
	waitReady(t, server.admin(t), 200)
	waitReady(t, front.admin(t), 200)
	out := waitFor(t, "outbound listener", front.agent.OutboundAddr).String()

	tests := []struct {
		host string
		code int
		body string
	}{
		{"orders", 200, "By=" + appID.String() + ";URI=" + frontendID.String()},
		{"billing", 502, `"error":"destination_unverified"`},
		{"example.com", 403, `"error":"unknown_destination"`},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", "http://"+out+"/", nil)
		req.Host = tt.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || !strings.Contains(string(b), tt.body) {
			t.Errorf("Host %s: %d %s, want %d %s", tt.host, resp.StatusCode, b, tt.code, tt.body)
		}
	}
}

func TestNoOutboundListenerWithoutRoutes(t *testing.T) {
	ca := spiffetest.NewCA(t, td)
	wapi := spiffetest.NewWorkloadAPI(t)
	wapi.Set(ca.SVID(appID, time.Hour), ca.Bundle())
	r := startAgent(t, echoApp(t), map[string]string{"SPIFFE_ENDPOINT_SOCKET": wapi.Addr()})
	waitReady(t, r.admin(t), 200)
	r.logLine(t, "outbound_disabled")
	if a := r.agent.OutboundAddr(); a != nil {
		t.Errorf("outbound listener on %s with no routes", a)
	}
}
