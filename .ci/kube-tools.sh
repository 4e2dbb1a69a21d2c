#!/usr/bin/env bash
# Builds the Kubernetes tools the TestAPIServer tests run on loopback
# (deploy/..., cmd/warden): kube-apiserver, etcd and kubectl, into
# ${WARDEN_TOOLS_DIR:-$HOME/.cache/warden/tools}/bin, once; later runs find
# them there and do nothing. With arguments, it builds the tools they name
# instead (.ci/cluster-tools.sh: kubelet, kube-controller-manager,
# kube-scheduler, from the same release).
#
# `go install k8s.io/kubernetes/cmd/kube-apiserver@v1.37.2` is refused: the
# module's go.mod replaces the k8s.io/* staging modules with ./staging, which
# the published module zip does not contain. So this copies the module
# cache's k8s.io/kubernetes@$KUBE_VERSION, drops go.work and vendor/, turns
# each ./staging replace into a requirement on the published staging module
# ($STAGING_VERSION), and builds with GOWORK=off -mod=mod. etcd comes from
# the same module graph (the go.etcd.io/etcd/server/v3 version that this
# Kubernetes release pins), so the two always match.
#
# Cold, on 2 cores: about 4.5 minutes for kube-apiserver and etcd, 1.5 more
# for kubectl, 3 GB peak; the kubelet 6.9 CPU-minutes, kube-controller-manager
# and kube-scheduler 3 more (10.7 and 4.7 minutes wall on a machine busy with
# other builds, the build cache warm from the API server's). Warm: nothing
# to do.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
STAGING_VERSION=${STAGING_VERSION:-v0.${KUBE_VERSION#v1.}}
TOOLS_DIR=${WARDEN_TOOLS_DIR:-$HOME/.cache/warden/tools}
BIN=$TOOLS_DIR/bin
GO=${GO:-go}

# Each tool: the binary's name and the package it is built from. The
# arguments, when given, name the tools to build (.ci/cluster-tools.sh asks
# for the node's: kubelet, kube-controller-manager, kube-scheduler);
# without them, the API server's three.
all_tools=(
	"kube-apiserver ./cmd/kube-apiserver"
	"etcd go.etcd.io/etcd/server/v3"
	"kubectl ./cmd/kubectl"
	"kubelet ./cmd/kubelet"
	"kube-controller-manager ./cmd/kube-controller-manager"
	"kube-scheduler ./cmd/kube-scheduler"
)
[ $# -eq 0 ] && set -- kube-apiserver etcd kubectl
tools=()
for want in "$@"; do
	found=
	for t in "${all_tools[@]}"; do
		if [ "${t%% *}" = "$want" ]; then
			tools+=("$t")
			found=1
		fi
	done
	if [ -z "$found" ]; then
		echo "kube-tools: unknown tool $want" >&2
		exit 2
	fi
done

# A binary is current when it exists beside a stamp naming the version.
missing=()
find_missing() {
	missing=()
	for t in "${tools[@]}"; do
		name=${t%% *}
		if [ ! -x "$BIN/$name" ] || [ ! -e "$BIN/.$name-$KUBE_VERSION" ]; then
			missing+=("$t")
		fi
	done
}
find_missing
[ ${#missing[@]} -eq 0 ] && exit 0

# One build at a time (make -j, two checkouts): the second waits, then
# finds the binaries the first built.
mkdir -p "$BIN"
exec 9>"$TOOLS_DIR/.kube-tools.lock"
flock 9
find_missing
[ ${#missing[@]} -eq 0 ] && exit 0

src=$TOOLS_DIR/src/kubernetes-$KUBE_VERSION
echo "kube-tools: building ${missing[*]%% *} ($KUBE_VERSION) into $BIN (several minutes cold)" >&2

(cd "$TOOLS_DIR" && GOWORK=off GOFLAGS=-mod=mod "$GO" mod download k8s.io/kubernetes@"$KUBE_VERSION")
modsrc=$("$GO" env GOMODCACHE)/k8s.io/kubernetes@$KUBE_VERSION

rm -rf "$src"
mkdir -p "$(dirname "$src")"
cp -r "$modsrc" "$src"
chmod -R u+w "$src"
trap 'rm -rf "$src"' EXIT
cd "$src"
rm -rf go.work go.work.sum vendor

# Every ./staging replace becomes a requirement on the published module.
edits=()
while read -r mod; do
	edits+=("-dropreplace=$mod" "-require=$mod@$STAGING_VERSION")
done < <(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' go.mod)
if [ ${#edits[@]} -eq 0 ]; then
	echo "kube-tools: no ./staging replace lines in $src/go.mod" >&2
	exit 1
fi
GOWORK=off "$GO" mod edit "${edits[@]}"

# What `kube-apiserver --version` and /version report.
pkg=k8s.io/component-base/version
minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
ldflags="-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
for t in "${missing[@]}"; do
	name=${t%% *} pkgpath=${t#* }
	start=$SECONDS
	"$GO" build -trimpath -ldflags "$ldflags" -o "$BIN/$name.tmp" "$pkgpath"
	mv "$BIN/$name.tmp" "$BIN/$name"
	touch "$BIN/.$name-$KUBE_VERSION"
	echo "kube-tools: $BIN/$name built in $((SECONDS - start))s" >&2
done
