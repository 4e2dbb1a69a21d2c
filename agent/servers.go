package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/warden-sidecar/warden/agent/admin"
	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/agent/outbound"
	"github.com/warden-sidecar/warden/agent/proxy"
	"github.com/warden-sidecar/warden/agent/ratelimit"
	"github.com/warden-sidecar/warden/spiffe"
)

// The agent's servers as components: the admin server, the outbound proxy
// and the inbound proxy with the rate limiter in front of it.

// serving is a server's Serve loop under supervision. A loop that returns
// while the server is not being stopped is a failure, whatever it returns.
// Stopping closes the listener after the server's own shutdown, so that a
// loop that had not yet registered its listener when shutdown ran (a
// server stopped right after it started) still returns.
type serving struct {
	ln       net.Listener
	stopping atomic.Bool
}

func (s *serving) serve(ln net.Listener, run func(func() error), serve func() error) {
	s.ln = ln
	run(func() error {
		err := serve()
		switch {
		case s.stopping.Load():
			return nil
		case err == nil:
			return errors.New("stopped serving")
		}
		return err
	})
}

func (s *serving) stop(shutdown func() error) error {
	s.stopping.Store(true)
	err := shutdown()
	_ = s.ln.Close()
	return err
}

// adminServer serves health, readiness and state on WARDEN_ADMIN_ADDR.
type adminServer struct {
	a   *Agent
	srv *admin.Server
	serving
}

func (c *adminServer) name() string { return "admin server" }
func (c *adminServer) ready() error { return nil }

func (c *adminServer) start(_ context.Context, run func(func() error)) error {
	a := c.a
	ln, err := net.Listen("tcp", a.cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("agent: admin listener on %s: %w", a.cfg.AdminAddr, err)
	}
	c.srv = admin.New(a.readiness)
	c.srv.HandleJSON("/identity", a.identityView)
	c.srv.HandleJSON("/policy", a.policyView)
	c.srv.HandleJSON("/ratelimit", a.rateLimitView)
	c.srv.HandleJSON("/fastpath", a.fastPathView)
	mlog := a.log.With().Str("component", "metrics").Logger()
	c.srv.Handle("/metrics", a.metrics.Handler(func(msg string) {
		mlog.Warn().Str("event", "metrics_error").Str("error", msg).Send()
	}))
	plog := a.log.With().Str("component", "app_probes").Logger()
	c.srv.HandleAppProbes(a.cfg.AppProbes, func(r admin.ProbeResult) {
		if r.Outcome == "ok" {
			return // every few seconds per probe: not worth a line
		}
		ev := plog.Warn().Str("event", "app_probe_failed").Str("container", r.Container).Str("probe", r.Probe).
			Str("outcome", r.Outcome).Float64("duration_s", r.Duration.Seconds())
		if r.Status != 0 {
			ev = ev.Int("status", r.Status)
		}
		if r.Err != nil {
			ev = ev.Str("error", r.Err.Error())
		}
		ev.Send()
	})
	if a.cfg.AdminPprof {
		c.srv.EnablePprof()
	}
	a.setAddr(&a.adminAddr, ln.Addr())
	a.log.Info().Str("event", "listening").Str("listener", "admin").Str("addr", ln.Addr().String()).Send()
	c.serve(ln, run, func() error { return c.srv.Serve(ln) })
	return nil
}

// shutdown gets a second of its own: the admin server stops last, when the
// drain may have used the shared deadline up, and has nothing to drain.
func (c *adminServer) shutdown(context.Context) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.stop(func() error { return c.srv.Shutdown(ctx) })
}

// outboundServer relays the app's plaintext requests into mTLS.
type outboundServer struct {
	a   *Agent
	srv *outbound.Server
	serving
}

func (c *outboundServer) name() string { return "outbound proxy" }
func (c *outboundServer) ready() error { return nil }

func (c *outboundServer) start(_ context.Context, run func(func() error)) error {
	a := c.a
	ob, ln, err := a.outbound()
	if err != nil || ob == nil {
		return err
	}
	c.srv = ob
	a.setAddr(&a.outboundAddr, ln.Addr())
	c.serve(ln, run, func() error { return ob.Serve(ln) })
	a.log.Info().Str("event", "listening").Str("listener", "outbound").Str("addr", ln.Addr().String()).
		Int("routes", len(a.cfg.OutboundRoutes)).Send()
	return nil
}

func (c *outboundServer) shutdown(ctx context.Context) error {
	if c.srv == nil {
		return nil
	}
	if err := c.stop(func() error { return c.srv.Shutdown(ctx) }); err != nil {
		return fmt.Errorf("outbound requests still running after %s: %w", c.a.cfg.DrainTimeout, err)
	}
	return nil
}

// inboundServer is the mTLS listener, the rate limiter bound to its
// address, and the proxy to the app.
type inboundServer struct {
	a   *Agent
	srv *proxy.Server
	rl  *ratelimit.Running
	fp  *fastPath
	// stopTracing exports the last spans; a no-op without tracing.
	stopTracing func(context.Context)
	// stopSweep stops the sweep of ended blocks and waits for it.
	stopSweep func()
	listening atomic.Bool
	serving
}

func (c *inboundServer) name() string { return "inbound proxy" }

func (c *inboundServer) ready() error {
	if !c.listening.Load() {
		return errors.New("inbound listener not up")
	}
	return nil
}

func (c *inboundServer) start(_ context.Context, run func(func() error)) error {
	a := c.a
	ln, err := net.Listen("tcp", a.cfg.InboundAddr)
	if err != nil {
		return fmt.Errorf("agent: inbound listener on %s: %w", a.cfg.InboundAddr, err)
	}
	// The fast path before the limiter, which gives up the capabilities
	// attaching needs, and before the proxy's first upstream connection.
	fp, err := a.startFastPath()
	if err != nil {
		ln.Close()
		return err
	}
	c.fp = fp
	// The limiter starts once the inbound port is bound: the kernel
	// program needs the port (":0" picks one) and the route to the address.
	rl, err := a.startRateLimit(ln.Addr().(*net.TCPAddr))
	if err != nil {
		ln.Close()
		_ = fp.Close()
		return err
	}
	c.rl = rl
	tr, stopTracing, err := a.startTracing(context.Background())
	if err != nil {
		ln.Close()
		_ = rl.Close()
		_ = fp.Close()
		return err
	}
	sweepCtx, cancelSweep := context.WithCancel(context.Background())
	swept := make(chan struct{})
	go func() { defer close(swept); a.sweepBlocks(sweepCtx, rl) }()
	c.stopSweep = func() { cancelSweep(); <-swept }
	c.stopTracing = stopTracing
	var limiter proxy.Limiter
	if rl.Userspace != nil {
		limiter = rl.Userspace
	}
	c.srv = proxy.New(proxy.Options{
		UpstreamAddr:        a.cfg.UpstreamAddr,
		UpstreamTimeout:     a.cfg.UpstreamTimeout,
		UpstreamMaxConns:    a.cfg.UpstreamMaxConns,
		UpstreamAffinity:    a.cfg.UpstreamAffinity,
		ReadTimeout:         a.cfg.ReadTimeout,
		WriteTimeout:        a.cfg.WriteTimeout,
		IdleTimeout:         a.cfg.IdleTimeout,
		MaxHeaderBytes:      a.cfg.MaxHeaderBytes,
		MaxRequestBodyBytes: a.cfg.MaxRequestBodyBytes,
		MaxConnections:      a.cfg.MaxConnections,
		HandshakeTimeout:    a.cfg.HandshakeTimeout,
		AllowUpgrade:        a.cfg.AllowUpgrade,
		Hardening:           hardening(a.cfg),
		HTTP2:               slices.Contains(a.cfg.InboundProtocols, config.ProtocolH2),
		NoHTTP1:             !slices.Contains(a.cfg.InboundProtocols, config.ProtocolHTTP11),
		H2MaxStreams:        a.cfg.H2MaxStreams,
		UpstreamProtocol:    a.cfg.UpstreamProtocol,
		OwnID:               a.ownID,
		AllowPeer:           a.peers.Allowed,
		Guard:               a.guard,
		Limiter:             limiter,
		Tracer:              tr,
		Observer:            a.metrics,
		Events:              a.events,
		Log:                 a.log.With().Str("component", "proxy").Logger(),
		AccessLog:           accessLogMode(a.cfg.AccessLog),
	})
	a.proxy.Store(c.srv)
	a.setAddr(&a.inboundAddr, ln.Addr())
	tlsCfg := spiffe.ServerTLSConfig(a.source, a.source)
	// ALPN: the protocols WARDEN_INBOUND_PROTOCOLS lists, in its order.
	tlsCfg.NextProtos = slices.Clone(a.cfg.InboundProtocols)
	tlsLn := proxy.NewListener(ln, tlsCfg, limiter, a.cfg.HandshakeTimeout)
	c.serve(ln, run, func() error { return c.srv.Serve(tlsLn) })
	a.log.Info().Str("event", "listening").Str("listener", "inbound").Str("addr", ln.Addr().String()).
		Str("upstream", a.cfg.UpstreamAddr).Strs("protocols", a.cfg.InboundProtocols).
		Str("upstream_protocol", a.cfg.UpstreamProtocol).Send()
	c.listening.Store(true)
	return nil
}

// shutdown stops accepting, lets in-flight requests finish within ctx,
// then detaches the rate limiter and the fast path.
func (c *inboundServer) shutdown(ctx context.Context) error {
	c.listening.Store(false)
	var err error
	if serr := c.stop(func() error { return c.srv.Shutdown(ctx) }); serr != nil {
		err = fmt.Errorf("in-flight requests still running after %s: %w", c.a.cfg.DrainTimeout, serr)
	}
	c.stopSweep()
	if cerr := c.rl.Close(); cerr != nil {
		c.a.log.Error().Str("event", "ratelimit_close_failed").Err(cerr).Send()
	}
	if cerr := c.fp.Close(); cerr != nil {
		c.a.log.Error().Str("event", "fast_path_close_failed").Err(cerr).Send()
	}
	// The spans of the drained requests are exported within what is left
	// of the drain's deadline.
	if c.stopTracing != nil {
		c.stopTracing(ctx)
	}
	return err
}

// hardening is the proxy's request checks as the configuration sets them.
func hardening(cfg config.Config) proxy.Hardening {
	h := proxy.Hardening{
		AllowGetBody:        cfg.AllowGetBody,
		KeepSemicolons:      cfg.PathSemicolon == config.PathSemicolonKeep,
		StripHeaders:        cfg.StripHeaders,
		AllowMethodOverride: cfg.AllowMethodOverride,
		AllowedMethods:      cfg.AllowedMethods,
		MaxHeaders:          cfg.MaxHeaders,
	}
	switch cfg.HeadersWithUnderscores {
	case config.UnderscoresReject:
		h.Underscores = proxy.UnderscoresReject
	case config.UnderscoresAllow:
		h.Underscores = proxy.UnderscoresAllow
	}
	return h
}

// outbound builds the outbound proxy and binds its listener, or returns nil
// when there is nothing to route: without routes every request would be
// refused, and an idle listener would only claim the port.
func (a *Agent) outbound() (*outbound.Server, net.Listener, error) {
	if a.cfg.OutboundAddr == "" {
		return nil, nil, nil
	}
	if len(a.cfg.OutboundRoutes) == 0 {
		a.log.Info().Str("event", "outbound_disabled").Msg("no WARDEN_OUTBOUND_ROUTES: no outbound listener")
		return nil, nil, nil
	}
	routes := make([]outbound.Route, 0, len(a.cfg.OutboundRoutes))
	for _, r := range a.cfg.OutboundRoutes {
		routes = append(routes, outbound.Route{Host: r.Host, Addr: r.Addr, ID: r.ID, HTTP2: r.Proto == config.RouteH2})
	}
	signer, err := a.outboundSigner()
	if err != nil {
		return nil, nil, err
	}
	ob := outbound.New(outbound.Options{
		Signer:              signer,
		Routes:              routes,
		SVID:                a.source,
		Bundles:             a.source,
		Timeout:             a.cfg.OutboundTimeout,
		MaxConnsPerRoute:    a.cfg.UpstreamMaxConns,
		ReadTimeout:         a.cfg.ReadTimeout,
		WriteTimeout:        a.cfg.WriteTimeout,
		IdleTimeout:         a.cfg.IdleTimeout,
		MaxHeaderBytes:      a.cfg.MaxHeaderBytes,
		MaxRequestBodyBytes: a.cfg.MaxRequestBodyBytes,
		MaxConnections:      a.cfg.MaxConnections,
		Log:                 a.log.With().Str("component", "outbound").Logger(),
	})
	ln, err := net.Listen("tcp", a.cfg.OutboundAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: outbound listener on %s: %w", a.cfg.OutboundAddr, err)
	}
	return ob, ln, nil
}

// accessLogMode is WARDEN_ACCESS_LOG's value for the proxy.
func accessLogMode(v string) proxy.AccessLog {
	switch v {
	case "separate":
		return proxy.AccessLogSeparate
	case "off":
		return proxy.AccessLogOff
	}
	return proxy.AccessLogCombined
}
