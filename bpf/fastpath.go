// The platforms the generated little-endian object is built for.
//go:build (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm) && linux

package bpf

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// FastPath owns the sockmap programs (sockmap.c), their maps, the sk_msg
// program's attachment to the sockhash and at most one cgroup attachment.
// Its methods are safe for concurrent use.
type FastPath struct {
	objs sockmapObjects

	mu       sync.Mutex
	closed   bool
	verdict  bool // warden_sk_msg is attached to socks
	link     link.Link
	cgroup   string
	maxSocks uint32
}

// LoadFastPath loads the programs and maps and attaches the sk_msg program
// to the sockhash; nothing is attached to a cgroup yet, so no socket is
// touched.
func LoadFastPath(cfg FastPathConfig) (*FastPath, error) {
	cfg, err := cfg.normalized()
	if err != nil {
		return nil, err
	}
	spec, err := loadSockmap()
	if err != nil {
		return nil, fmt.Errorf("bpf: %w", err)
	}
	var ports [1024]uint64
	for _, p := range cfg.Ports {
		ports[p/64] |= 1 << (p % 64)
	}
	if err := spec.Variables["app_ports"].Set(ports); err != nil {
		return nil, fmt.Errorf("bpf: fast path: set the app's ports: %w", err)
	}
	spec.Maps["socks"].MaxEntries = cfg.MaxSockets

	f := &FastPath{maxSocks: cfg.MaxSockets}
	if err := spec.LoadAndAssign(&f.objs, nil); err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("bpf: fast path: load (needs root, or CAP_BPF and CAP_NET_ADMIN): %w", err)
		}
		return nil, fmt.Errorf("bpf: fast path: load: %w", err)
	}
	// The verdict program hangs off the map, not a cgroup: it runs for the
	// sockets in socks only, and goes with the map when the last file
	// descriptor of the map is closed (the process exits).
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  f.objs.Socks.FD(),
		Program: f.objs.WardenSkMsg,
		Attach:  ebpf.AttachSkMsgVerdict,
	}); err != nil {
		f.objs.Close()
		return nil, fmt.Errorf("bpf: fast path: attach the sk_msg program to the sockhash: %w", err)
	}
	f.verdict = true
	return f, nil
}

// AttachCgroup attaches the sock_ops program to the cgroup v2 directory
// path: connections that processes in it or its descendants establish
// from now on are candidates; connections established before are never
// accelerated. The attachment is a BPF link held by this process: when the
// process exits, however it exits, the kernel detaches the program.
func (f *FastPath) AttachCgroup(path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	if f.link != nil {
		return fmt.Errorf("bpf: fast path: already attached to cgroup %s", f.cgroup)
	}
	if err := isCgroup2(path); err != nil {
		return err
	}
	lk, err := link.AttachCgroup(link.CgroupOptions{
		Path:    path,
		Attach:  ebpf.AttachCGroupSockOps,
		Program: f.objs.WardenSockops,
	})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("bpf: fast path: attach sock_ops to cgroup %s (needs CAP_NET_ADMIN and CAP_BPF): %w", path, err)
		}
		return fmt.Errorf("bpf: fast path: attach sock_ops to cgroup %s: %w", path, err)
	}
	f.link, f.cgroup = lk, path
	return nil
}

// isCgroup2 checks that path is a directory of a cgroup v2 file system.
func isCgroup2(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("bpf: fast path: cgroup %s: %w", path, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("bpf: fast path: %s is not in a cgroup v2 file system", path)
	}
	return nil
}

// Stats reads the counters, summed over CPUs, and counts the sockets in
// the sockhash.
func (f *FastPath) Stats() (FastPathStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return FastPathStats{}, ErrClosed
	}
	var perCPU []sockmapFastpathCounts
	if err := f.objs.Counters.Lookup(uint32(0), &perCPU); err != nil {
		return FastPathStats{}, fmt.Errorf("bpf: fast path: read counters: %w", err)
	}
	var s FastPathStats
	for _, v := range perCPU {
		s.MessagesRedirected += v.MsgsRedirected
		s.BytesRedirected += v.BytesRedirected
		s.Fallbacks += v.Fallbacks
		s.SocketsAdded += v.SocksAdded
		s.AddFailures += v.AddFailures
	}
	// A walk of the keys: a sockhash has no count, and sockets leave it
	// on their own when they close. Bounded by the map's size, since the
	// walk restarts from the first key when the key it stands on goes.
	var key, next sockmapSockKey
	var cur any // nil: the first key
	for n := uint32(0); n <= f.maxSocks; n++ {
		err := f.objs.Socks.NextKey(cur, &next)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return FastPathStats{}, fmt.Errorf("bpf: fast path: count sockets: %w", err)
		}
		s.Sockets++
		key = next
		cur = &key
	}
	return s, nil
}

// Close detaches the sock_ops program from the cgroup, so no socket is
// added any more, and closes this process's handles. The sockets already
// in the sockhash stay there, and keep being redirected, until they close:
// each holds the sk_msg program, which holds the map. Taking them out while
// bytes are in flight would lose the bytes redirected to a socket and not
// yet read by it (the kernel frees its redirect queue with it:
// TestFastPathCloseDuringTransfer), so the programs and the map go when the
// last accelerated connection closes. It is safe to call more than once.
func (f *FastPath) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	var errs []error
	if f.link != nil {
		if err := f.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("bpf: fast path: detach from cgroup %s: %w", f.cgroup, err))
		}
		f.link = nil
	}
	if f.verdict {
		if err := link.RawDetachProgram(link.RawDetachProgramOptions{
			Target:  f.objs.Socks.FD(),
			Program: f.objs.WardenSkMsg,
			Attach:  ebpf.AttachSkMsgVerdict,
		}); err != nil {
			errs = append(errs, fmt.Errorf("bpf: fast path: detach the sk_msg program: %w", err))
		}
		f.verdict = false
	}
	if err := f.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bpf: fast path: close: %w", err))
	}
	return errors.Join(errs...)
}

// ProgramIDs are the kernel's IDs of the two programs, for tests and
// tools that check nothing is left once Close returned and the accelerated
// connections closed.
func (f *FastPath) ProgramIDs() (sockops, skMsg uint32, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, 0, ErrClosed
	}
	a, err := f.objs.WardenSockops.Info()
	if err != nil {
		return 0, 0, err
	}
	b, err := f.objs.WardenSkMsg.Info()
	if err != nil {
		return 0, 0, err
	}
	ida, _ := a.ID()
	idb, _ := b.ID()
	return uint32(ida), uint32(idb), nil
}
