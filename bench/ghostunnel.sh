#!/usr/bin/env bash
# Builds ghostunnel v1.8.4 (the Go SPIFFE-aware mTLS proxy warden is compared
# with) into the tools cache. The module proxy refuses `go install` for it;
# downloading the module and building inside the module cache works.
set -euo pipefail
TOOLS_DIR=${TOOLS_DIR:-$HOME/.cache/warden/tools}
out="$TOOLS_DIR/bin/ghostunnel"
[ -x "$out" ] && exit 0
mkdir -p "$TOOLS_DIR/bin"
export GOFLAGS=-mod=mod
go mod download github.com/ghostunnel/ghostunnel@v1.8.4
cd "$(go env GOMODCACHE)/github.com/ghostunnel/ghostunnel@v1.8.4"
go build -o "$out" .
