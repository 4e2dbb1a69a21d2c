// Package inject decides whether warden goes into a pod and computes the
// change: a pure function from a Pod (and the namespace's standing, which
// the webhook entry that called knows from its namespaceSelector) to an
// RFC 6902 JSON patch, made by diffing the pod before and after with
// gomodules.xyz/jsonpatch. The injected containers and volume come from one
// embedded template, sidecar.yaml, which deploy/ ships as it is.
//
// The pod's warden.io/<name> annotations become the WARDEN_<NAME>
// environment variables of the container that reads them, validated with
// agent/config's own parsers; an unknown or invalid annotation refuses the
// pod with a message that names it. A pod that is left alone gets a Reason
// code, never an error. warden's container drops every capability and gets
// NET_ADMIN, BPF and PERFMON back only when its settings make it load the
// eBPF program (ebpf mode, or auto with a connection or packet rate).
//
// It does not serve HTTP or read certificates (deploy/admission does), and
// it never reads the environment of the process it runs in.
package inject
