package proxy

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/warden-sidecar/warden/spiffe"
)

// BenchmarkWebSocketEcho measures a 16 KiB binary message's round trip
// through an established tunnel (client TLS, warden's two copies, the app's
// echo), reported as throughput of the bytes sent; BenchmarkWebSocketEcho/
// direct is the same without warden, over plaintext to the app.
func BenchmarkWebSocketEcho(b *testing.B) {
	app := benchWSApp(b)
	msg := make([]byte, 16<<10)
	run := func(b *testing.B, c *websocket.Conn) {
		ctx := context.Background()
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
				b.Fatal(err)
			}
			if _, _, err := c.Read(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("direct", func(b *testing.B) {
		c, _, err := websocket.Dial(context.Background(), "ws://"+app+"/ws", nil)
		if err != nil {
			b.Fatal(err)
		}
		defer c.CloseNow()
		run(b, c)
	})
	b.Run("warden", func(b *testing.B) {
		ca, err := spiffe.LoadOrCreateDevCA(b.TempDir(), ownID.TrustDomain())
		if err != nil {
			b.Fatal(err)
		}
		src, err := spiffe.NewDevSource(ca, ownID, nil)
		if err != nil {
			b.Fatal(err)
		}
		opts := defaultOptions(app)
		opts.AllowUpgrade = []string{"websocket"}
		opts.AllowPeer = func(spiffeid.ID) bool { return true }
		opts.Log = zerolog.Nop()
		s := New(opts)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go func() { _ = s.Serve(NewListener(ln, spiffe.ServerTLSConfig(src, src), nil, 0)) }()
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = s.Shutdown(ctx)
		}()
		svid, err := ca.Issue(clientID, spiffe.IssueOptions{TTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: spiffe.ClientTLSConfig(svid, ca.Bundle(), tlsconfig.AuthorizeID(ownID))}}
		c, _, err := websocket.Dial(context.Background(), "wss://"+ln.Addr().String()+"/ws", &websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			b.Fatal(err)
		}
		defer c.CloseNow()
		run(b, c)
	})
}

func benchWSApp(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil || c.Write(r.Context(), typ, msg) != nil {
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}
