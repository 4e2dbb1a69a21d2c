package gcra

import (
	"math"
	"time"
)

// MaxRate is the highest rate, in events per second, with a whole number
// of nanoseconds between events; higher rates are treated as this one.
const MaxRate = int64(time.Second)

// Params is a rate and burst in GCRA form, as the kernel's config map
// holds them. The zero value is unlimited.
type Params struct {
	// Interval is the emission interval: ns between events at the rate.
	Interval uint64
	// Tolerance is Burst*Interval: how far ahead of now a bucket's TAT
	// may run.
	Tolerance uint64
}

// New converts a rate (events per second) and a burst (the bucket's size
// in events) to Params. A rate of 0 or less is unlimited; a burst of 0 or
// less is a bucket as large as the rate. A tolerance beyond what 64 bits
// hold is held at the largest, which never refuses.
func New(rate, burst int64) Params {
	if rate <= 0 {
		return Params{}
	}
	if burst <= 0 {
		burst = rate
	}
	iv := uint64(time.Second) / uint64(min(rate, MaxRate))
	if uint64(burst) > math.MaxUint64/iv {
		return Params{Interval: iv, Tolerance: math.MaxUint64}
	}
	return Params{Interval: iv, Tolerance: uint64(burst) * iv}
}

// Unlimited reports whether p admits everything.
func (p Params) Unlimited() bool { return p.Interval == 0 }

// Next is the step on a bucket whose TAT is tat for an event at now: the
// TAT after the event, and whether the event conforms. When it does not,
// the bucket must keep tat, and wait is how long until an event would
// conform. This is bpf/ratelimit.c's gcra_take, without its
// compare-and-swap.
func (p Params) Next(tat, now uint64) (next uint64, ok bool, wait time.Duration) {
	next = max(tat, now) + p.Interval
	if ahead := next - now; ahead > p.Tolerance {
		return next, false, time.Duration(min(ahead-p.Tolerance, math.MaxInt64))
	}
	return next, true, 0
}

// Take decides an event at now against the bucket whose TAT is *tat and,
// when the event conforms, moves *tat on. When it does not, wait is how
// long until an event would conform (a Retry-After). Unlimited Params
// admit everything and leave *tat alone. The caller serializes calls on
// one bucket.
func (p Params) Take(tat *uint64, now uint64) (ok bool, wait time.Duration) {
	if p.Unlimited() {
		return true, 0
	}
	next, ok, wait := p.Next(*tat, now)
	if ok {
		*tat = next
	}
	return ok, wait
}
