package bpf

import "testing"

func TestConfigNormalized(t *testing.T) {
	c, err := Config{Port: 8443}.normalized()
	if err != nil || c.MaxSources != DefaultMaxSources || c.MaxConns != DefaultMaxConns {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	if _, err := (Config{}).normalized(); err == nil {
		t.Error("a config without a port is accepted")
	}
	if _, err := (Config{Ports: []uint16{80}}).normalized(); err != nil {
		t.Errorf("Ports without Port: %v", err)
	}
	if _, err := (Config{Port: 80, Ports: []uint16{0}}).normalized(); err == nil {
		t.Error("port 0 in Ports is accepted")
	}
}
