package bpftest_test

import (
	"net"
	"testing"

	"github.com/warden-sidecar/warden/bpf/bpftest"
)

func TestVethCarriesTCP(t *testing.T) {
	srv, cli := bpftest.NewNetns(t), bpftest.NewNetns(t)
	l := bpftest.Veth(t, srv, cli)
	var ln net.Listener
	if err := srv.Do(func() (err error) { ln, err = net.Listen("tcp", l.A4.String()+":7000"); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	var got []byte
	if err := cli.Do(func() error {
		c, err := net.Dial("tcp", l.A4.String()+":7000")
		if err != nil {
			return err
		}
		defer c.Close()
		b := make([]byte, 2)
		_, err = c.Read(b)
		got = b
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if string(got) != "hi" {
		t.Fatalf("got %q", got)
	}
}
