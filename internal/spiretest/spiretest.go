// Package spiretest runs a real SPIRE server and agent (the binaries `make
// spire` builds) on loopback for end-to-end tests: the server with a
// sqlite datastore and join-token node attestation, one agent attested
// with a token, and registration entries the test creates with the
// server's CLI. The cmd/warden SPIRE tests and the deploy/cluster node
// share it.
package spiretest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/internal/testenv"
)

// Options say how to run SPIRE.
type Options struct {
	ServerBin, AgentBin string
	TrustDomain         string
	// Dir holds the configuration, data and sockets; short, since unix
	// socket paths must stay under about 100 bytes.
	Dir string
	// AgentSocket is where the agent serves the Workload API; empty:
	// Dir/agent.sock.
	AgentSocket string
	// X509SVIDTTL is the workloads' X.509-SVID lifetime ("1m" makes the
	// agent rotate them about every half-minute).
	X509SVIDTTL string
	// UnixAttestor is the plugin_data body of the agent's unix workload
	// attestor: empty for uid and gid selectors only,
	// "discover_workload_path = true" for path selectors.
	UnixAttestor string
	// Command makes the daemons' commands; nil: exec.Command.
	Command func(name string, args ...string) *exec.Cmd
}

// SPIRE is a running server and agent.
type SPIRE struct {
	ServerSock, AgentSock string
	// NodeID is the agent's SPIFFE ID, the parent of every entry.
	NodeID    string
	Agent     *testenv.Process
	serverBin string
}

// AgentAddr is the Workload API address, for SPIFFE_ENDPOINT_SOCKET.
func (s *SPIRE) AgentAddr() string { return "unix://" + s.AgentSock }

// Start runs the server and the agent until t ends, and returns once both
// answer their health checks. The server reloads entries and the agent
// syncs every second, so new entries reach workloads quickly.
func Start(t testing.TB, o Options) *SPIRE {
	t.Helper()
	if o.AgentSocket == "" {
		o.AgentSocket = filepath.Join(o.Dir, "agent.sock")
	}
	if o.Command == nil {
		o.Command = exec.Command
	}
	s := &SPIRE{ServerSock: filepath.Join(o.Dir, "server.sock"), AgentSock: o.AgentSocket,
		NodeID: "spiffe://" + o.TrustDomain + "/node", serverBin: o.ServerBin}
	port := testenv.FreePort(t)
	write(t, filepath.Join(o.Dir, "server.conf"), fmt.Sprintf(`
server {
    bind_address = "127.0.0.1"
    bind_port = "%d"
    socket_path = %q
    trust_domain = %q
    data_dir = %q
    log_level = "INFO"
    default_x509_svid_ttl = %q
    agent_ttl = "1h"
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
`, port, s.ServerSock, o.TrustDomain, filepath.Join(o.Dir, "server"), o.X509SVIDTTL, filepath.Join(o.Dir, "server", "datastore.sqlite3")))
	testenv.StartProcess(t, "spire-server", o.Command(o.ServerBin, "run", "-config", filepath.Join(o.Dir, "server.conf")))
	testenv.Poll(t, "spire-server healthy", 90*time.Second, func() bool {
		return exec.Command(o.ServerBin, "healthcheck", "-socketPath", s.ServerSock).Run() == nil
	})

	out := s.Server(t, "token", "generate", "-spiffeID", s.NodeID, "-ttl", "600")
	token, ok := strings.CutPrefix(strings.TrimSpace(out), "Token: ")
	if !ok {
		t.Fatalf("spiretest: spire-server token generate: %q", out)
	}
	write(t, filepath.Join(o.Dir, "bundle.pem"), s.Server(t, "bundle", "show"))
	write(t, filepath.Join(o.Dir, "agent.conf"), fmt.Sprintf(`
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
        plugin_data {
            %s
        }
    }
}
`, filepath.Join(o.Dir, "agent"), port, s.AgentSock, filepath.Join(o.Dir, "bundle.pem"), o.TrustDomain, o.UnixAttestor))
	s.Agent = testenv.StartProcess(t, "spire-agent", o.Command(o.AgentBin, "run", "-config", filepath.Join(o.Dir, "agent.conf"), "-joinToken", token))
	testenv.Poll(t, "spire-agent healthy", 90*time.Second, func() bool {
		return exec.Command(o.AgentBin, "healthcheck", "-socketPath", s.AgentSock).Run() == nil
	})
	return s
}

// Server runs a spire-server CLI command against the running server and
// returns its output.
func (s *SPIRE) Server(t testing.TB, args ...string) string {
	t.Helper()
	args = append(args[:len(args):len(args)], "-socketPath", s.ServerSock)
	out, err := exec.Command(s.serverBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("spiretest: spire-server %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Entry registers id for the workloads the selector matches
// ("unix:uid:1337", "unix:path:/usr/bin/warden").
func (s *SPIRE) Entry(t testing.TB, id, selector string) {
	t.Helper()
	s.Server(t, "entry", "create", "-parentID", s.NodeID, "-spiffeID", id, "-selector", selector)
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
