package bpf

import "errors"

// FastPathConfig is what the fast path accelerates.
type FastPathConfig struct {
	// Ports are the app's TCP ports: connections on loopback to them
	// (warden's upstream side, ACTIVE_ESTABLISHED) and from them (the
	// app's accepted side, PASSIVE_ESTABLISHED) are put in the sockhash.
	Ports []uint16
	// MaxSockets is the sockhash's size, fixed at load (0:
	// DefaultMaxSockets); each connection takes two entries. A socket
	// that finds it full is not accelerated (FastPathStats.AddFailures).
	MaxSockets uint32
}

// DefaultMaxSockets is the sockhash's default size: 32768 connections.
const DefaultMaxSockets = 65536

// FastPathStats is what the fast path did since load.
type FastPathStats struct {
	// Sockets are in the sockhash now (both ends of each connection).
	Sockets uint64
	// MessagesRedirected and BytesRedirected are the sends that went
	// straight to the peer socket, and their bytes.
	MessagesRedirected, BytesRedirected uint64
	// Fallbacks are sends of a socket in the sockhash whose peer was not
	// in it (established before attach, in another cgroup, or its insert
	// failed): they went through loopback TCP.
	Fallbacks uint64
	// SocketsAdded are sockets ever inserted; AddFailures are sockets that
	// matched but did not fit.
	SocketsAdded, AddFailures uint64
}

func (c FastPathConfig) normalized() (FastPathConfig, error) {
	if len(c.Ports) == 0 {
		return c, errors.New("bpf: fast path: no app port")
	}
	for _, p := range c.Ports {
		if p == 0 {
			return c, errors.New("bpf: fast path: app port 0")
		}
	}
	if c.MaxSockets == 0 {
		c.MaxSockets = DefaultMaxSockets
	}
	return c, nil
}
