//go:build linux

package ratelimit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/bpf/bpftest"
)

// capsChildEnv makes this test binary startChild, the child of
// TestStartDropsCapabilities, for the case it names.
const capsChildEnv = "WARDEN_RATELIMIT_TEST_CAPS"

func TestMain(m *testing.M) {
	if c := os.Getenv(capsChildEnv); c != "" {
		os.Exit(startChild(c))
	}
	os.Exit(m.Run())
}

// childSettings are the settings of each case of startChild.
var childSettings = map[string]Settings{
	"attached": {Mode: config.RateLimitAuto, Limits: Limits{ConnRate: 100}, Interface: "lo"},
	"nothing":  {Mode: config.RateLimitAuto, Interface: "lo"},
	"failed":   {Mode: config.RateLimitAuto, Limits: Limits{ConnRate: 100}, Interface: "wd-missing0"},
}

// childReport is what startChild says once Start returned.
type childReport struct {
	Mode, Fallback, CapabilitiesKept, StatusError string
	Capabilities                                  string // "none", or what a thread still holds
	Block                                         string // Block's and Unblock's error
}

// TestStartDropsCapabilities runs Start in a child that holds only
// CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, permitted (warden's lot in a
// pod), built without cgo as warden is (syscall.AllThreadsSyscall refuses
// to run in a cgo binary, which -race makes this one), in a network
// namespace of its own. Whether Start attached the program, had nothing to
// enforce or fell back, afterwards no thread holds any capability, Block
// works, and the kernel's maps still answer /ratelimit.
func TestStartDropsCapabilities(t *testing.T) {
	bpftest.RequirePrivileged(t)
	bin := bpftest.NoCgoTestBinary(t)
	for _, c := range []string{"attached", "nothing", "failed"} {
		t.Run(c, func(t *testing.T) {
			ns := bpftest.NewNetns(t)
			cmd := ns.Command(bin, "-test.run=^$")
			cmd.Env = append(os.Environ(), capsChildEnv+"="+c)
			child := bpftest.StartChild(t, cmd)
			var rep childReport
			if l := child.Next(); json.Unmarshal([]byte(l), &rep) != nil {
				t.Fatalf("child: %q; stderr: %s", l, child.Stderr())
			}
			t.Logf("%+v", rep)
			if rep.Capabilities != "none" || rep.CapabilitiesKept != "" {
				t.Errorf("after Start: capabilities %s (kept: %q)", rep.Capabilities, rep.CapabilitiesKept)
			}
			if rep.Block != "" || rep.StatusError != "" {
				t.Errorf("without capabilities: block %q, /ratelimit error %q", rep.Block, rep.StatusError)
			}
			wantMode, wantFallback := config.RateLimitUserspace, ""
			switch c {
			case "attached":
				wantMode = config.RateLimitEBPF
			case "nothing":
				wantFallback = ErrNothingToEnforce.Error()
			case "failed":
				wantFallback = "wd-missing0"
			}
			if rep.Mode != wantMode || !strings.Contains(rep.Fallback, wantFallback) || (wantFallback == "") != (rep.Fallback == "") {
				t.Errorf("mode %q fallback %q, want %q and %q", rep.Mode, rep.Fallback, wantMode, wantFallback)
			}
			if got := xdpOnLo(t, ns); got != (c == "attached") {
				t.Errorf("XDP program on lo: %v", got)
			}
			child.Send("close")
			if l := child.Next(); l != "closed" {
				t.Fatalf("child: %q; stderr: %s", l, child.Stderr())
			}
			if xdpOnLo(t, ns) {
				t.Error("the program is still attached after Close")
			}
			if err := child.Wait(); err != nil {
				t.Fatalf("child: %v: %s", err, child.Stderr())
			}
		})
	}
}

func xdpOnLo(t *testing.T, ns *bpftest.Netns) bool {
	t.Helper()
	out, err := ns.Command("ip", "-j", "-d", "link", "show", "dev", "lo").Output()
	if err != nil {
		t.Fatalf("ip link show lo: %v", err)
	}
	var links []struct {
		XDP json.RawMessage `json:"xdp"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip link show lo: %v: %s", err, out)
	}
	return links[0].XDP != nil
}

// loaderCapMask is CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON as a
// /proc/<pid>/status mask.
var loaderCapMask uint64 = 1<<unix.CAP_BPF | 1<<unix.CAP_NET_ADMIN | 1<<unix.CAP_PERFMON

func startChild(c string) int {
	s, ok := childSettings[c]
	if !ok {
		fmt.Fprintf(os.Stderr, "no case %q\n", c)
		return 1
	}
	s.Port, s.Attach, s.MaxSources, s.MaxConns = 15443, "xdp", 256, 256
	// Warden's lot in a pod: the three, permitted only, on every thread.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{{Permitted: uint32(loaderCapMask)}, {Permitted: uint32(loaderCapMask >> 32)}}
	if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
		fmt.Fprintln(os.Stderr, "narrow the capabilities:", errno)
		return 1
	}
	r, err := Start(s)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rep := childReport{Mode: r.Status().Mode, Capabilities: "none"}
	if r.Fallback != nil {
		rep.Fallback = r.Fallback.Error()
	}
	if r.CapabilitiesKept != nil {
		rep.CapabilitiesKept = r.CapabilitiesKept.Error()
	}
	if err := bpftest.HeldCapabilities("self"); err != nil {
		rep.Capabilities = err.Error()
	}
	ip := netip.MustParseAddr("192.0.2.7")
	if err := errors.Join(r.Block(ip, time.Minute), r.Unblock(ip), r.Block(ip, time.Minute)); err != nil {
		rep.Block = err.Error()
	}
	st := r.Status()
	rep.StatusError = st.Error
	if len(st.Blocklist) != 1 || st.Blocklist[0].IP != ip.String() {
		rep.StatusError += fmt.Sprintf(" blocklist %v", st.Blocklist)
	}
	b, _ := json.Marshal(rep)
	fmt.Println(string(b))
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := r.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("closed")
	return 0
}
