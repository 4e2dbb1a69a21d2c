package bpf

// The BPF object and its Go bindings (ratelimit_bpfel.go, ratelimit_bpfel.o)
// are generated and committed, so building warden needs no clang. `make
// generate` runs this; it needs clang-19 and llvm-19 (llvm-strip-19). The C
// includes nothing from the system (-nostdinc, include/bpf_base.h), so the
// output is the same byte for byte wherever it is generated. -mcpu=v3 for
// the BPF_ATOMIC compare-and-exchange the rate limiter is built on.
//
//go:generate go tool bpf2go -tags linux -cc clang-19 -strip llvm-strip-19 -target bpfel -type limits -type counts -type source_key -type source_state -type conn_key ratelimit ratelimit.c -- -mcpu=v3 -nostdinc -Iinclude -Wall -Werror
//
// The fast path's sock_ops and sk_msg programs (sockmap.c) need nothing
// beyond the base instruction set.
//
//go:generate go tool bpf2go -tags linux -cc clang-19 -strip llvm-strip-19 -target bpfel -type sock_key -type fastpath_counts sockmap sockmap.c -- -mcpu=v3 -nostdinc -Iinclude -Wall -Werror
