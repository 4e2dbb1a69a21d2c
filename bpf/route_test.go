package bpf

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/warden-sidecar/warden/bpf/bpftest"
)

func TestInterfaceFor(t *testing.T) {
	srv, cli := bpftest.NewNetns(t), bpftest.NewNetns(t)
	lk := bpftest.Veth(t, srv, cli)
	// A second link in srv, so that answers are not right by default.
	other := bpftest.Veth(t, srv, bpftest.NewNetns(t))
	srv.IP(t, "route", "add", "default", "via", lk.B4.String())
	srv.IP(t, "route", "add", "192.0.2.0/24", "via", other.B4.String())

	tests := []struct {
		addr    string
		want    string
		wantErr string
	}{
		{"0.0.0.0", lk.IfA, ""},                  // the IPv4 default route
		{"::", lk.IfA, ""},                       // no IPv6 default route: the IPv4 one
		{lk.A4.String(), lk.IfA, ""},             // an address of this host: the interface holding it
		{lk.A6.String(), lk.IfA, ""},             //
		{other.A4.String(), other.IfA, ""},       //
		{"::ffff:" + lk.A4.String(), lk.IfA, ""}, // IPv4-mapped
		{"127.0.0.1", "lo", ""},                  //
		{"127.0.0.2", "lo", ""},                  // routed to lo, not held by it
		{lk.B4.String(), lk.IfA, ""},             // a neighbour
		{other.B6.String(), other.IfA, ""},       //
		{"192.0.2.7", other.IfA, ""},             // through a gateway
		{"203.0.113.9", lk.IfA, ""},              // through the default route
		{"2001:db8::1", "", "unreachable"},       // no IPv6 route
	}
	for _, tt := range tests {
		var got string
		err := srv.Do(func() (err error) {
			got, err = InterfaceFor(netip.MustParseAddr(tt.addr))
			return err
		})
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("InterfaceFor(%s) = %q, %v; want an error with %q", tt.addr, got, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("InterfaceFor(%s) = %q, %v; want %q", tt.addr, got, err, tt.want)
		}
	}

	// A namespace without a default route.
	err := cli.Do(func() error {
		_, err := InterfaceFor(netip.IPv4Unspecified())
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "no IPv4 default route") {
		t.Errorf("InterfaceFor(0.0.0.0) without a default route: %v", err)
	}
	if _, err := InterfaceFor(netip.Addr{}); err == nil {
		t.Error("InterfaceFor(invalid) succeeded")
	}
}
