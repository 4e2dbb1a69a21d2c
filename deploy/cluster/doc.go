// Package cluster runs a real single-node Kubernetes for the TestCluster
// tests: the API server and etcd of deploy/kubetest, kube-controller-manager
// and kube-scheduler, a kubelet, and containerd with runc and the CNI bridge
// plugins (Debian's), all in a temporary directory, with images built
// locally and imported (a pause image, warden's image as `make image` builds
// it). .ci/cluster-tools.sh installs and builds what it needs (`make
// cluster`).
//
// It must leave nothing behind: its cleanup stops the pods, the runtime and the
// kubelet, unmounts what they mounted under the directory, and removes the
// CNI bridge, the pods' network namespaces and the kubelet's cgroups.
//
// The harness is in _test.go files (node_test.go, images_test.go,
// spire_test.go), beside the scenarios: like deploy/kubetest's users, only
// tests may depend on a test API server, and nothing else needs a node.
//
// Without the tools or root, a test skips, unless
// WARDEN_REQUIRE_PRIVILEGED_TESTS is set (CI sets it): then it fails,
// naming what is missing and the make target that installs it.
package cluster
