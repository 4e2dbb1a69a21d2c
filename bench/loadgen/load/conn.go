package load

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

func (g *generator) dial(addr string, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = g.timeout
	}
	d := net.Dialer{Timeout: timeout, Control: loopbackOnly}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, &dialError{err}
	}
	g.conns.Add(1)
	if g.tls == nil {
		return newWatchedConn(conn), nil
	}
	tc := tls.Client(conn, g.tls)
	// A deadline rather than HandshakeContext: no goroutine per handshake.
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		_ = conn.Close()
		return nil, &handshakeError{err}
	}
	_ = conn.SetDeadline(time.Time{})
	return newWatchedConn(tc), nil
}

// watchedConn keeps the first read error of a connection. fasthttp reports
// any error on the first byte of a response as "connection closed", which
// would hide a TLS 1.3 server refusing the client certificate (its alert is
// that first read). The connection is found again from the response through
// its LocalAddr, which fasthttp copies into the Response on every request.
type watchedConn struct {
	net.Conn
	addr    watchedAddr
	readErr error // written and read by the goroutine holding the connection
}

type watchedAddr struct {
	net.Addr
	c *watchedConn
}

func newWatchedConn(c net.Conn) *watchedConn {
	w := &watchedConn{Conn: c}
	w.addr = watchedAddr{Addr: c.LocalAddr(), c: w}
	return w
}

func (c *watchedConn) LocalAddr() net.Addr { return &c.addr }

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && c.readErr == nil {
		c.readErr = err
	}
	return n, err
}

// Handshake tells fasthttp the TLS handshake is done: it only starts one on
// a connection without this method. dial has completed it already.
func (c *watchedConn) Handshake() error { return nil }

// readError returns the first read error of the connection resp came from.
func readError(resp *fasthttp.Response) error {
	if a, ok := resp.LocalAddr().(*watchedAddr); ok {
		return a.c.readErr
	}
	return nil
}
