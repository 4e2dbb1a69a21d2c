package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/spiffe"
)

// serve runs h on a loopback listener (wrapped by wrap when not nil) until
// the test ends, and returns the address.
func serve(t *testing.T, h fasthttp.RequestHandler, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	srv := &fasthttp.Server{Handler: h}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.ShutdownWithContext(ctx)
		<-done
	})
	return addr
}

func TestEveryRequestIsDecidedByOPA(t *testing.T) {
	ca, err := spiffe.LoadOrCreateDevCA(t.TempDir(), spiffeid.RequireTrustDomainFromString("warden.local"))
	if err != nil {
		t.Fatal(err)
	}
	self := spiffeid.RequireFromString("spiffe://warden.local/ns/default/sa/opasidecar")
	client := spiffeid.RequireFromString("spiffe://warden.local/ns/default/sa/client")
	serverSrc, err := spiffe.NewDevSource(ca, self, nil)
	if err != nil {
		t.Fatal(err)
	}
	clientSrc, err := spiffe.NewDevSource(ca, client, nil)
	if err != nil {
		t.Fatal(err)
	}

	// A fake OPA: answers with the body in answer and keeps the last input.
	var answer, lastInput atomic.Value
	var decisions atomic.Int64
	opa := serve(t, func(ctx *fasthttp.RequestCtx) {
		decisions.Add(1)
		var body struct{ Input input }
		if string(ctx.Method()) != "POST" || string(ctx.Path()) != "/v1/data/warden/authz/allow" ||
			json.Unmarshal(ctx.PostBody(), &body) != nil {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
			return
		}
		lastInput.Store(body.Input)
		ctx.SetBodyString(answer.Load().(string))
	}, nil)
	app := serve(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("app") }, nil)
	opaURL, _ := url.Parse("http://" + opa + "/v1/data/warden/authz/allow")
	addr := serve(t, newProxy(self, opaURL, app).handle, func(ln net.Listener) net.Listener {
		return tls.NewListener(ln, spiffe.ServerTLSConfig(serverSrc, serverSrc))
	})

	hc := &fasthttp.HostClient{Addr: addr, IsTLS: true,
		TLSConfig: spiffe.ClientTLSConfig(clientSrc, clientSrc, tlsconfig.AuthorizeID(self))}
	for i, tc := range []struct {
		name, answer string
		status       int
		body         string
	}{
		{"allowed request reaches the app", `{"result":true}`, 200, "app"},
		{"denied request is refused with 403", `{"result":false}`, 403, `{"error":"forbidden"}`},
		{"undefined decision fails closed with 503", `{}`, 503, `{"error":"policy_unavailable"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer.Store(tc.answer)
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("https://" + addr + "/orders/7")
			req.Header.Set("Authorization", "Bearer secret")
			if err := hc.DoTimeout(req, resp, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != tc.status || string(resp.Body()) != tc.body {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode(), resp.Body(), tc.status, tc.body)
			}
			if got := decisions.Load(); got != int64(i+1) {
				t.Errorf("OPA asked %d times after %d requests", got, i+1)
			}
			in := lastInput.Load().(input)
			if in.Method != "GET" || in.Path != "/orders/7" || in.Peer.SPIFFEID != client.String() ||
				in.Peer.TrustDomain != "warden.local" || in.Destination.SPIFFEID != self.String() ||
				in.Headers["authorization"] != "" || in.Headers["host"] == "" {
				t.Errorf("input %+v", in)
			}
		})
	}
}
