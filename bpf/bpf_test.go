package bpf

import (
	"testing"
	"time"
)

func TestGCRA(t *testing.T) {
	tests := []struct {
		name              string
		rate, burst       uint32
		interval, limitNs uint64
	}{
		{"0 is unlimited", 0, 5, 0, 0},
		{"burst 0 is the rate", 10, 0, 100_000_000, 1_000_000_000},
		{"burst counts intervals", 10, 3, 100_000_000, 300_000_000},
		{"one per second", 1, 1, 1_000_000_000, 1_000_000_000},
		{"a rate with no whole interval rounds it down", 3, 3, 333_333_333, 999_999_999},
		{"rates above 1/ns are 1/ns", 4_000_000_000, 7, 1, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			interval, limit := gcra(tt.rate, tt.burst)
			if interval != tt.interval || limit != tt.limitNs {
				t.Errorf("gcra(%d, %d) = %d, %d; want %d, %d", tt.rate, tt.burst, interval, limit, tt.interval, tt.limitNs)
			}
		})
	}
	if _, limit := gcra(1, 4_000_000_000); limit != 4_000_000_000*uint64(time.Second) {
		t.Errorf("the largest burst at the lowest rate overflows: %d", limit)
	}
}

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
