package ratelimit

import "time"

// The token buckets are kept as GCRA (the generic cell rate algorithm, or
// "virtual scheduling"): one number per bucket, the theoretical arrival time
// (TAT) of the next event at the sustained rate. An event at now is allowed
// when scheduling it, TAT' = max(TAT, now) + interval, stays within the burst
// tolerance, TAT' - now <= burst*interval. That is exactly a token bucket
// of size burst refilled at the rate, kept in one word, which is what lets
// the kernel update it with a compare-and-swap and this package reuse the
// same arithmetic.

// rateParams is a rate and burst in GCRA form; the zero value is unlimited.
type rateParams struct {
	interval  int64 // ns between events at the rate
	tolerance int64 // burst*interval
}

func newRateParams(rate, burst int) rateParams {
	if rate <= 0 {
		return rateParams{}
	}
	if burst <= 0 {
		burst = rate
	}
	iv := int64(time.Second) / int64(rate)
	if iv < 1 {
		iv = 1
	}
	return rateParams{interval: iv, tolerance: int64(burst) * iv}
}

func (p rateParams) unlimited() bool { return p.interval == 0 }

// allow decides an event at now (ns on a monotonic clock) against the bucket
// whose TAT is *tat, and updates it if allowed. When refused, wait is how
// long until the event would be allowed.
func (p rateParams) allow(tat *int64, now int64) (ok bool, wait time.Duration) {
	t := *tat
	if t < now {
		t = now
	}
	t += p.interval
	if over := t - now - p.tolerance; over > 0 {
		return false, time.Duration(over)
	}
	*tat = t
	return true, 0
}

// Bucket is one connection's request bucket in the userspace limiter. The
// proxy keeps it in its per-connection state; a connection serves one
// request at a time, so it needs no lock.
type Bucket struct {
	tat int64
}
