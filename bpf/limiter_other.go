// Everywhere the generated little-endian object is not built for.
//go:build !((386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm) && linux)

package bpf

import (
	"net/netip"
	"time"
)

// Limiter is unavailable on this platform: Load returns ErrNotSupported.
type Limiter struct{}

// Load returns ErrNotSupported.
func Load(Config) (*Limiter, error) { return nil, ErrNotSupported }

func (*Limiter) Attach(string, AttachMode) error       { return ErrNotSupported }
func (*Limiter) Attachment() (ifname, kind string)     { return "", "" }
func (*Limiter) SetLimits(Config) error                { return ErrNotSupported }
func (*Limiter) Block(netip.Addr, time.Duration) error { return ErrNotSupported }
func (*Limiter) Unblock(netip.Addr) error              { return ErrNotSupported }
func (*Limiter) Blocked() ([]BlockEntry, error)        { return nil, ErrNotSupported }
func (*Limiter) Counters() (Counters, error)           { return Counters{}, ErrNotSupported }
func (*Limiter) TopSources(int) ([]SourceStat, error)  { return nil, ErrNotSupported }
func (*Limiter) Close() error                          { return nil }
func InterfaceFor(netip.Addr) (string, error)          { return "", ErrNotSupported }

// RaiseCapabilities has nothing to raise where Load is not supported.
func RaiseCapabilities() error { return nil }

// DropCapabilities has nothing to drop where Load is not supported.
func DropCapabilities() error { return nil }

// DropCapabilities has nothing to drop where Load is not supported.
func (*Limiter) DropCapabilities() error { return nil }

// FastPath is unavailable on this platform: LoadFastPath returns
// ErrNotSupported.
type FastPath struct{}

// LoadFastPath returns ErrNotSupported.
func LoadFastPath(FastPathConfig) (*FastPath, error)             { return nil, ErrNotSupported }
func (*FastPath) AttachCgroup(string) error                      { return ErrNotSupported }
func (*FastPath) Stats() (FastPathStats, error)                  { return FastPathStats{}, ErrNotSupported }
func (*FastPath) ProgramIDs() (sockops, skMsg uint32, err error) { return 0, 0, ErrNotSupported }
func (*FastPath) Close() error                                   { return nil }
