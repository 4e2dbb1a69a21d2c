package spiffe

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/warden-sidecar/warden/spiffe/spiffetest"
)

var partnerTD = spiffeid.RequireTrustDomainFromString("partner.test")

// events records a WorkloadSource's callbacks on channels.
type events struct {
	rotated  chan *x509svid.SVID
	bundles  chan []spiffeid.TrustDomain
	lost     chan error
	restored chan struct{}
}

func newEvents() *events {
	return &events{
		rotated:  make(chan *x509svid.SVID, 8),
		bundles:  make(chan []spiffeid.TrustDomain, 8),
		lost:     make(chan error, 8),
		restored: make(chan struct{}, 8),
	}
}

func (e *events) callbacks() WorkloadEvents {
	return WorkloadEvents{
		Rotated:  func(s *x509svid.SVID) { e.rotated <- s },
		Bundles:  func(tds []spiffeid.TrustDomain) { e.bundles <- tds },
		Lost:     func(err error) { e.lost <- err },
		Restored: func() { e.restored <- struct{}{} },
	}
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
		panic("unreachable")
	}
}

func newWorkloadSource(t *testing.T, addr string, ev WorkloadEvents) *WorkloadSource {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src, err := NewWorkloadSource(ctx, addr, ev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// echoServer serves ServerTLSConfig(svid, bundles) on loopback: each connection
// echoes what it reads. Handshake errors go to hsErr.
func echoServer(t *testing.T, svid x509svid.Source, bundles x509bundle.Source) (addr string, hsErr <-chan error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerTLSConfig(svid, bundles))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	errs := make(chan error, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String(), errs
}

// dial connects with client's SVID, trusting bundles, and checks the echo.
func dial(t *testing.T, addr string, client *x509svid.SVID, bundles ...*x509bundle.Bundle) (*tls.Conn, error) {
	t.Helper()
	cfg := ClientTLSConfig(client, x509bundle.NewSet(bundles...), tlsconfig.AuthorizeAny())
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	if err := echo(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func echo(c *tls.Conn) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	_, err := io.ReadFull(c, buf)
	return err
}

func serial(c *tls.Conn) string {
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func TestWorkloadSourceAppliesRotationAndFederationToNewHandshakes(t *testing.T) {
	ca, partner := spiffetest.NewCA(t, td), spiffetest.NewCA(t, partnerTD)
	own := spiffeid.RequireFromPath(td, "/ns/default/sa/app")
	wapi := spiffetest.NewWorkloadAPI(t)
	first := ca.SVID(own, time.Hour)
	wapi.Set(first, ca.Bundle())

	ev := newEvents()
	src := newWorkloadSource(t, wapi.Addr(), ev.callbacks())
	if got := receive(t, ev.bundles, "initial bundles"); !slices.Equal(got, []spiffeid.TrustDomain{td}) {
		t.Fatalf("initial trust domains %v, want [warden.test]", got)
	}
	addr, _ := echoServer(t, src, src)
	client := ca.SVID(spiffeid.RequireFromPath(td, "/client"), time.Hour)
	partnerClient := partner.SVID(spiffeid.RequireFromPath(partnerTD, "/client"), time.Hour)

	old, err := dial(t, addr, client, ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if serial(old) != first.Certificates[0].SerialNumber.String() {
		t.Fatal("warden did not present the SVID the Workload API delivered")
	}
	if _, err := dial(t, addr, partnerClient, ca.Bundle()); err == nil {
		t.Fatal("a partner.test client got in before its bundle was federated")
	}

	second := ca.SVID(own, time.Hour)
	wapi.Set(second, ca.Bundle(), partner.Bundle())
	if got := receive(t, ev.rotated, "rotation"); got.Certificates[0].SerialNumber.Cmp(second.Certificates[0].SerialNumber) != 0 {
		t.Fatal("Rotated reported another SVID")
	}
	if got := receive(t, ev.bundles, "federated bundles"); !slices.Equal(got, []spiffeid.TrustDomain{partnerTD, td}) {
		t.Fatalf("trust domains %v, want [partner.test warden.test]", got)
	}
	if got := src.TrustDomains(); !slices.Equal(got, []spiffeid.TrustDomain{partnerTD, td}) {
		t.Fatalf("TrustDomains() %v", got)
	}

	fresh, err := dial(t, addr, client, ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if serial(fresh) != second.Certificates[0].SerialNumber.String() {
		t.Error("a new handshake after the rotation presented the old SVID")
	}
	if err := echo(old); err != nil {
		t.Errorf("the connection established before the rotation broke: %v", err)
	}
	fed, err := dial(t, addr, partnerClient, ca.Bundle())
	if err != nil {
		t.Fatalf("a partner.test client was refused with the federated bundle delivered: %v", err)
	}
	fed.Close()

	// A bundle-only update is not a rotation.
	wapi.Set(second, ca.Bundle())
	if got := receive(t, ev.bundles, "bundle update"); !slices.Equal(got, []spiffeid.TrustDomain{td}) {
		t.Fatalf("trust domains %v after the federation ended", got)
	}
	select {
	case <-ev.rotated:
		t.Error("a bundle-only update was reported as a rotation")
	default:
	}
	if _, err := dial(t, addr, partnerClient, ca.Bundle()); err == nil {
		t.Error("a partner.test client got in after its bundle was withdrawn")
	}
}

func TestWorkloadSourceKeepsServingWhileTheAgentIsGone(t *testing.T) {
	ca := spiffetest.NewCA(t, td)
	own := spiffeid.RequireFromPath(td, "/app")
	wapi := spiffetest.NewWorkloadAPI(t)
	svid := ca.SVID(own, time.Hour)
	wapi.Set(svid, ca.Bundle())
	ev := newEvents()
	src := newWorkloadSource(t, wapi.Addr(), ev.callbacks())
	addr, _ := echoServer(t, src, src)
	client := ca.SVID(spiffeid.RequireFromPath(td, "/client"), time.Hour)

	wapi.Stop()
	if err := receive(t, ev.lost, "loss report"); err == nil {
		t.Fatal("Lost called with a nil error")
	}
	c, err := dial(t, addr, client, ca.Bundle())
	if err != nil {
		t.Fatalf("handshake failed while the agent was gone: %v", err)
	}
	if serial(c) != svid.Certificates[0].SerialNumber.String() {
		t.Error("a different SVID was presented while the agent was gone")
	}
	c.Close()
	select {
	case err := <-ev.lost:
		t.Errorf("a second loss report for the same outage: %v", err)
	default:
	}

	wapi.Start()
	receive(t, ev.restored, "restore report")
	next := ca.SVID(own, time.Hour)
	wapi.Set(next, ca.Bundle())
	if got := receive(t, ev.rotated, "rotation after restore"); got.Certificates[0].SerialNumber.Cmp(next.Certificates[0].SerialNumber) != 0 {
		t.Error("rotation after the agent came back reported another SVID")
	}
}

func TestWorkloadSourceTimeoutNamesTheSocketAndTheLastError(t *testing.T) {
	noEntry := spiffetest.NewWorkloadAPI(t) // serving, but no SVID for this workload
	tests := []struct {
		name string
		addr string
		want string
	}{
		{"no registration entry", noEntry.Addr(), "PermissionDenied desc = no identity issued"},
		{"no agent on the socket", "unix://" + t.TempDir() + "/missing.sock", "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
			defer cancel()
			_, err := NewWorkloadSource(ctx, tt.addr, WorkloadEvents{})
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			prefix := "spiffe: no X.509-SVID from the Workload API at " + tt.addr + ": context deadline exceeded (last error: "
			if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q\nwant prefix %q and %q", msg, prefix, tt.want)
			}
		})
	}
}

func TestExpiredSVIDIsNeverPresented(t *testing.T) {
	ca := spiffetest.NewCA(t, td)
	wapi := spiffetest.NewWorkloadAPI(t)
	expired := ca.SVID(spiffeid.RequireFromPath(td, "/app"), -time.Second)
	wapi.Set(expired, ca.Bundle())
	src := newWorkloadSource(t, wapi.Addr(), WorkloadEvents{})

	addr, hsErr := echoServer(t, src, src)
	client := ca.SVID(spiffeid.RequireFromPath(td, "/client"), time.Hour)
	if c, err := dial(t, addr, client, ca.Bundle()); err == nil {
		c.Close()
		t.Fatal("the server completed a handshake with an expired SVID")
	}
	if err := receive(t, hsErr, "server handshake error"); !strings.Contains(err.Error(), "spiffe: own X.509-SVID spiffe://warden.test/app expired at ") {
		t.Errorf("server handshake error %q does not say the own SVID expired", err)
	}

	// The client side refuses to present an expired SVID just the same.
	fresh := ca.SVID(spiffeid.RequireFromPath(td, "/server"), time.Hour)
	srv, _ := echoServer(t, fresh, ca.Bundle())
	_, err := dial(t, srv, expired, ca.Bundle())
	if err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Errorf("client with an expired SVID: %v, want a refusal naming the expiry", err)
	}
}

func TestNearExpiry(t *testing.T) {
	ca := spiffetest.NewCA(t, td)
	id := spiffeid.RequireFromPath(td, "/app")
	now := time.Now()
	tests := []struct {
		name      string
		notBefore time.Time
		notAfter  time.Time
		margin    time.Duration
		near      bool
	}{
		{"an hour-long SVID at half-life is fine", now.Add(-30 * time.Minute), now.Add(30 * time.Minute), time.Minute, false},
		{"an hour-long SVID 59s before expiry is near", now.Add(-59*time.Minute - time.Second), now.Add(59 * time.Second), time.Minute, true},
		{"a one-minute SVID gets a tenth of its lifetime", now.Add(-50 * time.Second), now.Add(10 * time.Second), 6 * time.Second, false},
		{"a one-minute SVID 5s before expiry is near", now.Add(-55 * time.Second), now.Add(5 * time.Second), 6 * time.Second, true},
		{"an expired SVID is near", now.Add(-time.Hour), now.Add(-time.Second), time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svid := ca.SVIDWindow(id, tt.notBefore, tt.notAfter)
			if got := RenewalMargin(svid.Certificates[0]); got != tt.margin {
				t.Errorf("margin %s, want %s", got, tt.margin)
			}
			if got := NearExpiry(svid, now); got != tt.near {
				t.Errorf("NearExpiry %v, want %v", got, tt.near)
			}
		})
	}
}
