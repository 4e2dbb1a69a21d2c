// Package cgroup2 finds cgroup v2 directories: the hierarchy's mount
// point, the calling process's own cgroup (from /proc), and a pod's cgroup
// in a node's tree mounted into the caller's container (FindPod, which
// checks the caller is in that pod). It only reads.
//
// It must not create, move into or write cgroups: the agent decides where
// the fast path attaches, and bpf attaches.
package cgroup2
