package spiffe

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/warden-sidecar/warden/spiffe/spiffetest"
)

func jwtKey(t *testing.T) crypto.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// The JWT bundles arrive with the source, follow the Workload API's
// updates (each counted in Generation), federated ones included, and stop
// with the WorkloadSource.
func TestJWTBundlesFollowTheWorkloadAPI(t *testing.T) {
	ca := spiffetest.NewCA(t, td)
	wapi := spiffetest.NewWorkloadAPI(t)
	wapi.Set(ca.SVID(spiffeid.RequireFromPath(td, "/ns/default/sa/app"), time.Hour), ca.Bundle())
	wapi.SetJWTBundles(jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{"k1": jwtKey(t)}))
	src := newWorkloadSource(t, wapi.Addr(), WorkloadEvents{})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := src.JWTBundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	own, err := b.GetJWTBundleForTrustDomain(td)
	if err != nil || !own.HasJWTAuthority("k1") || b.Generation() != 0 {
		t.Fatalf("first JWT bundle: %v %v, generation %d", own, err, b.Generation())
	}

	wapi.SetJWTBundles(
		jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{"k1": jwtKey(t), "k2": jwtKey(t)}),
		jwtbundle.FromJWTAuthorities(partnerTD, map[string]crypto.PublicKey{"p1": jwtKey(t)}),
	)
	deadline := time.Now().Add(10 * time.Second)
	for b.Generation() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no JWT bundle update within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	own, _ = b.GetJWTBundleForTrustDomain(td)
	partner, err := b.GetJWTBundleForTrustDomain(partnerTD)
	if !own.HasJWTAuthority("k2") || err != nil || !partner.HasJWTAuthority("p1") {
		t.Errorf("after the update: own %v, partner %v %v", own.JWTAuthorities(), partner, err)
	}

	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("closing the bundles after their source: %v", err)
	}
	if _, err := b.GetJWTBundleForTrustDomain(td); err == nil {
		t.Error("bundles still served after Close")
	}
}

func TestJWTBundlesWaitForTheFirstUpdate(t *testing.T) {
	ca := spiffetest.NewCA(t, td)
	wapi := spiffetest.NewWorkloadAPI(t)
	wapi.Set(ca.SVID(spiffeid.RequireFromPath(td, "/ns/default/sa/app"), time.Hour), ca.Bundle())
	src := newWorkloadSource(t, wapi.Addr(), WorkloadEvents{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if b, err := src.JWTBundles(ctx); err == nil {
		b.Close()
		t.Fatal("JWT bundles without any from the Workload API")
	}
}
