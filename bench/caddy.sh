#!/usr/bin/env bash
# Builds Caddy v2.11.9 (the Go L7 proxy users pick for mTLS, a peer of
# bench/run.sh) into the tools cache, once: a cold build downloads and
# compiles about 200 modules (minutes on 2 CPUs); later runs reuse it.
set -euo pipefail
TOOLS_DIR=${TOOLS_DIR:-$HOME/.cache/warden/tools}
out="$TOOLS_DIR/bin/caddy"
[ -x "$out" ] && exit 0
mkdir -p "$TOOLS_DIR/bin"
echo "# building caddy v2.11.9 into $TOOLS_DIR/bin (once)"
GOBIN="$TOOLS_DIR/bin" go install github.com/caddyserver/caddy/v2/cmd/caddy@v2.11.9
