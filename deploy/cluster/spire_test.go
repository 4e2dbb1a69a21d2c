package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/deploy/kubetest"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// SPIRE's trust domain in the cluster, and where the node's agent serves
// the Workload API: the directory the injected pod mounts with
// warden.io/spiffe-socket-source: hostpath (deploy/inject/sidecar.yaml).
const (
	TrustDomain    = "warden.test"
	AgentSocketDir = "/run/spire/agent-sockets"
	agentSocket    = AgentSocketDir + "/spire-agent.sock"
	spireNode      = "spiffe://warden.test/node"
)

// SPIRE is a SPIRE server and an agent on the node. Workloads are told
// apart by the unix attestor's uid: an injected warden runs as 1337.
type SPIRE struct {
	dir, serverBin, serverSock string
	// AgentAddr is the Workload API address, for SPIFFE_ENDPOINT_SOCKET.
	AgentAddr string
}

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
	s := &SPIRE{dir: dir, serverBin: serverBin, serverSock: filepath.Join(dir, "server.sock"), AgentAddr: "unix://" + agentSocket}
	port := testenv.FreePort(t)
	write(t, filepath.Join(dir, "server.conf"), fmt.Sprintf(`
server {
    bind_address = "127.0.0.1"
    bind_port = "%d"
    socket_path = %q
    trust_domain = %q
    data_dir = %q
    log_level = "INFO"
    default_x509_svid_ttl = "1h"
    ca_ttl = "24h"
    experimental {
        cache_reload_interval = "1s"
    }
}
plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = %q
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
}
`, port, s.serverSock, TrustDomain, filepath.Join(dir, "server"), filepath.Join(dir, "server", "datastore.sqlite3")))
	testenv.StartProcess(t, "spire-server", daemon(serverBin, "run", "-config", filepath.Join(dir, "server.conf")))
	testenv.Poll(t, "spire-server healthy", 90*time.Second, func() bool {
		return exec.Command(serverBin, "healthcheck", "-socketPath", s.serverSock).Run() == nil
	})
	out := s.server(t, "token", "generate", "-spiffeID", spireNode, "-ttl", "600")
	token, ok := strings.CutPrefix(strings.TrimSpace(out), "Token: ")
	if !ok {
		t.Fatalf("cluster: spire-server token generate: %q", out)
	}
	write(t, filepath.Join(dir, "bundle.pem"), s.server(t, "bundle", "show"))
	write(t, filepath.Join(dir, "agent.conf"), fmt.Sprintf(`
agent {
    data_dir = %q
    log_level = "INFO"
    server_address = "127.0.0.1"
    server_port = "%d"
    socket_path = %q
    trust_bundle_path = %q
    trust_domain = %q
    experimental {
        sync_interval = "1s"
    }
}
plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
`, filepath.Join(dir, "agent"), port, agentSocket, filepath.Join(dir, "bundle.pem"), TrustDomain))
	testenv.StartProcess(t, "spire-agent", daemon(agentBin, "run", "-config", filepath.Join(dir, "agent.conf"), "-joinToken", token))
	testenv.Poll(t, "spire-agent healthy", 90*time.Second, func() bool {
		return exec.Command(agentBin, "healthcheck", "-socketPath", agentSocket).Run() == nil
	})
	return s
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

func (s *SPIRE) server(t testing.TB, args ...string) string {
	t.Helper()
	args = append(args[:len(args):len(args)], "-socketPath", s.serverSock)
	out, err := exec.Command(s.serverBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("cluster: spire-server %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Entry registers id for the workloads that run as uid.
func (s *SPIRE) Entry(t testing.TB, id string, uid int) {
	t.Helper()
	s.server(t, "entry", "create", "-parentID", spireNode, "-spiffeID", id, "-selector", fmt.Sprintf("unix:uid:%d", uid))
}
