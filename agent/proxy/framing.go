package proxy

// respFramer follows the responses on an app connection as their bytes go
// by, to know where each one ends. With it, upstreamConn never hands the
// client's parser a byte past the end of the response it asked for: what an
// app sends beyond (the answer to a request smuggled in a body it ignored, a
// body after its answer to HEAD) stays with the connection, which is then
// closed instead of reused. fasthttp's reader would otherwise take such bytes
// into its buffer along with the response, and drop them unnoticed.
//
// It reads only the framing: the status code, Content-Length and
// Transfer-Encoding of the head, the sizes of chunks and the end of the
// trailers. Whatever it cannot follow (a head or chunk line over its bounds,
// a body delimited by the connection's end, an upgrade, several lengths)
// makes the connection unframed: its bytes then pass as they come, and it is
// closed after the response instead of reused.
type respFramer struct {
	state  frameState
	head   bool // the request was HEAD: no response has a body
	remain int64
	buf    []byte // the head, or the current chunk or trailer line
	nl     int    // head state: how far buf is known to hold no "\n\n" or "\n\r\n"
}

type frameState uint8

const (
	frameHead      frameState = iota // reading a response head
	frameBody                        // remain bytes of body to go
	frameChunkSize                   // reading a chunk-size line
	frameChunkData                   // remain bytes of chunk data to go
	frameChunkEnd                    // the line end after chunk data
	frameTrailer                     // reading trailer lines up to an empty one
	frameDone                        // the response is complete
	frameUnframed                    // lost track: pass everything, never reuse
)

// Bounds of what the framer keeps to find a line's end. A head longer than
// maxFrameHead is more than the client accepts anyway (WARDEN_MAX_HEADER_BYTES
// bounds its buffer).
const (
	maxFrameHead = 64 << 10
	maxFrameLine = 4 << 10
)

// reset starts following the response to a new request.
func (f *respFramer) reset(head bool) {
	f.state, f.head, f.remain, f.buf, f.nl = frameHead, head, 0, f.buf[:0], 0
}

// consume follows b, the next bytes read from the app, and returns how many
// of them belong to the current response. It returns len(b) when unframed,
// and fewer only when the response is complete.
func (f *respFramer) consume(b []byte) int {
	n := 0
	for n < len(b) {
		switch f.state {
		case frameDone:
			return n
		case frameUnframed:
			return len(b)
		case frameHead:
			n += f.readHead(b[n:])
		case frameBody, frameChunkData:
			k := int(min(f.remain, int64(len(b)-n)))
			f.remain -= int64(k)
			n += k
			if f.remain == 0 {
				if f.state == frameBody {
					f.state = frameDone
				} else {
					f.state, f.buf = frameChunkEnd, f.buf[:0]
				}
			}
		case frameChunkSize, frameChunkEnd, frameTrailer:
			k, line, ok := f.readLine(b[n:])
			n += k
			if ok {
				f.endLine(line)
			}
		}
	}
	return n
}

// readHead takes bytes of a head up to its empty line, and then reads the
// head's framing.
func (f *respFramer) readHead(b []byte) int {
	before := len(f.buf)
	take := len(b)
	if before+take > maxFrameHead {
		take = maxFrameHead - before
	}
	f.buf = append(f.buf, b[:take]...)
	end := headEnd(f.buf, f.nl)
	if end < 0 {
		f.nl = max(len(f.buf)-3, 0)
		if len(f.buf) >= maxFrameHead {
			f.state = frameUnframed
			return len(b)
		}
		return take
	}
	f.frameHead(f.buf[:end])
	return end - before
}

// headEnd returns the length of the head in buf (its empty line included),
// or -1. Lines end in CRLF or a bare LF, as fasthttp accepts them.
func headEnd(buf []byte, from int) int {
	for i := from; i < len(buf); i++ {
		if buf[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(buf) && buf[i+1] == '\n':
			return i + 2
		case i+2 < len(buf) && buf[i+1] == '\r' && buf[i+2] == '\n':
			return i + 3
		}
	}
	return -1
}

// frameHead reads the status code, Content-Length and Transfer-Encoding of
// a complete head and sets what follows it.
func (f *respFramer) frameHead(head []byte) {
	line, rest := cutLine(head)
	// "HTTP/1.1 200 OK": the code is the three digits after the first space.
	sp := indexByte(line, ' ')
	if sp < 0 || len(line) < sp+4 || !isDigit(line[sp+1]) || !isDigit(line[sp+2]) || !isDigit(line[sp+3]) {
		f.state = frameUnframed
		return
	}
	code := int(line[sp+1]-'0')*100 + int(line[sp+2]-'0')*10 + int(line[sp+3]-'0')
	length, lengths, chunked, otherCoding := int64(0), 0, false, false
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		colon := indexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name, value := trimOWS(line[:colon]), trimOWS(line[colon+1:])
		switch {
		case equalFold(name, []byte("content-length")):
			lengths++
			n, ok := parseLength(value)
			if !ok {
				f.state = frameUnframed
				return
			}
			length = n
		case equalFold(name, []byte("transfer-encoding")):
			// Only "chunked" last frames the body; any other coding leaves
			// it to the connection's end.
			if last := lastToken(value); equalFold(last, []byte("chunked")) {
				chunked, otherCoding = true, false
			} else if len(last) > 0 {
				chunked, otherCoding = false, true
			}
		}
	}
	f.buf = f.buf[:0]
	f.nl = 0
	switch {
	case code == 101 || otherCoding || lengths > 1:
		f.state = frameUnframed
	case code >= 100 && code < 200:
		f.state = frameHead // an interim answer: the final one follows
	case f.head || code == 204 || code == 304:
		f.state = frameDone
	case chunked:
		f.state = frameChunkSize
	case lengths == 1 && length == 0:
		f.state = frameDone
	case lengths == 1:
		f.state, f.remain = frameBody, length
	default:
		f.state = frameUnframed // the body ends with the connection
	}
}

// readLine takes bytes up to and including a line's LF. ok says whether the
// line is complete; line is it without its line end.
func (f *respFramer) readLine(b []byte) (n int, line []byte, ok bool) {
	i := indexByte(b, '\n')
	if i < 0 {
		if len(f.buf)+len(b) > maxFrameLine {
			f.state = frameUnframed
			return len(b), nil, false
		}
		f.buf = append(f.buf, b...)
		return len(b), nil, false
	}
	if len(f.buf)+i > maxFrameLine {
		f.state = frameUnframed
		return len(b), nil, false
	}
	f.buf = append(f.buf, b[:i]...)
	line = f.buf
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return i + 1, line, true
}

// endLine acts on a complete chunk-size, chunk-end or trailer line.
func (f *respFramer) endLine(line []byte) {
	f.buf = f.buf[:0]
	switch f.state {
	case frameChunkEnd:
		if len(line) != 0 {
			f.state = frameUnframed
			return
		}
		f.state = frameChunkSize
	case frameChunkSize:
		if i := indexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, ok := parseHexSize(trimOWS(line))
		switch {
		case !ok:
			f.state = frameUnframed
		case size == 0:
			f.state = frameTrailer
		default:
			f.state, f.remain = frameChunkData, size
		}
	case frameTrailer:
		switch {
		case len(line) == 0:
			f.state = frameDone
		case indexByte(line, ':') <= 0 || line[0] == ' ' || line[0] == '\t':
			// Not a field: parsers part ways on what follows.
			f.state = frameUnframed
		}
	}
}

func cutLine(b []byte) (line, rest []byte) {
	i := indexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, rest
}

func lastToken(v []byte) []byte {
	if i := lastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return trimOWS(v)
}

func lastIndexByte(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseLength reads a Content-Length: digits only, below 2^62.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseHexSize reads a chunk size: hex digits only, below 2^60.
func parseHexSize(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		d := unhex(c)
		if d < 0 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, true
}
