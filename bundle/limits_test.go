package bundle

import (
	"context"
	"errors"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

func TestNetworkBuiltinsNeedAllowNetwork(t *testing.T) {
	tests := []struct {
		name    string
		rego    string
		allow   bool   // Options.AllowNetwork
		wantErr string // "" when the bundle loads
	}{
		{
			// opa build formats the module: the rule is on line 3.
			name:    "http.send is refused",
			rego:    authz(`allow if http.send({"method": "GET", "url": "http://127.0.0.1:1/"}).status_code == 200`),
			wantErr: `authz.rego:3: http.send does network I/O, which policies may do only when WARDEN_POLICY_ALLOW_NETWORK is true`,
		},
		{
			name:    "http.send in a rule the decision never reaches is refused",
			rego:    authz(`allow := true`, `unused := http.send({"method": "GET", "url": "http://127.0.0.1:1/"})`),
			wantErr: "http.send does network I/O",
		},
		{
			name:    "net.lookup_ip_addr is refused",
			rego:    authz(`allow if "10.0.0.1" in net.lookup_ip_addr("example.org")`),
			wantErr: "net.lookup_ip_addr does network I/O",
		},
		{
			name: "net.cidr_contains is pure and allowed",
			rego: authz(`allow if net.cidr_contains("10.0.0.0/8", input.sender)`),
		},
		{
			name:  "http.send loads with AllowNetwork",
			rego:  authz(`allow := true`, `unused := http.send({"method": "GET", "url": "http://127.0.0.1:1/"})`),
			allow: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "b.tar.gz")
			writeTarball(t, path, build(t, "net", policy(tt.rego), nil))
			e := newEngine(t, Options{Source: path, AllowNetwork: tt.allow})
			if tt.wantErr == "" {
				e.mustLoad(t)
				return
			}
			e.mustReject(t, tt.wantErr)
			var le *LoadError
			if err := e.Load(context.Background()); !errors.As(err, &le) || le.Stage != "compile" {
				t.Fatalf("Load: %v; want a compile LoadError", err)
			}
		})
	}
}

// A policy that would run for minutes is stopped at the deadline: the
// request is denied in about EvalTimeout, and the engine goes on deciding.
func TestEvalTimeoutDeniesASlowPolicy(t *testing.T) {
	const timeout = 100 * time.Millisecond
	e := policyEngine(t, authz(
		`default allow := false`,
		`allow if input.method == "GET"`,
		// 10⁹ iterations unless the method is GET.
		`allow if {
	input.method == "POST"
	r := numbers.range(1, 1000)
	some a in r
	some b in r
	some c in r
	a + b + c < 0
}`), Options{EvalTimeout: timeout, CacheSize: 100, CacheTTL: time.Minute})

	for range 2 { // the second is not served from the cache
		start := time.Now()
		d, err := e.Decide(context.Background(), request("POST", "/"))
		took := time.Since(start)
		if !errors.Is(err, ErrEvalTimeout) || d.Allow || d.Cached || d.Reason != "" {
			t.Fatalf("Decide: %+v, %v; want a denial with ErrEvalTimeout", d, err)
		}
		if !strings.Contains(err.Error(), "after 100ms") {
			t.Fatalf("error %q does not say how long it waited", err)
		}
		t.Logf("stopped after %v", took)
		// Generous above: two cores shared with other work, and -race.
		if took < timeout || took > timeout+2*time.Second {
			t.Fatalf("the slow policy was stopped after %v; want about %v", took, timeout)
		}
	}
	if d := decide(t, e.Engine, request("GET", "/")); !d.Allow {
		t.Fatalf("after a timeout: %+v", d)
	}
}

func TestEvalTimeoutMasksTheWholeInput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	writeTarball(t, path, build(t, "slow-mask", withMask(authz(`allow := true`), maskPolicy(`mask contains "/input/headers" if {
	r := numbers.range(1, 1000)
	some a in r
	some b in r
	some c in r
	a + b + c < 0
}`)), nil))
	e := newEngine(t, Options{Source: path, EvalTimeout: 50 * time.Millisecond})
	e.mustLoad(t)
	if d := decide(t, e.Engine, request("GET", "/")); !d.Allow || len(d.Mask) != 1 || d.Mask[0] != "/input" {
		t.Fatalf("a mask past the deadline: %+v", d)
	}
}

// The deadline is a timer, not a goroutine per evaluation: OPA starts one
// to watch ctx unless it is given its own Cancel.
func TestEvaluationsStartNoGoroutine(t *testing.T) {
	e := policyEngine(t, benchPolicy, Options{EvalTimeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := benchInput()
	created := func() uint64 {
		s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	if _, err := e.Decide(ctx, in); err != nil {
		t.Fatal(err)
	}
	const n = 200
	before := created()
	for range n {
		if d, err := e.Decide(ctx, in); err != nil || d.Cached {
			t.Fatalf("%+v, %v", d, err)
		}
	}
	// A few may be the runtime's or other tests' leftovers; one per
	// evaluation would be n.
	if got := created() - before; got > n/10 {
		t.Fatalf("%d goroutines started for %d evaluations", got, n)
	}
}
