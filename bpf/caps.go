// The platforms the generated little-endian object is built for.
//go:build (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm) && linux

package bpf

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// loaderCaps are the capabilities loading and attaching need.
var loaderCaps = [...]int{unix.CAP_BPF, unix.CAP_NET_ADMIN, unix.CAP_PERFMON}

// ErrCapabilitiesNeeded is returned by Limiter.DropCapabilities where the
// kernel checks CAP_BPF on every use of a map, not only when one is
// created: Linux before 5.19 with kernel.unprivileged_bpf_disabled set.
// The capabilities are kept there, or Block and the counters would fail.
var ErrCapabilitiesNeeded = errors.New("bpf: this kernel checks CAP_BPF on every map access (Linux before 5.19 with kernel.unprivileged_bpf_disabled set): CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON are kept")

// RaiseCapabilities makes CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON effective
// on every thread of the process where they are permitted but not
// effective. CAP_PERFMON is not optional: without it the verifier applies
// its Spectre v1 rules for unprivileged loaders and refuses the
// variable-offset packet pointer arithmetic of header parsing (data + ihl*4).
// That is
// how a non-root warden gets them in a pod: Kubernetes can't hand added
// capabilities to a non-root process, so the image gives the binary
// permitted-only file capabilities (cap_bpf,cap_net_admin,cap_perfmon+p; with the
// effective bit, exec would fail wherever they are not granted), and warden
// raises them itself just before loading. Root, which has them effective,
// and a process without them are left as they are: Load then reports what
// is missing. Capabilities are per thread and Go runs on many, so the raise
// goes to all of them (syscall.AllThreadsSyscall), which the Go runtime
// allows only in binaries built without cgo.
func RaiseCapabilities() error {
	hdr, data, err := capget()
	if err != nil {
		return err
	}
	raise := false
	for _, c := range loaderCaps {
		d, bit := &data[c/32], uint32(1)<<(c%32)
		if d.Permitted&bit != 0 && d.Effective&bit == 0 {
			d.Effective |= bit
			raise = true
		}
	}
	if !raise {
		return nil
	}
	switch errno := capsetAllThreads(&hdr, &data); {
	case errno == syscall.ENOTSUP:
		return errors.New("bpf: CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON are permitted but not effective, and a binary built with cgo can't raise them on every thread: build warden with CGO_ENABLED=0")
	case errno != 0:
		return fmt.Errorf("bpf: raise CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: %w", errno)
	}
	return nil
}

// DropCapabilities removes CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON from the
// effective, permitted and inheritable sets of every thread (the kernel
// clears them from the ambient set with the permitted one), for the rest
// of the process's life: RaiseCapabilities can't bring them back, nor can
// an exec under no_new_privs. Call it once the program is attached, or
// when it won't be: a Limiter's maps and link are used through the file
// descriptors it holds, which the kernel checks capabilities for when they
// are created, not when they are used (Linux 5.19 and later; use
// Limiter.DropCapabilities, which checks). A process that holds none of
// them is left as it is; root keeps its other capabilities, CAP_SYS_ADMIN
// included. Like RaiseCapabilities, it needs a binary built without cgo.
func DropCapabilities() error {
	hdr, data, err := capget()
	if err != nil {
		return err
	}
	drop := false
	for _, c := range loaderCaps {
		d, bit := &data[c/32], uint32(1)<<(c%32)
		if (d.Effective|d.Permitted|d.Inheritable)&bit != 0 {
			d.Effective &^= bit
			d.Permitted &^= bit
			d.Inheritable &^= bit
			drop = true
		}
	}
	if !drop {
		return nil
	}
	switch errno := capsetAllThreads(&hdr, &data); {
	case errno == syscall.ENOTSUP:
		return errors.New("bpf: a binary built with cgo can't drop CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON on every thread: build warden with CGO_ENABLED=0")
	case errno != 0:
		return fmt.Errorf("bpf: drop CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: %w", errno)
	}
	return nil
}

// DropCapabilities drops the capabilities (see the DropCapabilities
// function) once the program is attached, after checking that its maps
// answer without them; where they don't (ErrCapabilitiesNeeded) it keeps
// them. The check runs on one thread, locked to it, that lowers its own
// effective set for one map lookup and raises it again; a thread that
// can't is never handed back to Go.
func (l *Limiter) DropCapabilities() error {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return ErrClosed
	}
	errc := make(chan error, 1)
	go func() { errc <- l.lookupWithoutCapabilities() }()
	if err := <-errc; err != nil {
		return err
	}
	return DropCapabilities()
}

// lookupWithoutCapabilities reads the config map on the calling goroutine's
// thread with the loader's capabilities out of its effective set. It
// unlocks the thread only once they are back, so that a thread that lost
// them ends with the goroutine (the runtime discards a thread whose
// goroutine exits locked to it).
func (l *Limiter) lookupWithoutCapabilities() error {
	runtime.LockOSThread()
	hdr, data, err := capget()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	lowered := data
	for _, c := range loaderCaps {
		lowered[c/32].Effective &^= uint32(1) << (c % 32)
	}
	// capset without AllThreadsSyscall: this thread only.
	if err := unix.Capset(&hdr, &lowered[0]); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("bpf: lower the capabilities of one thread: %w", err)
	}
	var v ratelimitLimits
	lookupErr := l.objs.Config.Lookup(uint32(0), &v)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("bpf: restore the capabilities of one thread: %w", err) // stays locked
	}
	runtime.UnlockOSThread()
	switch {
	case errors.Is(lookupErr, unix.EPERM):
		return ErrCapabilitiesNeeded
	case lookupErr != nil:
		return fmt.Errorf("bpf: read the config map without capabilities: %w", lookupErr)
	}
	return nil
}

func capget() (unix.CapUserHeader, [2]unix.CapUserData, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return hdr, data, fmt.Errorf("bpf: read capabilities: %w", err)
	}
	return hdr, data, nil
}

// capsetAllThreads sets the capabilities of every thread; ENOTSUP in a
// binary built with cgo.
func capsetAllThreads(hdr *unix.CapUserHeader, data *[2]unix.CapUserData) syscall.Errno {
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	return errno
}
