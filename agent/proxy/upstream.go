package proxy

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// Errors of a pooled app connection found unusable before a request was
// written to it. Nothing of the request reached the app, so the client
// retries it on another connection (see New's RetryIfErr).
var (
	// errUpstreamDesync: the connection holds bytes nobody asked for, a
	// response to a request warden did not send (a request smuggled in a
	// body the app ignored) or bytes after a complete response. Whoever
	// reads them next would take them for the answer to their own request.
	errUpstreamDesync = errors.New("proxy: app connection holds unrequested bytes")
	// errUpstreamClosed: the app closed the idle connection.
	errUpstreamClosed = errors.New("proxy: app closed the idle connection")
)

// upstreamDialTimeout bounds connecting to the app on loopback.
const upstreamDialTimeout = 3 * time.Second

// upstreamConn is a connection to the app that keeps the app's responses in
// step with warden's requests. Its reads never hand the client's parser a
// byte past the end of the response to the request in flight (respFramer);
// bytes beyond are kept back. Before the next request is written on it, it
// checks that nothing was kept back and that the app has sent nothing since,
// with a look at the socket's receive queue that consumes nothing (MSG_PEEK,
// non-blocking: one system call per reused connection). A connection that
// fails either check is closed by the client and never reused.
type upstreamConn struct {
	*net.TCPConn
	raw      syscall.RawConn
	onDesync func(pending int)

	framer respFramer
	kept   []byte // bytes read past the end of the response: never delivered
	// inRequest: a request is being written; a Read ends that. The next
	// Write after a Read starts a new request on this connection.
	inRequest bool
	reused    bool
	// The client's deadlines, armed at the next read or write and
	// coalesced within slack (deadline.go): it sets both for every
	// request, from the goroutine that then does the I/O.
	slack  time.Duration
	rd, wd lazyDeadline

	peekFn  func(fd uintptr) // c.peek, bound once: no closure per check
	peekBuf [512]byte
	peekN   int
	peekErr error
}

// dialUpstream connects to the app; onDesync is told about each connection
// dropped because it held unrequested bytes.
// slack is the deadline coalescing slack (0: deadlines are set as asked).
func dialUpstream(addr string, onDesync func(pending int), slack time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, upstreamDialTimeout)
	if err != nil {
		return nil, err
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	u := &upstreamConn{TCPConn: tcp, raw: raw, onDesync: onDesync, slack: slack}
	u.peekFn = u.peek
	return u, nil
}

func (c *upstreamConn) Read(p []byte) (int, error) {
	c.inRequest = false
	if c.framer.state == frameDone || len(c.kept) > 0 {
		// The client wants more than the response the framer followed: the
		// two disagree. Whatever the app sent goes through, and the
		// connection is not reused.
		c.framer.state = frameUnframed
		if len(c.kept) > 0 {
			n := copy(p, c.kept)
			c.kept = c.kept[:copy(c.kept, c.kept[n:])]
			return n, nil
		}
	}
	if t, ok := c.rd.arm(c.slack); ok {
		if err := c.TCPConn.SetReadDeadline(t); err != nil {
			return 0, err
		}
	}
	n, err := c.TCPConn.Read(p)
	if n > 0 {
		// The framer takes at least one byte: it was not done (see above).
		if k := c.framer.consume(p[:n]); k < n {
			c.kept = append(c.kept[:0], p[k:n]...)
			n = k
		}
	}
	return n, err
}

func (c *upstreamConn) Write(p []byte) (int, error) {
	if !c.inRequest {
		c.inRequest = true
		if c.reused {
			if err := c.checkIdle(); err != nil {
				return 0, err
			}
		}
		c.reused = true
		c.framer.reset(len(p) >= 5 && string(p[:5]) == "HEAD ")
	}
	if t, ok := c.wd.arm(c.slack); ok {
		if err := c.TCPConn.SetWriteDeadline(t); err != nil {
			return 0, err
		}
	}
	return c.TCPConn.Write(p)
}

func (c *upstreamConn) SetDeadline(t time.Time) error {
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

func (c *upstreamConn) SetReadDeadline(t time.Time) error {
	c.rd.set(t)
	return nil
}

func (c *upstreamConn) SetWriteDeadline(t time.Time) error {
	c.wd.set(t)
	return nil
}

// checkIdle checks, before a connection carries another request, that the
// last response ended where the framer saw it end and that the app sent
// nothing after it.
func (c *upstreamConn) checkIdle() error {
	switch {
	case len(c.kept) > 0:
		if c.onDesync != nil {
			c.onDesync(len(c.kept))
		}
		return errUpstreamDesync
	case c.framer.state != frameDone:
		// Unframed, or a response the client did not read to its end.
		return errUpstreamClosed
	}
	c.peekN, c.peekErr = 0, nil
	// Control, not Read: the read deadline of the previous request may have
	// passed, and a look at the queue must not fail for that.
	if err := c.raw.Control(c.peekFn); err != nil {
		return errUpstreamClosed
	}
	switch {
	case c.peekErr == syscall.EAGAIN || c.peekErr == syscall.EWOULDBLOCK:
		return nil // nothing pending, as it should be
	case c.peekErr != nil, c.peekN == 0:
		// Reset, or an orderly shutdown (recv returned 0).
		return errUpstreamClosed
	}
	if c.onDesync != nil {
		c.onDesync(c.peekN)
	}
	return errUpstreamDesync
}

func (c *upstreamConn) peek(fd uintptr) {
	c.peekN, _, c.peekErr = syscall.Recvfrom(int(fd), c.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
}

// retryUnsent lets the client retry a request only when the connection it
// drew was refused before any byte of the request was written.
func retryUnsent(_ any, _ int, err error) bool {
	return errors.Is(err, errUpstreamDesync) || errors.Is(err, errUpstreamClosed)
}
