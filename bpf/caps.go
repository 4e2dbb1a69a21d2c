// The platforms the generated little-endian object is built for.
//go:build (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm) && linux

package bpf

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("bpf: read capabilities: %w", err)
	}
	raise := false
	for _, c := range []int{unix.CAP_BPF, unix.CAP_NET_ADMIN, unix.CAP_PERFMON} {
		d, bit := &data[c/32], uint32(1)<<(c%32)
		if d.Permitted&bit != 0 && d.Effective&bit == 0 {
			d.Effective |= bit
			raise = true
		}
	}
	if !raise {
		return nil
	}
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET,
		uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	switch {
	case errno == syscall.ENOTSUP:
		return errors.New("bpf: CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON are permitted but not effective, and a binary built with cgo can't raise them on every thread: build warden with CGO_ENABLED=0")
	case errno != 0:
		return fmt.Errorf("bpf: raise CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: %w", errno)
	}
	return nil
}
