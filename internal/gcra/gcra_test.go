package gcra

import (
	"math"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name        string
		rate, burst int64
		want        Params
	}{
		{"rate 0 is unlimited", 0, 5, Params{}},
		{"a negative rate is unlimited", -1, 5, Params{}},
		{"burst 0 is the rate", 10, 0, Params{100_000_000, 1_000_000_000}},
		{"a negative burst is the rate", 10, -3, Params{100_000_000, 1_000_000_000}},
		{"burst counts intervals", 10, 3, Params{100_000_000, 300_000_000}},
		{"one per second", 1, 1, Params{1_000_000_000, 1_000_000_000}},
		{"a rate with no whole interval rounds it down", 3, 3, Params{333_333_333, 999_999_999}},
		{"rates above 1/ns are 1/ns", 4_000_000_000, 7, Params{1, 7}},
		{"the largest 32-bit burst at the lowest rate fits", 1, math.MaxUint32, Params{1_000_000_000, math.MaxUint32 * 1_000_000_000}},
		{"a tolerance beyond 64 bits is held at the largest", 1, math.MaxInt64, Params{1_000_000_000, math.MaxUint64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(tt.rate, tt.burst); got != tt.want {
				t.Errorf("New(%d, %d) = %+v, want %+v", tt.rate, tt.burst, got, tt.want)
			}
			if got := New(tt.rate, tt.burst).Unlimited(); got != (tt.want == Params{}) {
				t.Errorf("Unlimited() = %v", got)
			}
		})
	}
}

func TestNext(t *testing.T) {
	const s = uint64(time.Second)
	p := New(1, 3) // interval 1s, tolerance 3s
	tests := []struct {
		name     string
		tat, now uint64
		next     uint64
		ok       bool
		wait     time.Duration
	}{
		{"a new bucket is full", 0, 10 * s, 11 * s, true, 0},
		{"a TAT in the past counts from now", 5 * s, 10 * s, 11 * s, true, 0},
		{"a TAT ahead is pushed further", 11 * s, 10 * s, 12 * s, true, 0},
		{"the last token conforms exactly", 12 * s, 10 * s, 13 * s, true, 0},
		{"an empty bucket refuses until a token refills", 13 * s, 10 * s, 14 * s, false, time.Second},
		{"a nanosecond over the burst waits a nanosecond", 12*s + 1, 10 * s, 13*s + 1, false, 1},
		{"the refill arrives on time", 13 * s, 11 * s, 14 * s, true, 0},
		{"now 0 on a new bucket", 0, 0, s, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, ok, wait := p.Next(tt.tat, tt.now)
			if next != tt.next || ok != tt.ok || wait != tt.wait {
				t.Errorf("Next(%d, %d) = %d, %v, %v; want %d, %v, %v", tt.tat, tt.now, next, ok, wait, tt.next, tt.ok, tt.wait)
			}
		})
	}
}

func TestTake(t *testing.T) {
	const s = uint64(time.Second)
	t.Run("admits the burst, then the rate", func(t *testing.T) {
		p := New(2, 4) // interval 500ms, tolerance 2s
		var tat uint64
		now := 100 * s
		for i := range 4 {
			if ok, _ := p.Take(&tat, now); !ok {
				t.Fatalf("event %d of a burst of 4 refused", i+1)
			}
		}
		if ok, wait := p.Take(&tat, now); ok || wait != 500*time.Millisecond {
			t.Fatalf("fifth event at once: %v, wait %v; want refused, wait 500ms", ok, wait)
		}
		if tat != now+2*s {
			t.Fatalf("a refused event moved the TAT to %d", tat)
		}
		if ok, _ := p.Take(&tat, now+s/2); !ok {
			t.Fatal("the event one interval later refused")
		}
		if ok, _ := p.Take(&tat, now+s/2); ok {
			t.Fatal("two events admitted for one refilled token")
		}
	})
	t.Run("unlimited admits and leaves the TAT", func(t *testing.T) {
		tat := uint64(7)
		for range 1000 {
			if ok, wait := (Params{}).Take(&tat, 5); !ok || wait != 0 {
				t.Fatalf("unlimited refused: wait %v", wait)
			}
		}
		if tat != 7 {
			t.Fatalf("TAT moved to %d", tat)
		}
	})
	t.Run("the largest tolerance never refuses", func(t *testing.T) {
		p := New(1, math.MaxInt64)
		var tat uint64
		for i := range 1000 {
			if ok, _ := p.Take(&tat, 1); !ok {
				t.Fatalf("event %d refused", i)
			}
		}
	})
}
