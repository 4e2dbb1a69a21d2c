package bpf

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/warden-sidecar/warden/bpf/bpftest"
	"github.com/warden-sidecar/warden/internal/cgroup2"
)

// BenchmarkLoopbackRoundTrip: one request and one response of the same
// size between two sockets of this process on loopback, as warden and the
// app exchange them, over TCP and with the fast path. cpu-ns/op is the
// process's user+system CPU per round trip (both ends are this process).
//
//	WARDEN_REQUIRE_PRIVILEGED_TESTS=1 go test -run '^$' -bench LoopbackRoundTrip -count 5 ./bpf/
func BenchmarkLoopbackRoundTrip(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 16 << 10} {
		for _, mode := range []string{"tcp", "sockmap"} {
			b.Run(fmt.Sprintf("%s/%dB", mode, size), func(b *testing.B) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				if mode == "sockmap" {
					attachHere(b, uint16(ln.Addr().(*net.TCPAddr).Port))
				}
				cli, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer cli.Close()
				srv, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Close()
				go func() {
					buf := make([]byte, size)
					for {
						if _, err := io.ReadFull(srv, buf); err != nil {
							return
						}
						if _, err := srv.Write(buf); err != nil {
							return
						}
					}
				}()
				msg, buf := make([]byte, size), make([]byte, size)
				b.SetBytes(int64(2 * size))
				c0 := cpuNanos()
				b.ResetTimer()
				for b.Loop() {
					if _, err := cli.Write(msg); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(cli, buf); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(cpuNanos()-c0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// attachHere loads the fast path for port, attaches it to a new cgroup
// and moves this process into it until b ends.
func attachHere(b *testing.B, port uint16) {
	b.Helper()
	cg := bpftest.NewCgroup(b)
	own, err := cgroup2.Own()
	if err != nil && own == "" {
		b.Fatal(err)
	}
	f, err := LoadFastPath(FastPathConfig{Ports: []uint16{port}, MaxSockets: 64})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Close() })
	if err := f.AttachCgroup(cg.Path); err != nil {
		b.Fatal(err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(cg.Path, "cgroup.procs"), pid, 0); err != nil {
		b.Fatal(err)
	}
	// Back before NewCgroup's cleanup removes the cgroup (cleanups run
	// last registered first).
	b.Cleanup(func() { _ = os.WriteFile(filepath.Join(own, "cgroup.procs"), pid, 0) })
}

func cpuNanos() int64 {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
