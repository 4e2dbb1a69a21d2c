package main

// Outbound HTTP/2 through the real binary: an app speaking h2c (prior
// knowledge, as gRPC clients do in plaintext) to warden's outbound
// listener, warden speaking mTLS with ALPN h2 to a real net/http server
// that requires a client certificate.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/internal/testenv"
)

// tlsDestination serves over mTLS with an SVID `warden dev issue` wrote
// for id, offering protos in ALPN; it answers the protocol it spoke and the
// client's SPIFFE ID, with a gRPC-style trailer.
func tlsDestination(t *testing.T, devDir, id string, protos ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dest")
	if out, err := devIssueCmd(t, devDir, id, dir); err != nil {
		t.Fatalf("dev issue: %v\n%s", err, out)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "svid_key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(filepath.Join(dir, "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: roots, ClientAuth: tls.RequireAndVerifyClientCert,
		NextProtos: protos, MinVersion: tls.VersionTLS12}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client := ""
		if len(r.TLS.PeerCertificates) > 0 && len(r.TLS.PeerCertificates[0].URIs) > 0 {
			client = r.TLS.PeerCertificates[0].URIs[0].String()
		}
		w.Header().Set("Trailer", "Grpc-Status")
		_ = json.NewEncoder(w).Encode(map[string]string{"proto": r.Proto, "client": client, "host": r.Host, "path": r.URL.Path})
		w.Header().Set("Grpc-Status", "0")
	})}
	go func() { _ = srv.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func TestOutboundH2cToH2Destination(t *testing.T) {
	devDir := t.TempDir()
	const destID = "spiffe://warden.local/ns/shop/sa/grpc"
	both := tlsDestination(t, devDir, destID, "h2", "http/1.1")
	h1only := tlsDestination(t, devDir, destID, "http/1.1")
	w := startWarden(t, "WARDEN_IDENTITY=dev", "WARDEN_DEV_DIR="+devDir,
		"WARDEN_SPIFFE_ID=spiffe://warden.local/ns/shop/sa/frontend",
		"WARDEN_INBOUND_ADDR=127.0.0.1:0", "WARDEN_ADMIN_ADDR=127.0.0.1:0", "WARDEN_OUTBOUND_ADDR=127.0.0.1:0",
		"WARDEN_OUTBOUND_ROUTES=grpc="+both+"|"+destID+";proto=h2,"+
			"legacy="+both+"|"+destID+","+
			"noh2="+h1only+"|"+destID+";proto=h2")
	out := w.listenAddr(t, "outbound")

	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", out)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	h2c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	h1 := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(h1.CloseIdleConnections)

	type result struct {
		status  int
		seen    map[string]string
		trailer string
		body    string
	}
	call := func(c *http.Client, host string) result {
		req, _ := http.NewRequest("GET", "http://"+out+"/svc/Method", nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		r := result{status: resp.StatusCode, body: string(b), trailer: resp.Trailer.Get("Grpc-Status")}
		_ = json.Unmarshal(b, &r.seen)
		return r
	}
	// The first call may meet the listener before the SVID is ready.
	testenv.Poll(t, "the outbound listener", 15*time.Second, func() bool { return call(h2c, "grpc").status == 200 })

	r := call(h2c, "grpc")
	if r.seen["proto"] != "HTTP/2.0" || r.seen["client"] != "spiffe://warden.local/ns/shop/sa/frontend" ||
		r.seen["host"] != "grpc" || r.seen["path"] != "/svc/Method" || r.trailer != "0" {
		t.Errorf("h2c app, h2 route: %d %v trailer %q", r.status, r.seen, r.trailer)
	}
	// A route in the former syntax still means HTTP/1.1, from either app.
	for name, c := range map[string]*http.Client{"h2c": h2c, "HTTP/1.1": h1} {
		if r := call(c, "legacy"); r.status != 200 || r.seen["proto"] != "HTTP/1.1" {
			t.Errorf("%s app, former route syntax: %d %v", name, r.status, r.seen)
		}
	}
	// An HTTP/1.1 app reaches the h2 route too.
	if r := call(h1, "grpc"); r.status != 200 || r.seen["proto"] != "HTTP/2.0" {
		t.Errorf("HTTP/1.1 app, h2 route: %d %v", r.status, r.seen)
	}
	// A destination that does not offer h2 fails cleanly.
	if r := call(h2c, "noh2"); r.status != 502 || !strings.Contains(r.body, `"error":"destination_unavailable"`) {
		t.Errorf("h2 route to a destination without h2: %d %s", r.status, r.body)
	}
	w.find(t, func(l map[string]any) bool {
		return l["event"] == "outbound_error" && l["error_code"] == "destination_unavailable" && strings.Contains(l["error"].(string), "no application protocol")
	})
	w.find(t, func(l map[string]any) bool {
		return l["event"] == "access" && l["protocol"] == "h2c" && l["host"] == "grpc" && l["status"] == float64(200)
	})
}
