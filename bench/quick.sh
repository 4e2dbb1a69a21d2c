#!/usr/bin/env bash
# bench/quick.sh: the quick comparison while working on the hot path, about
# a minute: keep-alive throughput only, for direct, in-process mTLS, warden
# with and without its decision cache, and ghostunnel. A thin wrapper around
# bench/run.sh (options pass through, e.g. -r 5 -d 8), with the report in
# /tmp so that bench/results/ only receives full runs.
set -euo pipefail
exec "$(dirname "$0")/run.sh" --cases "direct inproc-mtls warden warden-nocache ghostunnel" --modes closed \
	--out "${OUT:-/tmp/warden-bench-quick}" "$@"
