#!/usr/bin/env bash
# bench/micro.sh: warden's Go benchmarks (proxy handler, PEP check, decision
# cache, log batching, JSON and XML body inspection, OpenAPI validation, and the load generator
# itself), -count times each, in the format benchstat reads. `make
# bench-micro` runs it. The output also goes to OUT, so that a change can be
# compared with
#   go run golang.org/x/perf/cmd/benchstat@latest before.txt after.txt
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-6}
BENCH=${BENCH:-.}
PKGS=${PKGS:-./agent/... ./bundle/... ./bench/...}
OUT=${OUT:-/tmp/warden-bench-micro-$(git describe --always --dirty 2>/dev/null || echo dev).txt}
# shellcheck disable=SC2086 # PKGS is a list of package patterns
go test -run '^$' -bench "$BENCH" -benchmem -count "$COUNT" $PKGS | tee "$OUT"
echo "# wrote $OUT (benchstat format)" >&2
