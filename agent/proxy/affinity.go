package proxy

// Connection affinity (WARDEN_UPSTREAM_AFFINITY): each inbound HTTP/1.1
// connection gets an app connection of its own for its lifetime, as an L4
// proxy has, and its requests go over it without the shared pool: no pool
// lock, no clock reads or deadline settings of the pool's own, and a
// request's bytes stay on one pair of sockets. The shared pool remains the
// overflow: for connections beyond the pinned share of
// WARDEN_UPSTREAM_MAX_CONNS (half of it; the pool keeps the other half, so
// that the two never exceed the limit together), and for the HTTP/2 path.
//
// A pinned connection is an upstreamConn like the pool's, with the same
// checks before each request (nothing left over from the last response,
// nothing sent by the app since), and is never reused after an error: it is
// closed and the next request dials a fresh one. fasthttp serves one request
// at a time per inbound connection and resets the response (releasing its
// body stream) before it reads the next request, so a pinned connection
// carries one request at a time and is read by one response at a time.

import (
	"bufio"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// pinned is an inbound connection's own app connection.
type pinned struct {
	c  *upstreamConn
	br *bufio.Reader
	// noReuse: the last exchange asked to close the connection
	// (Connection: close either way).
	noReuse bool
}

// pinnedWriters are the request buffers: held only while a request is
// written, so an idle pinned connection keeps none.
var pinnedWriters sync.Pool

// pinSlots counts the pinned connections against their share of
// UpstreamMaxConns.
type pinSlots struct {
	open atomic.Int64
	busy atomic.Int64 // in exchange: for the upstream connections gauge
	max  int64
}

func (p *pinSlots) take() bool {
	if p.open.Add(1) <= p.max {
		return true
	}
	p.open.Add(-1)
	return false
}

func (p *pinSlots) put() { p.open.Add(-1) }

// pinnedShare splits UpstreamMaxConns between pinned connections and the
// shared pool.
func pinnedShare(maxConns int) (pinnedMax, poolMax int) {
	pinnedMax = maxConns / 2
	return pinnedMax, maxConns - pinnedMax
}

// roundTrip sends the request to the app and reads the response head into
// ctx.Response, the body left streaming: over the connection's pinned app
// connection when it has or can get one, else through the shared pool.
func (s *Server) roundTrip(ctx *fasthttp.RequestCtx, c *conn) error {
	if s.pins == nil {
		return s.client.DoTimeout(&ctx.Request, &ctx.Response, s.opts.UpstreamTimeout)
	}
	p := c.up.Load()
	if p == nil {
		if !s.pins.take() {
			return s.client.DoTimeout(&ctx.Request, &ctx.Response, s.opts.UpstreamTimeout)
		}
		var err error
		if p, err = s.dialPinned(); err != nil {
			s.pins.put()
			return err
		}
		c.pins = s.pins
		c.up.Store(p)
	}
	// A connection the app closed or desynchronized is found before a byte
	// of the request is written: it is replaced once, as the pool retries
	// on another connection.
	for attempt := 0; ; attempt++ {
		err := s.exchange(ctx, c, p)
		if err == nil {
			return nil
		}
		c.dropPinned(p)
		if attempt > 0 || !(errors.Is(err, errPinnedNoReuse) || retryUnsent(nil, 0, err)) {
			return err
		}
		if !s.pins.take() {
			return s.client.DoTimeout(&ctx.Request, &ctx.Response, s.opts.UpstreamTimeout)
		}
		if p, err = s.dialPinned(); err != nil {
			s.pins.put()
			return err
		}
		c.up.Store(p)
	}
}

// errPinnedNoReuse: the last exchange on the connection ended it.
var errPinnedNoReuse = errors.New("proxy: app connection closed after its last response")

// exchange writes the request and reads the response head on p. The
// deadlines are the request's (from the time fasthttp read it: no clock
// read of its own), armed lazily by upstreamConn.
func (s *Server) exchange(ctx *fasthttp.RequestCtx, c *conn, p *pinned) error {
	if p.noReuse {
		return errPinnedNoReuse
	}
	s.pins.busy.Add(1)
	defer s.pins.busy.Add(-1)
	start := ctx.Time()
	if start.IsZero() {
		start = time.Now() // a ctx no fasthttp server stamped (benchmarks)
	}
	deadline := start.Add(s.opts.UpstreamTimeout)
	_ = p.c.SetWriteDeadline(deadline)
	_ = p.c.SetReadDeadline(deadline)
	req, resp := &ctx.Request, &ctx.Response
	req.URI().DisablePathNormalizing = true
	bw, _ := pinnedWriters.Get().(*bufio.Writer)
	if bw == nil {
		bw = bufio.NewWriterSize(p.c, pinnedWriteBuffer)
	} else {
		bw.Reset(p.c)
	}
	err := req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	pinnedWriters.Put(bw)
	if err != nil {
		return err
	}
	resp.StreamBody = true
	resp.SkipBody = req.Header.IsHead()
	if err := resp.ReadLimitBody(p.br, 0); err != nil {
		return err
	}
	p.noReuse = req.Header.ConnectionClose() || resp.ConnectionClose()
	return nil
}

// pinnedWriteBuffer holds a request's head and a small body together, so
// that both go in one write.
const pinnedWriteBuffer = 8 << 10

func (s *Server) dialPinned() (*pinned, error) {
	nc, err := dialUpstream(s.opts.UpstreamAddr, s.upstreamDesync, s.upSlack)
	if err != nil {
		return nil, err
	}
	u, ok := nc.(*upstreamConn)
	if !ok {
		_ = nc.Close()
		return nil, errors.New("proxy: app connection is not TCP")
	}
	return &pinned{c: u, br: bufio.NewReaderSize(u, max(s.opts.MaxHeaderBytes, 4096))}, nil
}

// dropPinned closes the connection's pinned app connection p, if it is
// still the one pinned.
func (c *conn) dropPinned(p *pinned) {
	if c.up.CompareAndSwap(p, nil) {
		_ = p.c.Close()
		c.pins.put()
	}
}
