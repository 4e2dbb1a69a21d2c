package proxy

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestFramerFindsTheEndOfEachResponse(t *testing.T) {
	const extra = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret"
	tests := []struct {
		name, resp string
		head       bool
		want       frameState // after the response (with extra after it)
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, frameDone},
		{"empty body", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, frameDone},
		{"bare LF head", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", false, frameDone},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-Trailer: 1\r\n\r\n", false, frameDone},
		{"chunked wins over length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false, frameDone},
		{"HEAD has no body", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, frameDone},
		{"204", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, frameDone},
		{"304", "HTTP/1.1 304 Not Modified\r\n\r\n", false, frameDone},
		{"interim then final", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, frameDone},
		{"until close", "HTTP/1.1 200 OK\r\n\r\nbody", false, frameUnframed},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", false, frameUnframed},
		{"other coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", false, frameUnframed},
		{"switching protocols", "HTTP/1.1 101 Switching Protocols\r\n\r\n", false, frameUnframed},
		{"not HTTP", "hello\r\n\r\n", false, frameUnframed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Fed whole, and fed a byte at a time: the same end.
			for _, step := range []int{1 << 20, 1, 7} {
				var f respFramer
				f.reset(tt.head)
				in := []byte(tt.resp + extra)
				taken := 0
				for taken < len(in) {
					k := f.consume(in[taken:min(taken+step, len(in))])
					taken += k
					if k == 0 || f.state == frameDone || f.state == frameUnframed {
						break
					}
				}
				if f.state != tt.want {
					t.Fatalf("step %d: state %d, want %d", step, f.state, tt.want)
				}
				if tt.want == frameDone && taken != len(tt.resp) {
					t.Errorf("step %d: took %d bytes, want the %d of the response", step, taken, len(tt.resp))
				}
			}
		})
	}
}

// FuzzFramer checks the framer against fasthttp's own response parser:
// wherever fasthttp reads a response whole, the framer either ends it at
// the same byte, or has not ended it (unframed, or waiting for more, as on
// malformed input fasthttp reads leniently to EOF): the connection is then
// closed rather than reused. It never ends a response at another byte.
func FuzzFramer(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nx",
		"HTTP/1.1 200 OK\nContent-Length: 1\n\nab",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;a=b\r\nx\r\n0\r\nT: 1\r\n\r\nzz",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, in []byte, head bool) {
		var resp fasthttp.Response
		resp.SkipBody = head
		rd := bytes.NewReader(in)
		br := bufio.NewReaderSize(rd, 64<<10)
		if err := resp.Read(br); err != nil {
			return
		}
		consumed := len(in) - rd.Len() - br.Buffered()
		var fr respFramer
		fr.reset(head)
		taken := fr.consume(in)
		if fr.state == frameDone && taken != consumed {
			t.Fatalf("framer ended the response at %d, fasthttp at %d: %q", taken, consumed, in)
		}
	})
}
