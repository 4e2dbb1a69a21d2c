#!/usr/bin/env bash
# bench/quick.sh: what warden costs, in one run on one machine, all on
# loopback. Cases, interleaved in rounds so drift hits them alike:
#   direct        loadgen -> upstream, plaintext (the floor)
#   inproc-mtls   loadgen -> upstream terminating mTLS itself (no hop)
#   warden        loadgen -> warden (mTLS, default policy, cached decision,
#                 decision log to a file) -> upstream
#   warden-nocache  the same with WARDEN_POLICY_CACHE_SIZE=0
#   ghostunnel    loadgen -> ghostunnel 1.8.4 (Go L4 mTLS proxy) -> upstream,
#                 when $GHOSTUNNEL (default: the tools cache) exists; build it
#                 with bench/ghostunnel.sh
# Prints one line per case and round (rps, p50/p99 ms, errors, CPU us per
# request of the process under test, its RSS) and the median rps per case.
# Every run is bounded: ROUNDS x (DURATION + warmup) per case.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4s}
CONNS=${CONNS:-32}
WORK=$(mktemp -d /tmp/warden-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

go build -o "$WORK/warden" ./cmd/warden
go build -o "$WORK/upstream" ./bench/upstream
go build -o "$WORK/loadgen" ./bench/loadgen

export WARDEN_DEV_DIR="$WORK/dev"
"$WORK/warden" dev issue --id spiffe://warden.local/ns/default/sa/client --out "$WORK/client" >/dev/null
TLSARGS=(-cert "$WORK/client/svid.pem" -key "$WORK/client/svid_key.pem" -cacert "$WORK/client/bundle.pem")

# start CMD... : runs a server in the background, waits for the URL it prints.
start() {
	local out="$WORK/out.$RANDOM"
	"$@" >"$out" 2>>"$WORK/servers.log" &
	PIDS+=($!)
	for _ in $(seq 100); do [ -s "$out" ] && break; sleep 0.05; done
	LAST_PID=$!
	LAST_URL=$(head -1 "$out")
}

start "$WORK/upstream"; UP_PID=$LAST_PID; UP_URL=$LAST_URL
start "$WORK/upstream" -mtls -dev-dir "$WORK/dev"; MTLS_PID=$LAST_PID; MTLS_URL=$LAST_URL
up_addr=${UP_URL#http://}; up_addr=${up_addr%/}

# warden NAME PORT [ENV...]: a sidecar on 127.0.0.1:PORT in front of the upstream.
warden() {
	local name=$1 port=$2; shift 2
	env WARDEN_IDENTITY=dev WARDEN_INBOUND_ADDR=127.0.0.1:$port WARDEN_ADMIN_ADDR=127.0.0.1:$((port + 1)) \
		WARDEN_UPSTREAM_ADDR="$up_addr" WARDEN_DECISION_LOG="$WORK/$name.decisions" "$@" \
		"$WORK/warden" 2>"$WORK/$name.log" &
	PIDS+=($!)
	eval "${name//-/_}_PID=$!"
	for _ in $(seq 200); do curl -sf "http://127.0.0.1:$((port + 1))/readyz" >/dev/null && return; sleep 0.05; done
	echo "warden $name did not become ready" >&2; cat "$WORK/$name.log" >&2; exit 1
}
warden warden 25443
warden warden-nocache 25453 WARDEN_POLICY_CACHE_SIZE=0

GHOSTUNNEL=${GHOSTUNNEL:-$HOME/.cache/warden/tools/bin/ghostunnel}
if [ -x "$GHOSTUNNEL" ]; then
	"$WORK/warden" dev issue --id spiffe://warden.local/ns/default/sa/ghostunnel --ip 127.0.0.1 --out "$WORK/gt" >/dev/null
	"$GHOSTUNNEL" server --listen 127.0.0.1:25463 --target "$up_addr" --cert "$WORK/gt/svid.pem" --key "$WORK/gt/svid_key.pem" \
		--cacert "$WORK/gt/bundle.pem" --allow-uri spiffe://warden.local/ns/default/sa/client --quiet=all 2>>"$WORK/servers.log" &
	PIDS+=($!)
	GT_PID=$!
	for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/25463) 2>/dev/null && break; sleep 0.05; done
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

declare -A RPS
run_case() {
	local name=$1 url=$2 pid=$3; shift 3
	local before after json
	before=$(cpu_ticks "$pid")
	json=$("$WORK/loadgen" -url "$url" -c "$CONNS" -d "$DURATION" -json "$@")
	after=$(cpu_ticks "$pid")
	python3 - "$name" "$json" "$((after - before))" "$hz" "$(rss_mib "$pid")" <<'PY'
import json, sys
name, r, ticks, hz, rss = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
cpu_us = ticks / hz * 1e6 / max(r["requests"], 1)
print(f"{name:15s} {r['rps']:9.0f} rps  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  errors {r['errors']}  cpu {cpu_us:.1f} us/req  rss {rss} MiB")
PY
}

for round in $(seq "$ROUNDS"); do
	echo "# round $round"
	run_case direct "$UP_URL" "$UP_PID"
	run_case inproc-mtls "$MTLS_URL" "$MTLS_PID" "${TLSARGS[@]}" -server-name 127.0.0.1
	run_case warden "https://127.0.0.1:25443/" "$warden_PID" "${TLSARGS[@]}"
	run_case warden-nocache "https://127.0.0.1:25453/" "$warden_nocache_PID" "${TLSARGS[@]}"
	if [ -n "${GT_PID:-}" ]; then
		run_case ghostunnel "https://127.0.0.1:25463/" "$GT_PID" "${TLSARGS[@]}"
	fi
done | tee "$WORK/results.txt"
echo "# median rps"
awk '$1 != "#" {print $1, $2}' "$WORK/results.txt" | sort -k1,1 -k2,2n |
	awk '{v[$1] = v[$1] " " $2; n[$1]++} END {for (k in v) {split(substr(v[k], 2), a, " "); printf "%-15s %s\n", k, a[int((n[k] + 1) / 2)]}}'
