#!/usr/bin/env bash
# Sets up what the TestCluster tests (deploy/cluster) run beside the API
# server and etcd of .ci/kube-tools.sh: a single node of Kubernetes.
#   - containerd and runc, and the CNI plugins (bridge, host-local,
#     loopback), from Debian, installed with apt-get when missing (and
#     iptables and ca-certificates, which warden's image holds);
#   - the kubelet, kube-controller-manager and kube-scheduler, built by
#     .ci/kube-tools.sh from the same Kubernetes release as the API server
#     ($KUBE_VERSION) into ${WARDEN_TOOLS_DIR:-$HOME/.cache/warden/tools}/bin.
# Idempotent: a second run finds everything and does nothing. The images
# (pause, warden, the demo app) are built by the test itself, never pulled.
#
# Cold: 10 CPU-minutes of builds and about 20 s of apt-get (README, "The
# real-cluster test"). Warm: under a second.
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] ||
	need+=(containernetworking-plugins)
command -v nsenter >/dev/null || need+=(util-linux)
# The test builds warden's image as `make image` does: Debian's iptables and
# trust roots go into it.
[ -x /usr/sbin/xtables-nft-multi ] || need+=(iptables)
[ -e /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "cluster-tools: ${need[*]} missing, and installing them needs root (apt-get)" >&2
		exit 1
	fi
	echo "cluster-tools: apt-get install ${need[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# --no-install-recommends; and the packages' service scripts do not
	# start containerd where there is no init system: the test starts its
	# own, with its own configuration and socket.
	apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

exec ./kube-tools.sh kubelet kube-controller-manager kube-scheduler
