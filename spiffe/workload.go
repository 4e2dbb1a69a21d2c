package spiffe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// WorkloadEvents are the callbacks of a WorkloadSource. Each may be nil. They
// run on the source's goroutines and must not block for long.
type WorkloadEvents struct {
	// Rotated is called with each SVID that replaces the previous one (not
	// with the first).
	Rotated func(*x509svid.SVID)
	// Bundles is called with the sorted trust domains whose bundles the
	// Workload API delivers (the own one and federated ones), first at
	// startup and then whenever the set changes.
	Bundles func([]spiffeid.TrustDomain)
	// Lost is called once when the Workload API stream fails (the agent
	// went away or refuses the workload). The source keeps serving the SVID
	// and bundles it has and reconnects in the background.
	Lost func(error)
	// Restored is called at the first update after Lost.
	Restored func()
}

// WorkloadSource is the Source of workloadapi mode. go-spiffe's
// workloadapi.X509Source holds the SVID and the bundles that handshakes
// read, so a new SVID or bundle applies to the next handshake. The
// X509Source swallows stream errors and does not list its bundles, so a
// second watch on the same client, of the X.509 bundle stream, tells warden
// which trust domains it trusts and when the agent went away or came back.
type WorkloadSource struct {
	x509   *workloadapi.X509Source
	client *workloadapi.Client
	ev     WorkloadEvents

	cancel context.CancelFunc
	wg     sync.WaitGroup

	tds        atomic.Pointer[[]spiffeid.TrustDomain]
	firstTDs   chan struct{}
	firstOnce  sync.Once
	lost       atomic.Bool
	lastErr    atomic.Pointer[error]
	closeOnce  sync.Once
	closeError error

	mu  sync.Mutex
	jwt []*JWTBundles // closed before the client
}

// NewWorkloadSource connects to the Workload API at addr (unix:///path or
// tcp://ip:port) and blocks until the first SVID and bundles arrive or ctx
// ends. The error then names addr and the last error the stream returned.
func NewWorkloadSource(ctx context.Context, addr string, ev WorkloadEvents) (*WorkloadSource, error) {
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(addr), workloadapi.WithBackoffStrategy(agentBackoff{}))
	if err != nil {
		return nil, fmt.Errorf("spiffe: Workload API at %s: %w", addr, err)
	}
	watchCtx, cancel := context.WithCancel(context.Background())
	s := &WorkloadSource{client: client, ev: ev, cancel: cancel, firstTDs: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = client.WatchX509Bundles(watchCtx, bundleWatcher{s})
	}()

	s.x509, err = workloadapi.NewX509Source(ctx, workloadapi.WithClient(client))
	if err == nil {
		select {
		case <-s.firstTDs:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		err = fmt.Errorf("spiffe: no X.509-SVID from the Workload API at %s: %w", addr, err)
		if last := s.lastErr.Load(); last != nil {
			err = fmt.Errorf("%w (last error: %w)", err, *last)
		}
		_ = s.Close()
		return nil, err
	}

	first, _ := s.x509.GetX509SVID()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.watchRotations(watchCtx, first)
	}()
	return s, nil
}

// GetX509SVID returns the current SVID.
func (s *WorkloadSource) GetX509SVID() (*x509svid.SVID, error) {
	return s.x509.GetX509SVID()
}

// GetX509BundleForTrustDomain returns the current bundle of td, own or federated.
func (s *WorkloadSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.x509.GetX509BundleForTrustDomain(td)
}

// TrustDomains lists, sorted, the trust domains the Workload API last
// delivered bundles for.
func (s *WorkloadSource) TrustDomains() []spiffeid.TrustDomain {
	if p := s.tds.Load(); p != nil {
		return *p
	}
	return nil
}

// Close stops watching and closes the connection to the Workload API.
func (s *WorkloadSource) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		var errs []error
		s.mu.Lock()
		for _, b := range s.jwt {
			errs = append(errs, b.Close())
		}
		s.mu.Unlock()
		if s.x509 != nil {
			errs = append(errs, s.x509.Close())
		}
		errs = append(errs, s.client.Close())
		s.closeError = errors.Join(errs...)
	})
	return s.closeError
}

// watchRotations reports each update of the X509Source that brought a
// different leaf certificate. Bundle-only updates come through the bundle
// watch.
func (s *WorkloadSource) watchRotations(ctx context.Context, cur *x509svid.SVID) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.x509.Updated():
		}
		svid, err := s.x509.GetX509SVID()
		if err != nil || bytes.Equal(svid.Certificates[0].Raw, cur.Certificates[0].Raw) {
			continue
		}
		cur = svid
		if s.ev.Rotated != nil {
			s.ev.Rotated(svid)
		}
	}
}

// bundleWatcher receives the bundle stream; its methods run on the watch
// goroutine, one at a time.
type bundleWatcher struct{ s *WorkloadSource }

func (w bundleWatcher) OnX509BundlesUpdate(set *x509bundle.Set) {
	s := w.s
	tds := make([]spiffeid.TrustDomain, 0, set.Len())
	for _, b := range set.Bundles() {
		tds = append(tds, b.TrustDomain())
	}
	slices.SortFunc(tds, func(a, b spiffeid.TrustDomain) int { return strings.Compare(a.Name(), b.Name()) })
	old := s.tds.Swap(&tds)
	s.firstOnce.Do(func() { close(s.firstTDs) })
	if s.lost.CompareAndSwap(true, false) && s.ev.Restored != nil {
		s.ev.Restored()
	}
	if (old == nil || !slices.Equal(*old, tds)) && s.ev.Bundles != nil {
		s.ev.Bundles(tds)
	}
}

func (w bundleWatcher) OnX509BundlesWatchError(err error) {
	if status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
		return // Close
	}
	s := w.s
	s.lastErr.Store(&err)
	if s.lost.CompareAndSwap(false, true) && s.ev.Lost != nil {
		s.ev.Lost(err)
	}
}

// agentBackoff retries a failed Workload API stream after 200ms, doubling
// up to 5s. go-spiffe's default grows linearly to 30s, which is long next
// to the short SVID lifetimes some deployments use: the agent is local, so
// retrying it often is cheap.
type agentBackoff struct{}

func (agentBackoff) NewBackoff() workloadapi.Backoff { return &doublingBackoff{} }

type doublingBackoff struct{ next time.Duration }

const (
	firstRetry = 200 * time.Millisecond
	maxRetry   = 5 * time.Second
)

func (b *doublingBackoff) Next() time.Duration {
	if b.next == 0 {
		b.next = firstRetry
	}
	d := b.next
	b.next = min(2*b.next, maxRetry)
	return d
}

func (b *doublingBackoff) Reset() { b.next = 0 }
