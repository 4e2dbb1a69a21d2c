package proxy

import (
	"io"
	"net/netip"
	"sync"
	"time"
)

// sources tracks the open inbound connections by client address, so that
// the connections of a source that gets blocked are closed by warden: a
// block in the kernel drops the source's packets, which would leave its
// open connections hanging until they time out, and one in userspace would
// leave them open to be refused request by request.
type sources struct {
	mu    sync.Mutex
	conns map[netip.Addr]map[*conn]struct{}
}

func (s *sources) add(c *conn) {
	s.mu.Lock()
	if s.conns == nil {
		s.conns = make(map[netip.Addr]map[*conn]struct{})
	}
	m := s.conns[c.addr]
	if m == nil {
		m = make(map[*conn]struct{}, 1)
		s.conns[c.addr] = m
	}
	m[c] = struct{}{}
	s.mu.Unlock()
}

func (s *sources) remove(c *conn) {
	s.mu.Lock()
	if m := s.conns[c.addr]; m != nil {
		delete(m, c)
		if len(m) == 0 {
			delete(s.conns, c.addr)
		}
	}
	s.mu.Unlock()
}

// closeWithin closes the connections whose client address is in p: each is
// marked, so that its next read ends it (after the response in flight, if
// any, was written: the decoy's own 404 reaches the client), and its
// pending read is woken by a deadline in the past, so that an idle
// keep-alive connection ends at once. It returns how many it closed.
func (s *sources) closeWithin(p netip.Prefix) int {
	now := time.Now()
	n := 0
	s.mu.Lock()
	defer s.mu.Unlock()
	for addr, m := range s.conns {
		if !p.Contains(addr) {
			continue
		}
		for c := range m {
			c.closing.Store(true)
			_ = c.Conn.NetConn().SetReadDeadline(now)
			n++
		}
	}
	return n
}

// CloseSource closes the open inbound connections whose client address is
// in p (a blocked source's): an idle one at once, one serving a request
// once its response is written. It returns how many.
func (s *Server) CloseSource(p netip.Prefix) int {
	if !p.IsValid() {
		return 0
	}
	return s.conns.closeWithin(p.Masked())
}

// errClosing ends the reads of a connection CloseSource closed.
var errClosing = io.EOF
