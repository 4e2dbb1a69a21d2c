#!/usr/bin/env bash
# bench/run.sh: what warden costs and how it compares, measured in one run on
# one machine, all on loopback, with one load generator (bench/loadgen) and
# the same settings for every case. Writes OUT/<date>-<host>.md (tables),
# .json (one object per case) and .png (latency percentiles at a fixed rate,
# and maximum throughput). `make bench` runs it with the defaults.
#
# Cases (DESC below says how each is configured; the app behind every proxy
# is bench/upstream, fasthttp with a fixed 5-byte body): direct, inproc-mtls,
# warden-mtls, warden (the full path, WARDEN_FAST_PATH=off),
# warden-fastpath (the same with WARDEN_FAST_PATH=sockmap), warden-nocache,
# and the peers ghostunnel, nginx, haproxy, caddy and opa-sidecar. gRPC
# (issue 17): grpc-direct and grpc-warden, unary calls of 5-byte messages
# from the load generator's -grpc mode to bench/upstream -grpc (h2c),
# directly or through warden's full path (mTLS with ALPN h2, then h2c to
# the app). Select cases with CASES, e.g. CASES="grpc-direct grpc-warden
# warden direct". A case that does not start or does not answer 200 is
# reported as failed (in the report and by exit status 3) while the others
# are measured.
#
# warden and warden-fastpath each get their own app and their own cgroup v2
# (created under the cgroup2 mount, /sys/fs/cgroup/unified on a hybrid
# host, and removed at the end): the sockmap fast path attaches at warden's
# cgroup and redirects only between sockets of that cgroup, so warden and
# its app must share one; the two cases differ only in WARDEN_FAST_PATH.
# warden-fastpath must answer GET /fastpath on its admin address, or it is
# failed (a warden without the fast path would ignore the variable); the
# /fastpath counters of every warden case are recorded at the end.
#
# Modes, each case in each mode, interleaved in rounds (round 1: every mode
# and case, round 2: ...) so drift hits all cases alike:
#   closed   -c connections, keep-alive, as fast as they go: max throughput
#   open     -rate requests/s over -c keep-alive connections: latency
#            percentiles measured from the intended send times
#   newconn  closed loop, a new TCP connection and full TLS handshake per
#            request (no session resumption in the load generator); not
#            for the gRPC cases, which are skipped in this mode (a gRPC
#            client keeps its connection)
#
# Pinning (PIN=1, with 2+ CPUs): the server under test (the proxy, OPA with
# the opa-sidecar, or the app itself in the direct, inproc-mtls and
# grpc-direct cases) on
# CPU 0; the load generator and the app behind the proxies on CPU 1. CPU and
# peak RSS (VmHWM) are read from /proc for the processes under test.
#
# Shared machines: a run during which other activity kept more than 0.1 CPUs
# busy (other processes, the hypervisor's steal; see measure_once) is
# measured again, twice at most, each time after waiting up to 120 s for the
# machine to be quiet, QUIET_WAIT seconds of waiting at most in all.
#
# System calls per request (SYSCALLS=1): after the measured rounds, so that
# strace's overhead never touches their figures, each case's processes
# under test are traced with `strace -c -f` during one bounded closed-loop
# run of SYSCALL_REQUESTS requests (CONNS connections, no warmup), and the
# counts are divided by the requests.
#
# Every run is bounded: each load generator call is wrapped in `timeout`; the
# total is about ROUNDS x modes x cases x (WARMUP + DURATION), at most three
# times that plus QUIET_WAIT when other activity disturbs the runs, plus a
# few seconds per case for the system call run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

ALL_CASES="direct inproc-mtls warden-mtls warden warden-fastpath warden-nocache ghostunnel nginx haproxy caddy opa-sidecar grpc-direct grpc-warden"
ALL_MODES="closed open newconn"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-32}
RATE=${RATE:-5000}
CASES=${CASES:-$ALL_CASES}
MODES=${MODES:-$ALL_MODES}
OUT=${OUT:-bench/results}
NAME=${NAME:-$(date +%F)-$(hostname -s)}
PIN=${PIN:-1}
BASE_PORT=${BASE_PORT:-25400}
KEEP_WORK=${KEEP_WORK:-0}
QUIET_WAIT=${QUIET_WAIT:-900}
TOOLS_DIR=${TOOLS_DIR:-$HOME/.cache/warden/tools}
SYSCALLS=${SYSCALLS:-1}
BENCH_WARDEN_BIN=${BENCH_WARDEN_BIN:-}
SYSCALL_REQUESTS=${SYSCALL_REQUESTS:-20000}

usage() {
	cat <<EOF
usage: bench/run.sh [options]    (each option also reads the environment variable in brackets)
  -r, --rounds N       rounds, every case and mode once per round [ROUNDS=$ROUNDS]
  -d, --duration S     measured seconds per run [DURATION=$DURATION]
  -w, --warmup S       warmup seconds before each run, not recorded [WARMUP=$WARMUP]
  -c, --conns N        load generator connections [CONNS=$CONNS]
  -R, --rate N         open-loop rate, requests/s [RATE=$RATE]
      --cases LIST     space- or comma-separated subset of: $ALL_CASES [CASES]
      --modes LIST     subset of: $ALL_MODES [MODES]
  -o, --out DIR        where the report goes [OUT=$OUT]
      --name NAME      report file name without extension [NAME=$NAME]
      --no-pin         do not pin processes to CPUs [PIN=0]
      --port N         first of the loopback ports used (N..N+79) [BASE_PORT=$BASE_PORT]
      --keep-work      keep the work directory (logs, certificates) [KEEP_WORK=1]
      --quiet-wait S   at most this many seconds in all spent waiting for other activity on
                       the machine to stop before measuring a disturbed run again [QUIET_WAIT=$QUIET_WAIT]
      --warden-bin F   measure this warden binary instead of building ./cmd/warden, e.g. another
                       branch's build for a before/after comparison [BENCH_WARDEN_BIN]
      --no-syscalls    skip the system call count (strace) after the rounds [SYSCALLS=0]
      --syscall-requests N
                       requests of each case's run under strace [SYSCALL_REQUESTS=$SYSCALL_REQUESTS]
EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	-r | --rounds) ROUNDS=$2; shift ;;
	-d | --duration) DURATION=$2; shift ;;
	-w | --warmup) WARMUP=$2; shift ;;
	-c | --conns) CONNS=$2; shift ;;
	-R | --rate) RATE=$2; shift ;;
	--cases) CASES=$2; shift ;;
	--modes) MODES=$2; shift ;;
	-o | --out) OUT=$2; shift ;;
	--name) NAME=$2; shift ;;
	--no-pin) PIN=0 ;;
	--port) BASE_PORT=$2; shift ;;
	--keep-work) KEEP_WORK=1 ;;
	--quiet-wait) QUIET_WAIT=$2; shift ;;
	--no-syscalls) SYSCALLS=0 ;;
	--warden-bin) BENCH_WARDEN_BIN=$2; shift ;;
	--syscall-requests) SYSCALL_REQUESTS=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench/run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

die() { echo "bench/run.sh: $*" >&2; exit 1; }
DURATION=${DURATION%s}
WARMUP=${WARMUP%s}
CASES=${CASES//,/ }
MODES=${MODES//,/ }
for v in ROUNDS DURATION CONNS RATE BASE_PORT SYSCALL_REQUESTS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v=${!v}: want a positive integer"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP=$WARMUP: want whole seconds"
[[ $QUIET_WAIT =~ ^[0-9]+$ ]] || die "QUIET_WAIT=$QUIET_WAIT: want whole seconds"
[[ $SYSCALLS =~ ^[01]$ ]] || die "SYSCALLS=$SYSCALLS: want 0 or 1"
[ -z "$BENCH_WARDEN_BIN" ] || [ -x "$BENCH_WARDEN_BIN" ] || die "BENCH_WARDEN_BIN=$BENCH_WARDEN_BIN: not an executable file"
[ "$SYSCALL_REQUESTS" -le 1000000 ] || die "SYSCALL_REQUESTS=$SYSCALL_REQUESTS: at most 1000000"
[ "$DURATION" -le 60 ] || die "DURATION=$DURATION: at most 60 seconds per run"
for c in $CASES; do [[ " $ALL_CASES " == *" $c "* ]] || die "unknown case $c (want: $ALL_CASES)"; done
for m in $MODES; do [[ " $ALL_MODES " == *" $m "* ]] || die "unknown mode $m (want: $ALL_MODES)"; done
has_case() { [[ " $CASES " == *" $1 "* ]]; }
# The cases asked for; CASES loses those that fail (case_failed).
REQUESTED_CASES=$CASES

# How each case is configured: printed in the report, keep in step with the
# code that starts it below.
declare -A DESC=(
	[direct]="loadgen → app, plaintext, no proxy: the floor. Every case gets the same request, GET / with an \`Authorization: Bearer\` JWT (ES256, about 400 bytes); the app answers 5 bytes."
	[inproc-mtls]="the app terminates mTLS itself (bench/upstream -mtls: warden's TLS configuration, a dev-CA SVID): no hop. Like warden and opa-sidecar, it negotiates Go's default TLS 1.3 key exchange, X25519MLKEM768 (warden sets no curve preferences)."
	[warden-mtls]="warden as near \"mTLS only\" as it gets: no JWT verification (\`WARDEN_JWT_JWKS\` unset, the token is forwarded unread); it has no switch to turn the policy off, so a minimal allow-all bundle directory (\`package warden.authz\` / \`allow := true\`, still evaluated through the decision cache) and \`WARDEN_DECISION_LOG=/dev/null\`; access log to a file as always."
	[warden]="warden's full path: mTLS, JWT verification (\`WARDEN_JWT_JWKS\` a JWKS file, issuer and audience checked; the same token on every request, so a verified-token cache hit), embedded OPA on the default bundle (decision cache hit), decision log and access log to files; \`WARDEN_FAST_PATH=off\`. It and its own app (pinned with the load generator) share a dedicated cgroup v2, as in warden-fastpath."
	[warden-fastpath]="warden's full path exactly as \`warden\` (its own app, the two in one dedicated cgroup v2) but for \`WARDEN_FAST_PATH=sockmap\` (attaching at warden's own cgroup, that one): a sockmap redirects between warden's upstream connections and the app's, skipping the loopback TCP stack on that hop; startup fails if it cannot attach."
	[warden-nocache]="the full path with \`WARDEN_POLICY_CACHE_SIZE=0\`: OPA evaluates every request (the verified-token cache stays on)."
	[ghostunnel]="ghostunnel v1.8.4 (Go, L4 TLS proxy): \`server --allow-uri <client SPIFFE ID> --quiet=all\`, a new app connection per client connection; it prefers X25519 (no ML-KEM), like nginx and HAProxy with OpenSSL 3.0."
	[nginx]="nginx from Debian, L7 mTLS: one process (\`master_process off\`, 1 worker), \`ssl_verify_client on\` against the dev CA bundle, keep-alive pool to the app, no access log."
	[haproxy]="HAProxy from Debian, L7 mTLS: \`nbthread 1\`, \`verify required\` against the dev CA bundle, \`http-reuse always\`, no log."
	[caddy]="Caddy v2.11.9 (Go, L7; bench/caddy.sh), JSON config: \`reverse_proxy\` with a keep-alive pool to the app (\`max_idle_conns_per_host\` 64), the same server certificate, \`client_authentication\` \`require_and_verify\` against the dev CA bundle, \`strict_sni_host\` false (\`insecure_off\`: the client dials an IP address, so sends no SNI), HTTP/1.1 and HTTP/2 only (no HTTP/3 listener), automatic HTTPS and the admin API off, no access log."
	[grpc-direct]="gRPC: loadgen -grpc → the gRPC app, plaintext HTTP/2 (h2c), no proxy: the gRPC floor. Unary \`/warden.test.Echo/Unary\` (bench/upstream -grpc, internal/grpctest's service, google.golang.org/grpc) with a 5-byte google.protobuf.BytesValue echoed back, the same JWT as \`authorization\` metadata; one gRPC client connection per load generator connection, one call at a time on each."
	[grpc-warden]="gRPC through warden's full path: the client SVID over mTLS with ALPN h2 (warden's net/http HTTP/2 server path), JWT verification (as \`warden\`), the default bundle (decision cache hit; the policy input gains \`input.grpc\`), decision log and access log to files, then \`WARDEN_UPSTREAM_PROTOCOL=h2c\` to the gRPC app (pinned with the load generator)."
	[opa-sidecar]="the \"OPA sidecar\" pattern: bench/opasidecar (fasthttp mTLS proxy with warden's TLS configuration) POSTs the policy input to \`opa run --server\` (default bundle) at \`/v1/data/warden/authz/allow\` over loopback HTTP for every request, then forwards; no JWT verification; CPU and RSS are the two processes together."
)

# --- tools -----------------------------------------------------------------
# Debian packages for the peers and the plot, installed only when missing.
export PATH=$PATH:/usr/sbin
need_pkgs=()
has_case nginx && ! command -v nginx >/dev/null && need_pkgs+=(nginx-light)
has_case haproxy && ! command -v haproxy >/dev/null && need_pkgs+=(haproxy)
command -v gnuplot >/dev/null || need_pkgs+=(gnuplot-nox)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
[ "$SYSCALLS" = 1 ] && ! command -v strace >/dev/null && need_pkgs+=(strace)
if [ ${#need_pkgs[@]} -gt 0 ]; then
	sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	echo "# installing ${need_pkgs[*]} (apt-get)"
	$sudo apt-get update -qq
	# Debian 13 has no nginx-light: fall back to nginx.
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" ||
		$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]/nginx-light/nginx}"
fi
GHOSTUNNEL=$TOOLS_DIR/bin/ghostunnel
OPA=$TOOLS_DIR/bin/opa
CADDY=$TOOLS_DIR/bin/caddy
has_case ghostunnel && TOOLS_DIR=$TOOLS_DIR bench/ghostunnel.sh
has_case caddy && TOOLS_DIR=$TOOLS_DIR bench/caddy.sh
has_case opa-sidecar && make -s TOOLS_DIR="$TOOLS_DIR" tools

if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ] && taskset -c 1 true 2>/dev/null; then
	# Command prefixes, not functions: a backgrounded function would run in
	# a subshell whose PID is not the server's, and kill would miss it.
	ON_SERVER_CPU=(taskset -c 0) ON_CLIENT_CPU=(taskset -c 1)
	pinning="server under test on CPU 0; load generator and the app behind proxies on CPU 1 (taskset)"
else
	ON_SERVER_CPU=() ON_CLIENT_CPU=()
	pinning="none"
fi

# --- processes ---------------------------------------------------------------
# The cgroup v2 hierarchy: /sys/fs/cgroup on a unified host,
# /sys/fs/cgroup/unified on a hybrid one; none when neither is cgroup2 or
# it is not writable (not root): the cases that need one then fail.
CG_ROOT=
for d in /sys/fs/cgroup /sys/fs/cgroup/unified; do
	if [ "$(stat -fc %T "$d" 2>/dev/null)" = cgroup2fs ] && [ -w "$d" ]; then CG_ROOT=$d; break; fi
done
# new_cgroup NAME: creates the case's cgroup below the one this script runs
# in (moving a process needs write access to the common ancestor's
# cgroup.procs: as root, any) and sets CG to its path; false without cgroup
# v2. remove_cgroups removes them when their processes have gone.
new_cgroup() {
	CG=
	[ -n "$CG_ROOT" ] || return 1
	local own
	own=$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
	CG=$CG_ROOT${own%/}/warden-bench.$$.$1
	mkdir "$CG" || return 1
	CGROUPS+=("$CG")
}
remove_cgroups() {
	local cg
	for cg in "${CGROUPS[@]}"; do
		# A killed process leaves the cgroup when it is reaped; poll briefly.
		for _ in $(seq 100); do rmdir "$cg" 2>/dev/null && break; [ -d "$cg" ] || break; sleep 0.05; done
		[ -d "$cg" ] && echo "bench/run.sh: could not remove $cg (processes: $(tr '\n' ' ' <"$cg/cgroup.procs"))" >&2
	done
	CGROUPS=()
	return 0
}
WORK=$(mktemp -d /tmp/warden-bench.XXXXXX)
PIDS=() LOADGEN_PID= STRACE_PID= CGROUPS=()
cleanup() {
	local rc=$?
	for p in $LOADGEN_PID $STRACE_PID "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in $STRACE_PID "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	remove_cgroups
	if [ "$KEEP_WORK" = 1 ] || [ $rc -ne 0 ]; then
		echo "# work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "# building into $WORK"
if [ -n "$BENCH_WARDEN_BIN" ]; then
	cp "$BENCH_WARDEN_BIN" "$WORK/warden"
	warden_version="$BENCH_WARDEN_BIN (--warden-bin; sha256 $(sha256sum "$WORK/warden" | cut -c1-12))"
else
	go build -o "$WORK/warden" ./cmd/warden
	warden_version=$(git describe --always --dirty 2>/dev/null || echo unknown)
fi
go build -o "$WORK/upstream" ./bench/upstream
go build -o "$WORK/loadgen" ./bench/loadgen
go build -o "$WORK/opasidecar" ./bench/opasidecar
go build -o "$WORK/report" ./bench/report
go build -o "$WORK/tokengen" ./bench/tokengen

# Only the settings below reach the warden instances, whatever the caller's
# environment holds.
for v in $(compgen -e | grep '^WARDEN_' || true); do unset "$v"; done
export WARDEN_DEV_DIR=$WORK/dev
"$WORK/warden" dev issue --id spiffe://warden.local/ns/default/sa/client --out "$WORK/client" >/dev/null
"$WORK/warden" dev issue --id spiffe://warden.local/ns/default/sa/peer --ip 127.0.0.1 --out "$WORK/peer" >/dev/null
TLS=(-cert "$WORK/client/svid.pem" -key "$WORK/client/svid_key.pem" -cacert "$WORK/client/bundle.pem" -server-name 127.0.0.1)
# The gRPC cases' call: the same 5 bytes the HTTP app answers, echoed.
GRPC=(-grpc /warden.test.Echo/Unary -body-size 5)
# Every case gets the same request: GET / with the end-to-end JWT a gateway
# would have issued (ES256, about 400 bytes); the full-path wardens verify it.
JWT_ISS=https://issuer.bench.warden.local JWT_AUD=app
"$WORK/tokengen" -out "$WORK/jwt" -iss "$JWT_ISS" -aud "$JWT_AUD" -ttl 24h
REQUEST=(-H "Authorization: Bearer $(<"$WORK/jwt/token")")
JWT_ENV=(WARDEN_JWT_JWKS="$WORK/jwt/jwks.json" WARDEN_JWT_ISSUERS="$JWT_ISS" WARDEN_JWT_AUDIENCES="$JWT_AUD")

port() { echo $((BASE_PORT + $1)); }
APP=127.0.0.1:$(port 0)
GRPC_APP=127.0.0.1:$(port 3)

# The ports must be free: a stale server would be measured instead.
for off in 0 1 2 3 4 10 11 20 21 22 24 25 26 27 28 30 31 40 45 50 60 70 71; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$(port $off)") 2>/dev/null; then
		die "port $(port $off) is in use; pick other ports with --port"
	fi
done

# wait_for DESCRIPTION CHECK...: polls CHECK for up to 10 s, and fails
# (after printing the end of the log of the process started last) when it
# does not pass by then or that process exits.
wait_for() {
	local what=$1; shift
	for _ in $(seq 200); do
		"$@" >/dev/null 2>&1 && return
		kill -0 "$LAST_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "bench/run.sh: $what did not come up; the end of its log:" >&2
	tail -20 "$WORK/$what.log" >&2 || true
	return 1
}
tcp_up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
http_ok() { curl -sf -o /dev/null "$1"; }

# start NAME server|client CMD...: starts a server in the background, pinned
# to the server or client CPU, output to NAME.log. LAST_PID is its PID
# (taskset, in-cgroup and env exec the command).
start() {
	local name=$1 side=$2; shift 2
	if [ "$side" = server ]; then
		"${ON_SERVER_CPU[@]}" "$@" >>"$WORK/$name.log" 2>&1 &
	else
		"${ON_CLIENT_CPU[@]}" "$@" >>"$WORK/$name.log" 2>&1 &
	fi
	PIDS+=($!)
	LAST_PID=$!
}

# in-cgroup CGROUP CMD...: runs CMD in the cgroup v2 directory CGROUP,
# moved there before exec so that everything it creates (sockets included)
# belongs to it from the start.
cat >"$WORK/in-cgroup" <<'EOF2'
#!/bin/sh
echo $$ >"$1/cgroup.procs" || exit 125
shift
exec "$@"
EOF2
chmod +x "$WORK/in-cgroup"

# BEHIND: the app behind the case's server, when it is not the HTTP app.
# ADMIN: a warden case's admin address. DECISIONS: its decision log file.
# FAILED: why a case was dropped.
declare -A URL UNDER BEHIND ADMIN DECISIONS FAILED
FAILED_ORDER=()
# case_failed CASE REASON: drops the case (its processes stopped, no more
# runs) and keeps the reason for the report; the other cases go on.
case_failed() {
	local p
	echo "bench/run.sh: case $1 FAILED: $2" >&2
	FAILED[$1]=$2
	FAILED_ORDER+=("$1")
	for p in ${UNDER[$1]:-} ${BEHIND[$1]:-}; do kill "$p" 2>/dev/null || true; done
	CASES=$(tr ' ' '\n' <<<"$CASES" | { grep -vx -- "$1" || true; } | tr '\n' ' ')
	return 0
}
start app client "$WORK/upstream" -addr "$APP"
APP_PID=$LAST_PID
wait_for app tcp_up "$(port 0)" || die "the app did not come up"
if has_case grpc-warden; then
	start grpc-app client "$WORK/upstream" -grpc -addr "$GRPC_APP"
	GRPC_APP_PID=$LAST_PID
	wait_for grpc-app tcp_up "$(port 3)" || die "the gRPC app did not come up"
fi

if has_case direct; then
	start direct server "$WORK/upstream" -addr "127.0.0.1:$(port 1)"
	URL[direct]=http://127.0.0.1:$(port 1)/ UNDER[direct]=$LAST_PID
	wait_for direct tcp_up "$(port 1)" || case_failed direct "did not come up"
fi
if has_case grpc-direct; then
	start grpc-direct server "$WORK/upstream" -grpc -addr "127.0.0.1:$(port 4)"
	URL[grpc-direct]=http://127.0.0.1:$(port 4)/ UNDER[grpc-direct]=$LAST_PID
	wait_for grpc-direct tcp_up "$(port 4)" || case_failed grpc-direct "did not come up"
fi
if has_case inproc-mtls; then
	start inproc-mtls server "$WORK/upstream" -addr "127.0.0.1:$(port 2)" -mtls -dev-dir "$WARDEN_DEV_DIR"
	URL[inproc-mtls]=https://127.0.0.1:$(port 2)/ UNDER[inproc-mtls]=$LAST_PID
	wait_for inproc-mtls tcp_up "$(port 2)" || case_failed inproc-mtls "did not come up"
fi

# warden_case NAME PORT [ENV...]: a sidecar in front of the app (ENV comes
# after the defaults: env(1) keeps the last of two assignments), run with
# the command prefix in CASE_PREFIX (own_app's cgroup) when set.
CASE_PREFIX=()
warden_case() {
	local name=$1 p=$2; shift 2
	has_case "$name" || return 0
	start "$name" server "${CASE_PREFIX[@]}" env WARDEN_IDENTITY=dev WARDEN_INBOUND_ADDR="127.0.0.1:$p" \
		WARDEN_ADMIN_ADDR="127.0.0.1:$((p + 1))" WARDEN_UPSTREAM_ADDR="$APP" "$@" "$WORK/warden"
	URL[$name]=https://127.0.0.1:$p/ UNDER[$name]=$LAST_PID ADMIN[$name]=127.0.0.1:$((p + 1))
	for a in "$@"; do [[ $a == WARDEN_DECISION_LOG=$WORK/* ]] && DECISIONS[$name]=${a#WARDEN_DECISION_LOG=}; done
	wait_for "$name" http_ok "http://127.0.0.1:$((p + 1))/readyz" || case_failed "$name" "did not become ready (log: $name.log)"
	CASE_PREFIX=()
}
# own_app NAME PORT required|optional: starts an app for the case alone, on
# PORT, in a new cgroup v2 for the case (CASE_PREFIX puts its warden there
# too; CASE_APP is the app's address). Without cgroup v2 the app and warden
# run where this script does when the cgroup is optional, else the case
# fails. False when the case is not run or failed.
own_app() {
	local name=$1 p=$2 need=$3
	CASE_PREFIX=() CASE_APP=
	has_case "$name" || return 1
	if new_cgroup "$name"; then
		CASE_PREFIX=("$WORK/in-cgroup" "$CG")
		CGROUP[$name]=${CG#"$CG_ROOT"}
	elif [ "$need" = required ]; then
		case_failed "$name" "needs a writable cgroup v2 (root, cgroup2 at /sys/fs/cgroup or /sys/fs/cgroup/unified)"
		return 1
	fi
	start "$name-app" client "${CASE_PREFIX[@]}" "$WORK/upstream" -addr "127.0.0.1:$p"
	BEHIND[$name]=$LAST_PID CASE_APP=127.0.0.1:$p
	wait_for "$name-app" tcp_up "$p" || { case_failed "$name" "its app did not come up"; return 1; }
}
declare -A CGROUP
mkdir -p "$WORK/allow-all"
printf 'package warden.authz\n\nallow := true\n' >"$WORK/allow-all/policy.rego"
warden_case warden-mtls "$(port 10)" WARDEN_POLICY_BUNDLE="$WORK/allow-all" WARDEN_DECISION_LOG=/dev/null
# warden and warden-fastpath differ only in WARDEN_FAST_PATH: each has its
# own app, the two in the case's own cgroup v2 (the fast path's scope).
own_app warden "$(port 22)" optional &&
	warden_case warden "$(port 20)" "${JWT_ENV[@]}" WARDEN_DECISION_LOG="$WORK/warden.decisions" \
		WARDEN_UPSTREAM_ADDR="$CASE_APP" WARDEN_FAST_PATH=off
own_app warden-fastpath "$(port 28)" required &&
	warden_case warden-fastpath "$(port 26)" "${JWT_ENV[@]}" WARDEN_DECISION_LOG="$WORK/warden-fastpath.decisions" \
		WARDEN_UPSTREAM_ADDR="$CASE_APP" WARDEN_FAST_PATH=sockmap
CASE_PREFIX=()
# Both processes of each case must be where the fast path looks: in the
# case's cgroup (the path /proc/PID/cgroup's "0::" line shows).
for c in warden warden-fastpath; do
	has_case "$c" && [ -n "${CGROUP[$c]:-}" ] || continue
	for p in ${UNDER[$c]} ${BEHIND[$c]}; do
		if ! grep -qx "0::${CGROUP[$c]}" "/proc/$p/cgroup"; then
			case_failed "$c" "process $p is not in its cgroup ${CGROUP[$c]}: $(grep '^0::' "/proc/$p/cgroup")"
			break
		fi
	done
done
# A warden without the fast path ignores WARDEN_FAST_PATH: only a /fastpath
# answer shows that the case measures what it says.
if has_case warden-fastpath && ! curl -sf --max-time 5 -o "$WORK/fastpath.check" "http://${ADMIN[warden-fastpath]}/fastpath"; then
	case_failed warden-fastpath "GET /fastpath on its admin address did not answer 200: this warden has no fast path ($(curl -s -o /dev/null -w '%{http_code}' "http://${ADMIN[warden-fastpath]}/fastpath"))"
fi
warden_case warden-nocache "$(port 30)" "${JWT_ENV[@]}" WARDEN_DECISION_LOG="$WORK/warden-nocache.decisions" \
	WARDEN_POLICY_CACHE_SIZE=0
warden_case grpc-warden "$(port 24)" "${JWT_ENV[@]}" WARDEN_DECISION_LOG="$WORK/grpc-warden.decisions" \
	WARDEN_UPSTREAM_ADDR="$GRPC_APP" WARDEN_UPSTREAM_PROTOCOL=h2c
has_case grpc-warden && BEHIND[grpc-warden]=$GRPC_APP_PID

if has_case ghostunnel; then
	start ghostunnel server "$GHOSTUNNEL" server --listen "127.0.0.1:$(port 40)" --target "$APP" \
		--cert "$WORK/peer/svid.pem" --key "$WORK/peer/svid_key.pem" --cacert "$WORK/peer/bundle.pem" \
		--allow-uri spiffe://warden.local/ns/default/sa/client --quiet=all
	URL[ghostunnel]=https://127.0.0.1:$(port 40)/ UNDER[ghostunnel]=$LAST_PID
	wait_for ghostunnel tcp_up "$(port 40)" || case_failed ghostunnel "did not come up"
fi

if has_case nginx; then
	mkdir -p "$WORK/nginx"
	cat >"$WORK/nginx/nginx.conf" <<EOF
# One process (no master), like one Go sidecar; no access log.
daemon off;
master_process off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $WORK/nginx/body;
	proxy_temp_path $WORK/nginx/proxy;
	fastcgi_temp_path $WORK/nginx/fastcgi;
	uwsgi_temp_path $WORK/nginx/uwsgi;
	scgi_temp_path $WORK/nginx/scgi;
	keepalive_requests 1000000;
	upstream app {
		server $APP;
		keepalive 64;
		keepalive_requests 1000000;
	}
	server {
		listen 127.0.0.1:$(port 50) ssl;
		ssl_certificate $WORK/peer/svid.pem;
		ssl_certificate_key $WORK/peer/svid_key.pem;
		ssl_client_certificate $WORK/peer/bundle.pem;
		ssl_verify_client on;
		ssl_protocols TLSv1.2 TLSv1.3;
		location / {
			proxy_pass http://app;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
}
EOF
	start nginx server nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx.log"
	URL[nginx]=https://127.0.0.1:$(port 50)/ UNDER[nginx]=$LAST_PID
	wait_for nginx tcp_up "$(port 50)" || case_failed nginx "did not come up"
fi

if has_case haproxy; then
	cat "$WORK/peer/svid.pem" "$WORK/peer/svid_key.pem" >"$WORK/peer/haproxy.pem"
	cat >"$WORK/haproxy.cfg" <<EOF
# One process, one thread, like one Go sidecar pinned to one CPU; no log.
global
	nbthread 1
	maxconn 4096
defaults
	mode http
	timeout connect 5s
	timeout client 30s
	timeout server 30s
	http-reuse always
frontend mtls
	bind 127.0.0.1:$(port 60) ssl crt $WORK/peer/haproxy.pem ca-file $WORK/peer/bundle.pem verify required
	default_backend app
backend app
	server app $APP
EOF
	start haproxy server haproxy -db -f "$WORK/haproxy.cfg"
	URL[haproxy]=https://127.0.0.1:$(port 60)/ UNDER[haproxy]=$LAST_PID
	wait_for haproxy tcp_up "$(port 60)" || case_failed haproxy "did not come up"
fi

if has_case caddy; then
	mkdir -p "$WORK/caddy"
	# JSON, not a Caddyfile: every setting explicit. strict_sni_host false is
	# the Caddyfile's insecure_off: with client authentication Caddy would
	# otherwise require the Host to match the SNI, and a client dialling an
	# IP address sends none. No admin endpoint, no automatic HTTPS (no
	# ACME: nothing leaves the machine), no HTTP/3 (UDP) listener, storage
	# and config under the work directory, errors only in its log.
	cat >"$WORK/caddy/caddy.json" <<EOF
{
	"admin": {"disabled": true, "config": {"persist": false}},
	"storage": {"module": "file_system", "root": "$WORK/caddy/data"},
	"logging": {"logs": {"default": {"level": "ERROR"}}},
	"apps": {
		"tls": {
			"certificates": {"load_files": [{"certificate": "$WORK/peer/svid.pem", "key": "$WORK/peer/svid_key.pem", "tags": ["peer"]}]}
		},
		"http": {
			"servers": {
				"mtls": {
					"listen": ["127.0.0.1:$(port 45)"],
					"protocols": ["h1", "h2"],
					"automatic_https": {"disable": true},
					"strict_sni_host": false,
					"tls_connection_policies": [{
						"certificate_selection": {"any_tag": ["peer"]},
						"client_authentication": {
							"ca": {"provider": "file", "pem_files": ["$WORK/peer/bundle.pem"]},
							"mode": "require_and_verify"
						}
					}],
					"routes": [{
						"handle": [{
							"handler": "reverse_proxy",
							"upstreams": [{"dial": "$APP"}],
							"transport": {"protocol": "http", "keep_alive": {"max_idle_conns_per_host": 64}}
						}]
					}]
				}
			}
		}
	}
}
EOF
	start caddy server env HOME="$WORK/caddy" XDG_CONFIG_HOME="$WORK/caddy/config" XDG_DATA_HOME="$WORK/caddy/data" \
		"$CADDY" run --config "$WORK/caddy/caddy.json"
	URL[caddy]=https://127.0.0.1:$(port 45)/ UNDER[caddy]=$LAST_PID
	wait_for caddy tcp_up "$(port 45)" || case_failed caddy "did not come up"
fi

if has_case opa-sidecar; then
	start opa server "$OPA" run --server --addr "127.0.0.1:$(port 71)" --skip-version-check \
		--log-level error --bundle bundle/default
	opa_pid=$LAST_PID
	UNDER[opa-sidecar]=$opa_pid
	if wait_for opa http_ok "http://127.0.0.1:$(port 71)/health?bundles"; then
		start opa-sidecar server "$WORK/opasidecar" -addr "127.0.0.1:$(port 70)" -upstream "$APP" \
			-opa "http://127.0.0.1:$(port 71)/v1/data/warden/authz/allow" -dev-dir "$WARDEN_DEV_DIR"
		URL[opa-sidecar]=https://127.0.0.1:$(port 70)/ UNDER[opa-sidecar]="$LAST_PID $opa_pid"
		wait_for opa-sidecar tcp_up "$(port 70)" || case_failed opa-sidecar "did not come up"
	else
		case_failed opa-sidecar "opa run --server did not come up"
	fi
fi

# case_args CASE: the load generator's arguments for the case, but the
# request headers: TLS with the client SVID, and the gRPC call.
case_args() {
	CASE_ARGS=()
	[[ ${URL[$1]} == https* ]] && CASE_ARGS+=("${TLS[@]}")
	[[ $1 == grpc-* ]] && CASE_ARGS+=("${GRPC[@]}")
	return 0
}

# Every case must answer 200 (gRPC: OK) to the load generator before
# anything is measured.
for c in $CASES; do
	case_args "$c"
	if ! "$WORK/loadgen" -url "${URL[$c]}" "${REQUEST[@]}" "${CASE_ARGS[@]}" -c 1 -n 20 -warmup 0 -d 5s -json >"$WORK/check.json"; then
		case_failed "$c" "the load generator failed against it"
	elif ! grep -q '"errors":0,' "$WORK/check.json"; then
		case_failed "$c" "does not answer 200 (gRPC: OK): $(cat "$WORK/check.json")"
	fi
done
# ... and the full-path wardens verify the token: without it, 401 (gRPC:
# 16 UNAUTHENTICATED).
for c in warden warden-fastpath warden-nocache grpc-warden; do
	has_case $c || continue
	case_args "$c"
	expect=(-expect-status 401)
	[[ $c == grpc-* ]] && expect=(-expect-grpc-code 16)
	if ! "$WORK/loadgen" -url "${URL[$c]}" "${CASE_ARGS[@]}" -c 1 -n 5 -warmup 0 -d 5s "${expect[@]}" -json >"$WORK/check.json"; then
		case_failed "$c" "the load generator failed against it"
	elif ! grep -q '"errors":0,' "$WORK/check.json"; then
		case_failed "$c" "does not refuse a request without a token: $(cat "$WORK/check.json")"
	fi
done

[ -n "${CASES// /}" ] || die "every case failed: $(for c in "${FAILED_ORDER[@]}"; do printf '%s: %s; ' "$c" "${FAILED[$c]}"; done)"

# --- measurement -------------------------------------------------------------
# cpu_ticks PID...: user+system clock ticks of the processes (fields 14 and
# 15 of /proc/PID/stat, counted after the ")" that ends the command name).
# cpu_split PID...: the same as "user system".
cpu_split() {
	local u=0 s=0 p f
	for p in "$@"; do
		# The load generator may have exited already when a run is short
		# and the machine busy: its ticks are then missing, not an error.
		[ -e "/proc/$p/stat" ] || continue
		f=$(<"/proc/$p/stat")
		read -ra f <<<"${f##*) }"
		u=$((u + f[11])) s=$((s + f[12]))
	done
	echo "$u $s"
}
cpu_ticks() {
	local t
	read -ra t <<<"$(cpu_split "$@")"
	echo $((t[0] + t[1]))
}
# lo_packets: packets sent on loopback so far (every one is also received):
# what the fast path saves shows there.
lo_packets() { cat /sys/class/net/lo/statistics/tx_packets; }
# settled_lines FILE [WANT]: the file's line count once it reaches WANT or
# has not grown for a quarter second (warden writes its decision log
# asynchronously), 5 s at most.
settled_lines() {
	local n prev=-1 still=0
	for _ in $(seq 100); do
		n=$(wc -l <"$1")
		[ -n "${2:-}" ] && [ "$n" -ge "$2" ] && break
		if [ "$n" = "$prev" ]; then
			still=$((still + 1))
			[ $still -ge 5 ] && break
		else
			still=0
		fi
		prev=$n
		sleep 0.05
	done
	echo "$n"
}
# busy_ticks: ticks all CPUs spent neither idle nor waiting for I/O, steal
# included (/proc/stat: user nice system idle iowait irq softirq steal).
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# hwm_kib PID...: the sum of the processes' peak resident set (VmHWM).
hwm_kib() {
	local t=0 p
	for p in "$@"; do t=$((t + $(awk '/^VmHWM/ {print $2}' "/proc/$p/status"))); done
	echo "$t"
}
HZ=$(getconf CLK_TCK)
now_ns() { date +%s%N; }
truncate_logs() { for f in "$WORK"/*.decisions "$WORK"/warden*.log "$WORK"/grpc-warden.log; do [ -f "$f" ] && : >"$f"; done; return 0; }
WINDOW=$(awk -v d="$DURATION" 'BEGIN {print d - 0.25}')

RAW=$WORK/raw.jsonl
: >"$RAW"
# measure_once CASE MODE ROUND: one load generator run; its raw JSON line
# goes to $WORK/record. CPU is read over a window inside the measured part
# (from the end of the warmup to a quarter second before the end), while
# the load is steady: for the processes under test, for the load generator
# and the app, and for the whole machine, so that the rest of the machine's
# activity (other builds, steal) shows as "foreign" CPU.
measure_once() {
	local c=$1 mode=$2 round=$3 args json t0 t1 c0 c1 o0 o1 b0 b1 l0 l1 lg under others d0 dlines=null
	case_args "$c"
	args=("${REQUEST[@]}" "${CASE_ARGS[@]}")
	case $mode in
	open) args+=(-rate "$RATE") ;;
	newconn) args+=(-newconn) ;;
	esac
	read -ra under <<<"${UNDER[$c]}"
	# The audit trail: the decision log's lines added by this run, against
	# the requests the load generator sent (warmup included).
	[ -n "${DECISIONS[$c]:-}" ] && d0=$(settled_lines "${DECISIONS[$c]}")
	"${ON_CLIENT_CPU[@]}" timeout -k 5 $((WARMUP + DURATION + 30)) "$WORK/loadgen" -url "${URL[$c]}" "${args[@]}" \
		-c "$CONNS" -d "${DURATION}s" -warmup "${WARMUP}s" -json >"$WORK/run.json" &
	LOADGEN_PID=$!
	sleep "$WARMUP"
	lg=$(<"/proc/$LOADGEN_PID/task/$LOADGEN_PID/children") # timeout's child: the load generator
	others=("${lg%% *}" "${BEHIND[$c]:-$APP_PID}")
	t0=$(now_ns) l0=$(lo_packets) c0=$(cpu_split "${under[@]}") o0=$(cpu_ticks "${others[@]}") b0=$(busy_ticks)
	sleep "$WINDOW"
	t1=$(now_ns) l1=$(lo_packets) c1=$(cpu_split "${under[@]}") o1=$(cpu_ticks "${others[@]}") b1=$(busy_ticks)
	read -ra c0 <<<"$c0"
	read -ra c1 <<<"$c1"
	if ! wait "$LOADGEN_PID"; then
		LOADGEN_PID= MEASURE_ERROR="the load generator failed in round $round, mode $mode"
		return 1
	fi
	LOADGEN_PID=
	for p in "${under[@]}"; do
		if ! kill -0 "$p" 2>/dev/null; then
			MEASURE_ERROR="process $p exited in round $round, mode $mode (log: $c.log)"
			return 1
		fi
	done
	json=$(<"$WORK/run.json")
	if [ -n "${DECISIONS[$c]:-}" ]; then
		local sent
		sent=$(grep -o '"sent":[0-9]*' <<<"$json" | cut -d: -f2)
		dlines=$(($(settled_lines "${DECISIONS[$c]}" $((d0 + sent))) - d0))
	fi
	printf '{"case":"%s","mode":"%s","round":%d,"rate":%d,"conns":%d,"hz":%d,"window_s":%s,"cpu_ticks":%d,"cpu_user_ticks":%d,"cpu_sys_ticks":%d,"other_ticks":%d,"busy_ticks":%d,"lo_packets":%d,"decision_lines":%s,"hwm_kib":%d,"result":%s}\n' \
		"$c" "$mode" "$round" "$([ "$mode" = open ] && echo "$RATE" || echo 0)" "$CONNS" "$HZ" \
		"$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')" \
		$((c1[0] + c1[1] - c0[0] - c0[1])) $((c1[0] - c0[0])) $((c1[1] - c0[1])) $((o1 - o0)) $((b1 - b0)) \
		$((l1 - l0)) "$dlines" "$(hwm_kib "${under[@]}")" "$json" >"$WORK/record"
	truncate_logs
}

# wait_quiet: waits until the machine has been quiet (under 0.1 CPUs busy:
# nothing of ours runs meanwhile) for 3 s in a row, for at most 120 s and
# never beyond what is left of QUIET_WAIT seconds over the whole run.
wait_quiet() {
	local quiet=0 waited=0 b0 b1
	while [ $quiet -lt 3 ] && [ $waited -lt 120 ] && [ "$QUIET_WAIT" -gt 0 ]; do
		b0=$(busy_ticks)
		sleep 1
		b1=$(busy_ticks)
		waited=$((waited + 1)) QUIET_WAIT=$((QUIET_WAIT - 1))
		if [ $((b1 - b0)) -le $((HZ / 10)) ]; then quiet=$((quiet + 1)); else quiet=0; fi
	done
	WAITED=$((WAITED + waited))
}

# measure CASE MODE ROUND: measure_once, measured again (twice at most, each
# time after waiting for the machine to be quiet) when other activity on the
# machine kept more than 0.1 CPUs busy during the run.
REPEATED=() WAITED=0
measure() {
	local attempt line
	for attempt in 1 2 3; do
		if ! measure_once "$@"; then
			case_failed "$1" "$MEASURE_ERROR"
			return
		fi
		line=$("$WORK/report" -line <"$WORK/record")
		if [ $attempt -lt 3 ] && "$WORK/report" -disturbed <"$WORK/record"; then
			echo "$line  (disturbed: measured again)"
			REPEATED+=("round $3 $2 $1")
			wait_quiet
			continue
		fi
		echo "$line"
		cat "$WORK/record" >>"$RAW"
		return
	done
}

n_cases=$(wc -w <<<"$CASES") n_modes=$(wc -w <<<"$MODES") n_runs=0
for mode in $MODES; do for c in $CASES; do [[ $mode == newconn && $c == grpc-* ]] || n_runs=$((n_runs + 1)); done; done
echo "# $ROUNDS rounds x $n_modes modes x $n_cases cases ($n_runs runs a round) x ${WARMUP}+${DURATION}s: about $((ROUNDS * n_runs * (WARMUP + DURATION + 1) / 60 + 1)) min"
echo "# pinning: $pinning"
wait_quiet
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u +%FT%TZ)
for round in $(seq "$ROUNDS"); do
	echo "# round $round/$ROUNDS"
	for mode in $MODES; do
		for c in $CASES; do
			[[ $mode == newconn && $c == grpc-* ]] && continue
			measure "$c" "$mode" "$round"
		done
	done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- after the rounds: fast path counters, system calls ----------------------
# What GET /fastpath says after all the load, for every warden case that
# answers it (warden's shows the fast path off): case<TAB>file lines.
FASTPATH=$WORK/fastpath.tsv
: >"$FASTPATH"
for c in $CASES; do
	[ -n "${ADMIN[$c]:-}" ] || continue
	if curl -sf --max-time 5 -o "$WORK/fastpath.$c.json" "http://${ADMIN[$c]}/fastpath"; then
		printf '%s\t%s\n' "$c" "$WORK/fastpath.$c.json" >>"$FASTPATH"
	fi
done

# traced PID...: every thread of the processes has a tracer (strace is
# attached to all of them).
traced() {
	local p t
	for p in "$@"; do
		for t in /proc/"$p"/task/*/status; do
			[ "$(awk '/^TracerPid/ {print $2}' "$t")" != 0 ] || return 1
		done
	done
}
# count_syscalls CASE: one closed-loop run of SYSCALL_REQUESTS requests
# over CONNS new keep-alive connections (their set-up is counted too), with
# strace -c -f attached to the processes under test; its summary and the
# load generator's result go to $SYSCALLS_FILE.
SYSCALLS_FILE=$WORK/syscalls.jsonl
: >"$SYSCALLS_FILE"
count_syscalls() {
	local c=$1 p under args=() out=$WORK/strace.$1.txt ok=0
	case_args "$c"
	read -ra under <<<"${UNDER[$c]}"
	for p in "${under[@]}"; do args+=(-p "$p"); done
	# timeout passes the INT that ends the count on to strace, which then
	# detaches and writes its table.
	timeout -s INT -k 5 150 strace -c -f -o "$out" "${args[@]}" 2>"$WORK/strace.$c.log" &
	STRACE_PID=$!
	for _ in $(seq 200); do
		traced "${under[@]}" 2>/dev/null && { ok=1; break; }
		kill -0 "$STRACE_PID" 2>/dev/null || break
		sleep 0.05
	done
	if [ $ok = 1 ]; then
		"${ON_CLIENT_CPU[@]}" timeout -k 5 130 "$WORK/loadgen" -url "${URL[$c]}" "${REQUEST[@]}" "${CASE_ARGS[@]}" \
			-c "$CONNS" -n "$SYSCALL_REQUESTS" -warmup 0 -d 120s -json >"$WORK/strace-run.json" || ok=0
	fi
	kill -INT "$STRACE_PID" 2>/dev/null || true
	wait "$STRACE_PID" || true
	STRACE_PID=
	if [ $ok = 1 ] && [ -s "$out" ]; then
		printf '{"case":"%s","strace":"%s","result":%s}\n' "$c" "$out" "$(<"$WORK/strace-run.json")" >>"$SYSCALLS_FILE"
		"$WORK/report" -syscalls "$SYSCALLS_FILE" -syscall-line "$c"
	else
		echo "bench/run.sh: case $c: no system call count (strace: $(tail -1 "$WORK/strace.$c.log" 2>/dev/null))" >&2
	fi
}
if [ "$SYSCALLS" = 1 ]; then
	echo "# system calls per request: strace -c -f on the processes under test, $SYSCALL_REQUESTS requests per case"
	for c in $CASES; do count_syscalls "$c"; done
fi

# --- report ------------------------------------------------------------------
peer_versions() {
	local v=()
	has_case ghostunnel && v+=("ghostunnel v1.8.4 (bench/ghostunnel.sh)")
	has_case nginx && v+=("$(nginx -v 2>&1 | sed 's/.*: //')")
	has_case haproxy && v+=("$(haproxy -v | awk 'NR == 1 {print $1, $3}')")
	# caddy version says "unknown" when built by go install: ask the binary's build information.
	has_case caddy && v+=("Caddy $(go version -m "$CADDY" | awk '$1 == "mod" && $2 == "github.com/caddyserver/caddy/v2" {print $3}') (bench/caddy.sh)")
	has_case opa-sidecar && v+=("OPA $("$OPA" version | awk '/^Version/ {print $2}')")
	local out
	printf -v out '%s, ' "${v[@]}"
	echo "${out%, }"
}
# repeated: " (round 1 closed warden x2; ...)", or nothing.
repeated() {
	[ ${#REPEATED[@]} -eq 0 ] && return
	printf ' (%s)' "$(printf '%s\n' "${REPEATED[@]}" | uniq -c | awk '{n = $1; $1 = ""; printf "%s%s%s", sep, substr($0, 2), (n > 1 ? " x" n : ""); sep = "; "}')"
}
mkdir -p "$OUT"
cases_file=$WORK/cases.tsv
for c in $REQUESTED_CASES; do printf '%s\t%s\n' "$c" "${DESC[$c]}"; done >"$cases_file"
failed_file=$WORK/failed.tsv
for c in "${FAILED_ORDER[@]}"; do printf '%s\t%s\n' "$c" "${FAILED[$c]//$'\n'/ }"; done >"$failed_file"
cgroups=
for c in $REQUESTED_CASES; do [ -n "${CGROUP[$c]:-}" ] && cgroups+="${cgroups:+; }$c in ${CGROUP[$c]}"; done
"$WORK/report" -in "$RAW" -cases "$cases_file" -failed "$failed_file" -syscalls "$SYSCALLS_FILE" -fastpath "$FASTPATH" \
	-md "$OUT/$NAME.md" -json "$OUT/$NAME.json" \
	-plot-dir "$WORK" -png "$NAME.png" \
	-meta "Date: $started" \
	-meta "Host: $(hostname -s), $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -sr)" \
	-meta "Load average (1/5/15 min): $load_before before, $load_after after" \
	-meta "Runs measured again because other activity on the machine kept more than 0.1 CPUs busy: ${#REPEATED[@]}$(repeated); ${WAITED}s spent waiting for it to stop" \
	-meta "warden: $warden_version, $(go version "$WORK/warden" | awk '{print $NF}')" \
	-meta "Peers: $(peer_versions)" \
	-meta "Settings: $ROUNDS rounds of modes ($MODES), ${DURATION}s measured after ${WARMUP}s warmup per run, $CONNS connections, open loop at $RATE req/s" \
	-meta "Pinning: $pinning" \
	-meta "cgroup v2 (under ${CG_ROOT:-none}): ${cgroups:-none}"
if [[ " $MODES " == *" open "* ]]; then
	ltitle="Latency percentiles at $RATE req/s (open loop, keep-alive, $CONNS connections)"
else
	ltitle="Latency percentiles at maximum throughput (closed loop, keep-alive, $CONNS connections)"
fi
newconn=0
[[ " $MODES " == *" newconn "* ]] && newconn=1
gnuplot -e "dir='$WORK'; out='$OUT/$NAME.png'; ltitle='$ltitle'; newconn=$newconn" bench/plot.gp
echo "# wrote $OUT/$NAME.md, $OUT/$NAME.json and $OUT/$NAME.png"
if [ ${#FAILED_ORDER[@]} -gt 0 ]; then
	echo "bench/run.sh: ${#FAILED_ORDER[@]} case(s) failed, listed in the report: ${FAILED_ORDER[*]}" >&2
	exit 3
fi
