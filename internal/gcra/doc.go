// Package gcra is the token-bucket arithmetic that warden's two rate
// limiters share: the kernel's (package bpf writes Params into the eBPF
// program's config map, and bpf/ratelimit.c's gcra_take applies them) and
// the userspace one (agent/ratelimit, which calls Take itself). Having one
// copy of the conversion from a rate and burst, and of the step on a
// bucket, is what keeps the two limiters admitting the same traffic.
//
// A bucket is GCRA (the generic cell rate algorithm, "virtual
// scheduling"): one number, the theoretical arrival time (TAT) of the next
// event at the sustained rate, in nanoseconds on a monotonic clock. An
// event at now conforms iff
//
//	max(TAT, now) + Interval - now <= Tolerance
//
// and then TAT becomes max(TAT, now) + Interval; a refused event leaves
// TAT alone. That admits exactly what a token bucket of burst tokens
// refilled at the rate admits, in one word, which is what lets the kernel
// update it with a single compare-and-swap. Types are the kernel's: every
// quantity is an unsigned 64-bit count of nanoseconds, and a new bucket's
// TAT is 0 (a TAT in the past is a full bucket).
//
// The package owns only arithmetic: no clock, no lock, no state. It must
// not import any other warden package; the C in bpf/ratelimit.c is the
// kernel's copy of Next and must keep its formula.
package gcra
