package spiffetest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// WorkloadAPI is an in-process SPIFFE Workload API server on a unix socket
// in a temporary directory. It serves the X.509 streams (FetchX509SVID and
// FetchX509Bundles) and the JWT bundle stream (FetchJWTBundles) the way a
// SPIRE agent does: the current state at once, then every change; PermissionDenied "no identity issued" until the test
// sets an SVID; InvalidArgument without the security header. Stop and Start
// take the agent away and bring it back on the same socket.
type WorkloadAPI struct {
	tb   testing.TB
	path string

	mu      sync.Mutex
	srv     *grpc.Server
	served  chan struct{} // closed when srv.Serve returns
	resp    *workload.X509SVIDResponse
	bundles *workload.X509BundlesResponse
	jwt     *workload.JWTBundlesResponse
	changed chan struct{} // closed and replaced by every Set and SetJWTBundles
}

// NewWorkloadAPI starts the server; it stops when the test ends.
func NewWorkloadAPI(tb testing.TB) *WorkloadAPI {
	tb.Helper()
	// Not tb.TempDir: a unix socket path must stay under about 100 bytes,
	// and test names make TempDir paths long.
	dir, err := os.MkdirTemp("", "wapi")
	if err != nil {
		tb.Fatal(err)
	}
	w := &WorkloadAPI{tb: tb, path: filepath.Join(dir, "agent.sock"), changed: make(chan struct{})}
	tb.Cleanup(func() {
		w.Stop()
		os.RemoveAll(dir)
	})
	w.Start()
	return w
}

// Addr is the value for SPIFFE_ENDPOINT_SOCKET.
func (w *WorkloadAPI) Addr() string { return "unix://" + w.path }

// SocketPath is the path of the unix socket.
func (w *WorkloadAPI) SocketPath() string { return w.path }

// Set makes svid the workload's identity. The bundle of svid's trust domain
// must be among bundles; the others are delivered as federated bundles.
// Open streams receive the update at once.
func (w *WorkloadAPI) Set(svid *x509svid.SVID, bundles ...*x509bundle.Bundle) {
	w.tb.Helper()
	certs, key, err := svid.MarshalRaw()
	if err != nil {
		w.tb.Fatal(err)
	}
	own := svid.ID.TrustDomain()
	entry := &workload.X509SVID{SpiffeId: svid.ID.String(), X509Svid: certs, X509SvidKey: key}
	resp := &workload.X509SVIDResponse{Svids: []*workload.X509SVID{entry}, FederatedBundles: map[string][]byte{}}
	all := &workload.X509BundlesResponse{Bundles: map[string][]byte{}}
	for _, b := range bundles {
		der := derOf(b)
		all.Bundles[b.TrustDomain().IDString()] = der
		if b.TrustDomain() == own {
			entry.Bundle = der
		} else {
			resp.FederatedBundles[b.TrustDomain().IDString()] = der
		}
	}
	if entry.Bundle == nil {
		w.tb.Fatalf("spiffetest: no bundle for the SVID's trust domain %s", own)
	}
	w.mu.Lock()
	w.resp, w.bundles = resp, all
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

// SetJWTBundles makes bundles the JWT bundles the workload receives (the
// stream answers PermissionDenied until the first call, like an agent that
// issued no identity). Open streams receive the update at once.
func (w *WorkloadAPI) SetJWTBundles(bundles ...*jwtbundle.Bundle) {
	w.tb.Helper()
	resp := &workload.JWTBundlesResponse{Bundles: map[string][]byte{}}
	for _, b := range bundles {
		doc, err := b.Marshal()
		if err != nil {
			w.tb.Fatal(err)
		}
		resp.Bundles[b.TrustDomain().IDString()] = doc
	}
	w.mu.Lock()
	w.jwt = resp
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

func derOf(b *x509bundle.Bundle) []byte {
	var der []byte
	for _, c := range b.X509Authorities() {
		der = append(der, c.Raw...)
	}
	return der
}

// Stop takes the agent away: the listener closes and open streams end with
// Unavailable, as when a SPIRE agent exits.
func (w *WorkloadAPI) Stop() {
	w.mu.Lock()
	srv, served := w.srv, w.served
	w.srv = nil
	w.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Stop()
	<-served
}

// Start serves on the socket (again, after Stop), keeping the state Set gave.
func (w *WorkloadAPI) Start() {
	w.tb.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.srv != nil {
		return
	}
	_ = os.Remove(w.path)
	ln, err := net.Listen("unix", w.path)
	if err != nil {
		w.tb.Fatal(err)
	}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, handler{w: w})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	w.srv, w.served = srv, served
}

// state returns what the streams send now and the channel that closes at
// the next change.
func (w *WorkloadAPI) state() (*workload.X509SVIDResponse, *workload.X509BundlesResponse, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.resp, w.bundles, w.changed
}

var errNoIdentity = status.Error(codes.PermissionDenied, "no identity issued")

type handler struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	w *WorkloadAPI
}

func (h handler) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	return serve(stream.Context(), h.w, func(r *workload.X509SVIDResponse, _ *workload.X509BundlesResponse) error {
		return stream.Send(r)
	})
}

func (h handler) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	return serve(stream.Context(), h.w, func(_ *workload.X509SVIDResponse, b *workload.X509BundlesResponse) error {
		return stream.Send(b)
	})
}

func (h handler) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	ctx, w := stream.Context(), h.w
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("workload.spiffe.io")) != 1 || md.Get("workload.spiffe.io")[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	for {
		w.mu.Lock()
		resp, changed := w.jwt, w.changed
		w.mu.Unlock()
		if resp == nil {
			return errNoIdentity
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// serve sends the current state, then each change, until the stream ends.
func serve(ctx context.Context, w *WorkloadAPI, send func(*workload.X509SVIDResponse, *workload.X509BundlesResponse) error) error {
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("workload.spiffe.io")) != 1 || md.Get("workload.spiffe.io")[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	for {
		resp, bundles, changed := w.state()
		if resp == nil {
			return errNoIdentity
		}
		if err := send(resp, bundles); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
