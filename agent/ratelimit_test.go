package agent

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/agent/ratelimit"
	"github.com/warden-sidecar/warden/spiffe/spiffetest"
)

// startLimitedAgent runs an agent on the Workload API identity with env and
// waits until it is ready; the client holds an SVID of the same trust domain.
func startLimitedAgent(t *testing.T, env map[string]string) (*running, *http.Client) {
	t.Helper()
	ca := spiffetest.NewCA(t, td)
	wapi := spiffetest.NewWorkloadAPI(t)
	wapi.Set(ca.SVID(appID, time.Hour), ca.Bundle())
	env["SPIFFE_ENDPOINT_SOCKET"] = wapi.Addr()
	r := startAgent(t, echoApp(t), env)
	waitReady(t, r.admin(t), 200)
	return r, client(t, ca.SVID(appID, time.Hour), ca.Bundle())
}

func TestRateLimitViewAndBlockInUserspace(t *testing.T) {
	r, c := startLimitedAgent(t, map[string]string{
		"WARDEN_PACKET_RATE_LIMIT": "100",
		"WARDEN_CONN_RATE_LIMIT":   "50",
		"WARDEN_CONN_BURST":        "20",
	})
	admin := r.admin(t)
	for range 3 {
		if code, _, _, err := call(c, r.inbound(t)); err != nil || code != 200 {
			t.Fatalf("under the limits: %d %v", code, err)
		}
	}
	if err := r.agent.Block(netip.MustParseAddr("127.0.0.1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := call(c, r.inbound(t)); err == nil {
		t.Fatal("a blocked source's new connection was served")
	}

	var v ratelimit.Status
	getJSON(t, admin+"/ratelimit", &v)
	if v.Mode != "userspace" || v.RequestedMode != "userspace" || v.Port == 0 {
		t.Fatalf("mode %q requested %q port %d", v.Mode, v.RequestedMode, v.Port)
	}
	if v.Limits != (ratelimit.Limits{ConnRate: 50, ConnBurst: 20, PacketRate: 100}) {
		t.Fatalf("limits %+v", v.Limits)
	}
	// 3 connections and 3 requests passed; the fourth connection was
	// dropped as blocked.
	if v.Counters.Passed != 6 || v.Counters.Dropped.Blocked != 1 {
		t.Fatalf("counters %+v, want 6 passed and 1 blocked", v.Counters)
	}
	if len(v.Blocklist) != 1 || v.Blocklist[0].IP != "127.0.0.1" || v.Blocklist[0].RemainingSeconds <= 50 {
		t.Fatalf("blocklist %+v", v.Blocklist)
	}
	if len(v.TopSources) != 1 || v.TopSources[0].IP != "127.0.0.1" {
		t.Fatalf("top sources %+v", v.TopSources)
	}
	line := r.logLine(t, "source_blocked")
	if line["source_ip"] != "127.0.0.1" || line["duration_s"] != 60.0 || line["reason"] != "manual" || line["event_type"] != "security" {
		t.Fatalf("source_blocked line %v", line)
	}
	if err := r.agent.Unblock(netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if line := r.logLine(t, "source_unblocked"); line["source_ip"] != "127.0.0.1" || line["reason"] != "lifted" || line["cause"] != "manual" {
		t.Fatalf("source_unblocked line %v", line)
	}
	if code, _, _, err := call(c, r.inbound(t)); err != nil || code != 200 {
		t.Fatalf("after Unblock: %d %v", code, err)
	}
}

func TestRateLimitOff(t *testing.T) {
	r, c := startLimitedAgent(t, map[string]string{
		"WARDEN_RATE_LIMIT_MODE": "off",
		"WARDEN_CONN_RATE_LIMIT": "1",
	})
	admin := r.admin(t)
	for range 5 {
		if code, _, _, err := call(c, r.inbound(t)); err != nil || code != 200 {
			t.Fatalf("mode off still limits: %d %v", code, err)
		}
	}
	var v ratelimit.Status
	getJSON(t, admin+"/ratelimit", &v)
	if v.Mode != "off" {
		t.Fatalf("mode %q", v.Mode)
	}
	if err := r.agent.Block(netip.MustParseAddr("127.0.0.1"), time.Minute); !errors.Is(err, ratelimit.ErrOff) {
		t.Fatalf("Block with mode off: %v", err)
	}
}

// An eBPF program that can't attach (here: no such interface) is a
// warning in auto mode, with the userspace limiter enforcing instead, and
// a startup error naming the interface in ebpf mode, even with no limit.
func TestRateLimitAutoFallsBackAndEBPFFails(t *testing.T) {
	r, c := startLimitedAgent(t, map[string]string{
		"WARDEN_RATE_LIMIT_MODE": "auto",
		"WARDEN_CONN_RATE_LIMIT": "1000",
		"WARDEN_BPF_INTERFACE":   "wd-missing0",
	})
	admin := r.admin(t)
	if code, _, _, err := call(c, r.inbound(t)); err != nil || code != 200 {
		t.Fatalf("after the fallback: %d %v", code, err)
	}
	line := r.logLine(t, "ratelimit_fallback")
	if line["level"] != "warn" || line["error"] == nil {
		t.Fatalf("fallback line %v", line)
	}
	var v ratelimit.Status
	getJSON(t, admin+"/ratelimit", &v)
	if v.Mode != "userspace" || v.RequestedMode != "auto" || !strings.Contains(v.FallbackReason, "wd-missing0") ||
		!slices.Equal(v.KernelFeatures, []ratelimit.Feature{ratelimit.FeatureConnRate}) {
		t.Fatalf("auto mode view: %+v", v)
	}

	vars := map[string]string{
		"WARDEN_IDENTITY": "dev", "WARDEN_DEV_DIR": t.TempDir(),
		"WARDEN_INBOUND_ADDR": "127.0.0.1:0", "WARDEN_ADMIN_ADDR": "127.0.0.1:0",
		"WARDEN_RATE_LIMIT_MODE": "ebpf", "WARDEN_BPF_INTERFACE": "wd-missing0",
	}
	cfg, err := config.FromEnv(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = New(cfg, testLogger()).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "wd-missing0") {
		t.Fatalf("ebpf mode with a missing interface: %v", err)
	}
}

// Auto mode with no kernel limit loads no eBPF and attaches nothing (the
// missing interface would be the reason otherwise): the userspace limiter
// runs so that Block works, /ratelimit says why, and nothing is logged as
// a fallback.
func TestRateLimitAutoWithoutLimitsLoadsNoEBPF(t *testing.T) {
	r, c := startLimitedAgent(t, map[string]string{
		"WARDEN_RATE_LIMIT_MODE": "auto",
		"WARDEN_BPF_INTERFACE":   "wd-missing0",
	})
	var v ratelimit.Status
	getJSON(t, r.admin(t)+"/ratelimit", &v)
	if v.Mode != "userspace" || v.RequestedMode != "auto" || v.FallbackReason != ratelimit.ErrNothingToEnforce.Error() ||
		v.KernelFeatures == nil || len(v.KernelFeatures) != 0 {
		t.Fatalf("auto mode without limits: %+v", v)
	}
	line := r.logLine(t, "ratelimit_started")
	if line["mode"] != "userspace" || line["fallback_reason"] != ratelimit.ErrNothingToEnforce.Error() {
		t.Fatalf("ratelimit_started line %v", line)
	}
	out, _ := r.log.snapshot()
	if strings.Contains(out, `"ratelimit_fallback"`) {
		t.Fatalf("a fallback warning without a fallback:\n%s", out)
	}
	if err := r.agent.Block(netip.MustParseAddr("127.0.0.1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := call(c, r.inbound(t)); err == nil {
		t.Fatal("a blocked source's new connection was served")
	}
}
