package agent

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/spiffe/spiffetest"
)

// lifecycleAgent is an agent on the fake Workload API with env on top of
// loopback listeners, not started.
func lifecycleAgent(t *testing.T, env map[string]string) *Agent {
	t.Helper()
	ca := spiffetest.NewCA(t, td)
	wapi := spiffetest.NewWorkloadAPI(t)
	wapi.Set(ca.SVID(appID, time.Hour), ca.Bundle())
	vars := map[string]string{
		"WARDEN_INBOUND_ADDR":    "127.0.0.1:0",
		"WARDEN_ADMIN_ADDR":      "127.0.0.1:0",
		"WARDEN_OUTBOUND_ADDR":   "127.0.0.1:0",
		"WARDEN_OUTBOUND_ROUTES": "orders=127.0.0.1:1|spiffe://warden.test/ns/shop/sa/orders",
		"WARDEN_UPSTREAM_ADDR":   echoApp(t),
		"WARDEN_DRAIN_TIMEOUT":   "2s",
		"WARDEN_RATE_LIMIT_MODE": "userspace",
		"SPIFFE_ENDPOINT_SOCKET": wapi.Addr(),
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.FromEnv(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	return New(cfg, testLogger())
}

func listening(addr net.Addr) bool {
	c, err := net.DialTimeout("tcp", addr.String(), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Start returns once every listener serves, with their addresses: nothing
// to poll for.
func TestStartReturnsTheBoundAddresses(t *testing.T) {
	a := lifecycleAgent(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	addrs, err := a.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, addr := range map[string]net.Addr{"inbound": addrs.Inbound, "admin": addrs.Admin, "outbound": addrs.Outbound} {
		if addr == nil || !listening(addr) {
			t.Errorf("%s: %v not listening after Start", name, addr)
		}
	}
	// Ready once the first bundle is active, which Start does not wait for.
	waitReady(t, "http://"+addrs.Admin.String(), 200)
	cancel()
	if err := a.Wait(ctx); err != nil {
		t.Fatalf("Wait after a clean stop: %v", err)
	}
	for name, addr := range map[string]net.Addr{"inbound": addrs.Inbound, "admin": addrs.Admin, "outbound": addrs.Outbound} {
		if listening(addr) {
			t.Errorf("%s still listening after Wait", name)
		}
	}
}

// A part that fails to start stops those started before it.
func TestFailedStartStopsWhatStarted(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	a := lifecycleAgent(t, map[string]string{"WARDEN_INBOUND_ADDR": taken.Addr().String()})
	_, err = a.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "inbound listener") {
		t.Fatalf("Start: %v, want the inbound listener's error", err)
	}
	_, adm := a.Addrs()
	if adm == nil || listening(adm) {
		t.Errorf("admin listener %v still up after a failed start", adm)
	}
	if ob := a.OutboundAddr(); ob == nil || listening(ob) {
		t.Errorf("outbound listener %v still up after a failed start", ob)
	}
}

// One server failing stops the agent: every other part is shut down, and
// Wait says which failure stopped it.
func TestOneServerFailingStopsAll(t *testing.T) {
	a := lifecycleAgent(t, nil)
	addrs, err := a.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Wait(context.Background()) }()
	// The inbound listener dies under the proxy.
	a.components[len(a.components)-1].(*inboundServer).ln.Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "server stopped") {
			t.Errorf("Wait: %v, want the server's failure", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent kept running with its inbound server gone")
	}
	if listening(addrs.Admin) || listening(addrs.Outbound) {
		t.Error("the other listeners outlived the failure")
	}
}
