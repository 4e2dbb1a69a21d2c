package proxy

import (
	"crypto/tls"
	"net"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/warden-sidecar/warden/spiffe"
)

// conn is an inbound TLS connection with what warden learns about its peer
// once, at the first request, instead of per request: the peer's SPIFFE ID,
// whether it may talk to the app, the client IP and the identity header.
// fasthttp serves one request at a time per connection, so the scratch
// buffers need no locking.
type conn struct {
	*tls.Conn

	resolved bool
	peerID   spiffeid.ID
	peerStr  string
	peerTD   string
	allowed  bool
	clientIP string
	xfcc     []byte

	requestID []byte
	scratch   []byte
	path      []byte // the normalized, decoded path of the current request
	target    []byte // the request target forwarded to the app
	req       Request
}

// listener wraps accepted connections in TLS and in conn.
type listener struct {
	net.Listener
	cfg *tls.Config
}

// NewListener serves TLS with cfg on inner; the proxy Server needs its
// connections to come from such a listener.
func NewListener(inner net.Listener, cfg *tls.Config) net.Listener {
	return &listener{Listener: inner, cfg: cfg}
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: tls.Server(c, l.cfg)}, nil
}

// resolve reads the verified peer identity after the handshake (which the
// first read of the request completed).
func (c *conn) resolve(ownID string, allow func(spiffeid.ID) bool) {
	c.resolved = true
	if addr, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		c.clientIP = addr.IP.String()
	}
	cs := c.ConnectionState()
	id, err := spiffe.PeerID(&cs)
	if err != nil {
		return
	}
	c.peerID = id
	c.peerStr = id.String()
	c.peerTD = id.TrustDomain().Name()
	c.allowed = allow(id)
	c.xfcc = append(c.xfcc[:0], "By="...)
	c.xfcc = append(c.xfcc, ownID...)
	c.xfcc = append(c.xfcc, ";URI="...)
	c.xfcc = append(c.xfcc, c.peerStr...)
}
