package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/warden-sidecar/warden/deploy/kubetest"
	"github.com/warden-sidecar/warden/internal/spiretest"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// SPIRE's trust domain in the cluster, and where the node's agent serves
// the Workload API: the directory the injected pod mounts with
// warden.io/spiffe-socket-source: hostpath (deploy/inject/sidecar.yaml).
const (
	TrustDomain    = "warden.test"
	AgentSocketDir = "/run/spire/agent-sockets"
	agentSocket    = AgentSocketDir + "/spire-agent.sock"
)

// SPIRE is a SPIRE server and an agent on the node (internal/spiretest).
// Workloads are told apart by the unix attestor's uid: an injected warden
// runs as 1337.
type SPIRE struct{ *spiretest.SPIRE }

// StartSPIRE runs a SPIRE server on loopback and an agent whose socket is
// AgentSocketDir's, until t ends. The directory must not exist (a SPIRE
// agent of the machine's own would be there) unless an earlier run of this
// test left it; it is removed afterwards.
func StartSPIRE(t testing.TB) *SPIRE {
	t.Helper()
	serverBin, agentBin := spireBins(t)
	// The parent, when this makes it, holds a marker: a later run removes
	// it should this one die without its cleanup (a -timeout panic).
	parent := filepath.Dir(AgentSocketDir)
	marker := filepath.Join(parent, ".warden-cluster-test")
	if _, err := os.Stat(AgentSocketDir); err == nil {
		if exec.Command(agentBin, "healthcheck", "-socketPath", agentSocket).Run() == nil {
			t.Fatalf("cluster: a SPIRE agent serves %s already", agentSocket)
		}
		if _, err := os.Stat(marker); err != nil {
			t.Fatalf("cluster: %s exists (a SPIRE agent's of this machine?); remove it to run the test", AgentSocketDir)
		}
		if err := os.RemoveAll(parent); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(parent); os.IsNotExist(err) {
		if err := os.MkdirAll(parent, 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, marker, "")
		t.Cleanup(func() { os.RemoveAll(parent) })
	}
	if err := os.Mkdir(AgentSocketDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(AgentSocketDir) })
	dir, err := os.MkdirTemp("", "wspire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &SPIRE{spiretest.Start(t, spiretest.Options{ServerBin: serverBin, AgentBin: agentBin, TrustDomain: TrustDomain,
		Dir: dir, AgentSocket: agentSocket, X509SVIDTTL: "1h", Command: daemon})}
}

// spireBins finds spire-server and spire-agent in WARDEN_SPIRE_BIN_DIR, else
// the tools directory; without them t ends by testenv.Missing.
func spireBins(t testing.TB) (server, agent string) {
	t.Helper()
	binDir := os.Getenv("WARDEN_SPIRE_BIN_DIR")
	if binDir == "" {
		binDir = kubetest.BinDir()
	}
	const spireInstall = "run `make spire`, or set WARDEN_SPIRE_BIN_DIR"
	return testenv.NeedTool(t, filepath.Join(binDir, "spire-server"), spireInstall),
		testenv.NeedTool(t, filepath.Join(binDir, "spire-agent"), spireInstall)
}

// Entry registers id for the workloads that run as uid.
func (s *SPIRE) Entry(t testing.TB, id string, uid int) {
	t.Helper()
	s.SPIRE.Entry(t, id, fmt.Sprintf("unix:uid:%d", uid))
}
