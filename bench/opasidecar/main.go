package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/valyala/fasthttp"

	"github.com/warden-sidecar/warden/spiffe"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "opasidecar:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:0", "mTLS listen address (loopback)")
	upstream := flag.String("upstream", "127.0.0.1:8080", "the app, plaintext HTTP on loopback")
	opa := flag.String("opa", "http://127.0.0.1:8181/v1/data/warden/authz/allow", "OPA Data API URL of the decision")
	devDir := flag.String("dev-dir", "./.warden-dev", "warden's WARDEN_DEV_DIR (the dev CA)")
	id := flag.String("id", "spiffe://warden.local/ns/default/sa/opasidecar", "SPIFFE ID to serve as")
	flag.Parse()

	host, _, err := net.SplitHostPort(*addr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		return fmt.Errorf("-addr %q: a loopback address is required", *addr)
	}
	opaURL, err := url.Parse(*opa)
	if err != nil || opaURL.Scheme != "http" || opaURL.Host == "" {
		return fmt.Errorf("-opa %q: want an http:// URL", *opa)
	}
	sid, err := spiffeid.FromString(*id)
	if err != nil {
		return fmt.Errorf("-id: %w", err)
	}
	ca, err := spiffe.LoadOrCreateDevCA(*devDir, sid.TrustDomain())
	if err != nil {
		return err
	}
	src, err := spiffe.NewDevSource(ca, sid, nil)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}

	srv := newProxy(sid, opaURL, *upstream).server()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { <-ctx.Done(); _ = srv.Shutdown() }()
	fmt.Printf("https://%s/\n", ln.Addr())
	return srv.Serve(tls.NewListener(ln, spiffe.ServerTLSConfig(src, src)))
}

type proxy struct {
	self     string
	opaURL   string
	opa      *fasthttp.HostClient
	upstream *fasthttp.HostClient
}

func newProxy(self spiffeid.ID, opa *url.URL, upstream string) *proxy {
	return &proxy{
		self:     self.String(),
		opaURL:   opa.String(),
		opa:      &fasthttp.HostClient{Addr: opa.Host, MaxConns: 1024},
		upstream: &fasthttp.HostClient{Addr: upstream, MaxConns: 1024},
	}
}

func (p *proxy) server() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               p.handle,
		NoDefaultServerHeader: true,
		ReadTimeout:           30 * time.Second,
	}
}

// credential headers are never in the policy input, as in warden's.
var credential = map[string]bool{"authorization": true, "proxy-authorization": true, "cookie": true}

// input is the part of warden's policy input a typical policy reads.
type input struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
	Sender  string            `json:"sender"`
	Peer    struct {
		SPIFFEID    string `json:"spiffe_id"`
		TrustDomain string `json:"trust_domain"`
	} `json:"peer"`
	Destination struct {
		SPIFFEID string `json:"spiffe_id"`
	} `json:"destination"`
}

func (p *proxy) handle(ctx *fasthttp.RequestCtx) {
	allowed, err := p.decide(ctx)
	switch {
	case err != nil:
		ctx.Error(`{"error":"policy_unavailable"}`, fasthttp.StatusServiceUnavailable)
		return
	case !allowed:
		ctx.Error(`{"error":"forbidden"}`, fasthttp.StatusForbidden)
		return
	}
	ctx.Request.Header.Del("Connection")
	// The request arrived over TLS; the app is plaintext, and HostClient
	// refuses a scheme that does not match its IsTLS.
	ctx.Request.URI().SetScheme("http")
	if err := p.upstream.Do(&ctx.Request, &ctx.Response); err != nil {
		ctx.Error(`{"error":"upstream_unavailable"}`, fasthttp.StatusBadGateway)
	}
}

// decide asks OPA: POST {"input": ...}, answer {"result": true|false}.
func (p *proxy) decide(ctx *fasthttp.RequestCtx) (bool, error) {
	var in input
	in.Method = string(ctx.Method())
	in.Path = string(ctx.Path())
	in.Sender = ctx.RemoteIP().String()
	in.Headers = make(map[string]string)
	for k, v := range ctx.Request.Header.All() {
		name := string(bytes.ToLower(k))
		if !credential[name] {
			in.Headers[name] = string(v)
		}
	}
	id, err := spiffe.PeerID(ctx.TLSConnectionState())
	if err != nil {
		return false, err
	}
	in.Peer.SPIFFEID = id.String()
	in.Peer.TrustDomain = id.TrustDomain().Name()
	in.Destination.SPIFFEID = p.self
	body, err := json.Marshal(struct {
		Input *input `json:"input"`
	}{&in})
	if err != nil {
		return false, err
	}

	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(p.opaURL)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	if err := p.opa.DoTimeout(req, resp, 5*time.Second); err != nil {
		return false, err
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return false, fmt.Errorf("opa: status %d", resp.StatusCode())
	}
	var out struct {
		Result *bool `json:"result"`
	}
	if err := json.Unmarshal(resp.Body(), &out); err != nil {
		return false, fmt.Errorf("opa: %w", err)
	}
	if out.Result == nil {
		return false, errors.New("opa: undefined decision")
	}
	return *out.Result, nil
}
