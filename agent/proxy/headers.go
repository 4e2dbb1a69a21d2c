package proxy

// What the app receives: the client's request without hop-by-hop headers
// and with the headers warden owns set once.

import "github.com/valyala/fasthttp"

// prepareRequest turns the client's request into the one the app receives.
// Every header warden sets is deleted first, all copies of it: fasthttp's
// Set replaces only the first, and apps differ in which copy they read
// (Express and Werkzeug take the rightmost X-Forwarded-For).
func (s *Server) prepareRequest(h *fasthttp.RequestHeader, c *conn) {
	RemoveHopByHopRequest(h)
	h.ResetConnectionClose()
	for _, name := range c.del {
		h.DelBytes(name)
	}
	// The body was read whole, after warden answered any 100-continue
	// itself: the app must not answer it again.
	h.Del(headerExpect)
	h.SetProtocolBytes(protoHTTP11)

	c.scratch = appendXFF(c.scratch[:0], c.xff, c.clientIP)
	h.Del(headerXFF)
	h.SetBytesV(headerXFF, c.scratch)

	h.Del(headerXFProto)
	h.Set(headerXFProto, "https")
	h.Del(HeaderRequestID)
	h.SetBytesV(HeaderRequestID, c.requestID)
	// Whatever identity header the client sent is a forgery: only warden
	// may state who the peer is.
	h.Del(headerXFCC)
	h.SetBytesV(headerXFCC, c.xfcc)
}

// appendXFF appends the X-Forwarded-For the app receives, whatever the
// protocol: every client value, in order, then this hop's client.
func appendXFF(dst []byte, xff [][]byte, clientIP string) []byte {
	for _, v := range xff {
		dst = append(dst, v...)
		dst = append(dst, ", "...)
	}
	return append(dst, clientIP...)
}

// RemoveHopByHopRequest deletes the headers that describe the client's
// connection, including those its Connection header names.
func RemoveHopByHopRequest(h *fasthttp.RequestHeader) {
	if v := h.Peek(headerConnection); len(v) > 0 {
		forEachToken(v, func(name []byte) { h.DelBytes(name) })
		h.Del(headerConnection)
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// RemoveHopByHopResponse does the same for a response on its way back.
func RemoveHopByHopResponse(h *fasthttp.ResponseHeader) {
	if v := h.Peek(headerConnection); len(v) > 0 {
		forEachToken(v, func(name []byte) { h.DelBytes(name) })
	}
	for _, name := range hopByHop {
		if name != "Transfer-Encoding" { // fasthttp frames the body itself
			h.Del(name)
		}
	}
}

// forEachToken calls fn with each comma-separated, trimmed token of v.
func forEachToken(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		var tok []byte
		if i := indexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		for len(tok) > 0 && (tok[0] == ' ' || tok[0] == '\t') {
			tok = tok[1:]
		}
		for len(tok) > 0 && (tok[len(tok)-1] == ' ' || tok[len(tok)-1] == '\t') {
			tok = tok[:len(tok)-1]
		}
		if len(tok) > 0 {
			fn(tok)
		}
	}
}
func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}
