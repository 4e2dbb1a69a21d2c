package ratelimit

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/config"
)

// In auto mode the eBPF program is loaded only for a kernel feature: with
// none, Start does not even try (the missing interface would be the
// fallback reason otherwise), and the userspace limiter serves Block. In
// ebpf mode it is loaded regardless. Unprivileged, a try fails at Load
// instead of at Attach: the test tells tries apart either way.
func TestAutoLoadsEBPFOnlyForAKernelFeature(t *testing.T) {
	const missing = "wd-missing0"
	tests := []struct {
		name     string
		mode     string
		limits   Limits
		features []Feature
		want     []Feature
		tries    bool // Start tries to load the program
	}{
		{"auto without limits loads nothing", config.RateLimitAuto, Limits{}, nil, []Feature{}, false},
		{"auto with bursts but no rates loads nothing", config.RateLimitAuto, Limits{ConnBurst: 5, PacketBurst: 5}, nil, []Feature{}, false},
		{"auto with a connection rate loads", config.RateLimitAuto, Limits{ConnRate: 10}, nil, []Feature{FeatureConnRate}, true},
		{"auto with a packet rate loads", config.RateLimitAuto, Limits{PacketRate: 10}, nil, []Feature{FeaturePacketRate}, true},
		{"auto with both rates loads", config.RateLimitAuto, Limits{ConnRate: 1, PacketRate: 1}, nil, []Feature{FeatureConnRate, FeaturePacketRate}, true},
		{"auto with another kernel feature loads", config.RateLimitAuto, Limits{}, []Feature{"blocklist", "blocklist"}, []Feature{"blocklist"}, true},
		{"ebpf without limits loads", config.RateLimitEBPF, Limits{}, nil, []Feature{}, true},
		{"userspace never loads", config.RateLimitUserspace, Limits{ConnRate: 10}, nil, []Feature{FeatureConnRate}, false},
		{"off never loads", config.RateLimitOff, Limits{ConnRate: 10}, nil, []Feature{FeatureConnRate}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Start(Settings{Mode: tt.mode, Port: 15443, Interface: missing, Attach: "xdp",
				Limits: tt.limits, Features: tt.features, MaxSources: 256, MaxConns: 256})
			if tt.mode == config.RateLimitEBPF {
				if err == nil {
					r.Close()
					t.Fatal("ebpf mode started without an interface to attach to")
				}
				if errors.Is(err, ErrNothingToEnforce) {
					t.Fatalf("ebpf mode did not try: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			st := r.Status()
			if !reflect.DeepEqual(st.KernelFeatures, tt.want) {
				t.Errorf("kernel features %v, want %v", st.KernelFeatures, tt.want)
			}
			switch {
			case tt.mode != config.RateLimitAuto:
				if r.Fallback != nil || st.FallbackReason != "" {
					t.Errorf("mode %s: fallback %v", tt.mode, r.Fallback)
				}
			case tt.tries:
				if r.Fallback == nil || errors.Is(r.Fallback, ErrNothingToEnforce) {
					t.Errorf("fallback %v, want the error of a load or attach", r.Fallback)
				}
			default:
				if !errors.Is(r.Fallback, ErrNothingToEnforce) || st.FallbackReason != ErrNothingToEnforce.Error() {
					t.Errorf("fallback %v (%q), want ErrNothingToEnforce", r.Fallback, st.FallbackReason)
				}
				if strings.Contains(st.FallbackReason, missing) {
					t.Errorf("fallback reason %q: an attach was tried", st.FallbackReason)
				}
			}
			if tt.mode == config.RateLimitAuto {
				if st.Mode != config.RateLimitUserspace || r.Userspace == nil {
					t.Fatalf("mode %q, userspace %v", st.Mode, r.Userspace)
				}
				ip := netip.MustParseAddr("192.0.2.1")
				if err := r.Block(ip, time.Minute); err != nil || r.Userspace.AllowConn(ip) {
					t.Errorf("Block after the fallback: %v", err)
				}
			}
		})
	}
}

// /ratelimit keeps its keys and says what the settings ask of the kernel.
func TestStatusSaysWhyNoEBPF(t *testing.T) {
	r, err := Start(Settings{Mode: config.RateLimitAuto, Port: 15443})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := json.Marshal(r.Status())
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"mode", "requested_mode", "port", "limits", "counters", "top_sources", "blocklist"} {
		if _, ok := v[key]; !ok {
			t.Errorf("no %q in %s", key, b)
		}
	}
	if v["mode"] != "userspace" || v["requested_mode"] != "auto" || v["fallback_reason"] != ErrNothingToEnforce.Error() {
		t.Errorf("/ratelimit %s", b)
	}
	if fs, ok := v["kernel_features"].([]any); !ok || len(fs) != 0 {
		t.Errorf("kernel_features %v, want []", v["kernel_features"])
	}
}
