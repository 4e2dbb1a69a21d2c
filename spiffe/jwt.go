package spiffe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// JWTBundles are the JWT bundles (own and federated trust domains) the
// Workload API delivers, to verify JWT-SVIDs with: go-spiffe's JWTSource on
// the WorkloadSource's connection. It implements jwtbundle.Source.
type JWTBundles struct {
	src    *workloadapi.JWTSource
	gen    atomic.Uint64
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	err    error
}

// JWTBundles starts watching the JWT bundles on the source's connection and
// blocks until the first arrive or ctx ends. Close stops it; the
// WorkloadSource's Close does too.
func (s *WorkloadSource) JWTBundles(ctx context.Context) (*JWTBundles, error) {
	src, err := workloadapi.NewJWTSource(ctx, workloadapi.WithClient(s.client))
	if err != nil {
		return nil, fmt.Errorf("spiffe: no JWT bundles from the Workload API: %w", err)
	}
	watchCtx, cancel := context.WithCancel(context.Background())
	b := &JWTBundles{src: src, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for {
			select {
			case <-watchCtx.Done():
				return
			case <-src.Updated():
				b.gen.Add(1)
			}
		}
	}()
	s.mu.Lock()
	s.jwt = append(s.jwt, b)
	s.mu.Unlock()
	return b, nil
}

// GetJWTBundleForTrustDomain returns the current JWT bundle of td.
func (b *JWTBundles) GetJWTBundleForTrustDomain(td spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	return b.src.GetJWTBundleForTrustDomain(td)
}

// Generation counts the bundle updates received since the first.
func (b *JWTBundles) Generation() uint64 { return b.gen.Load() }

// Close stops watching; the connection stays the WorkloadSource's.
func (b *JWTBundles) Close() error {
	b.once.Do(func() {
		b.cancel()
		<-b.done
		b.err = b.src.Close()
		if errors.Is(b.err, context.Canceled) {
			b.err = nil
		}
	})
	return b.err
}
