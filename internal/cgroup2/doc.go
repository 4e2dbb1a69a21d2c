// Package cgroup2 finds cgroup v2 directories: the hierarchy's mount
// point and the calling process's own cgroup. It reads /proc and nothing
// else, and changes nothing.
//
// It must not create, move into or write cgroups: the agent decides where
// the fast path attaches, and bpf attaches.
package cgroup2
