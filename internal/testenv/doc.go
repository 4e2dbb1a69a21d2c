// Package testenv is what warden's tests need from their environment,
// written once: the rule for tests that need privileges or a tool, the
// processes such tests run (etcd, kube-apiserver, SPIRE), free loopback
// ports, and waiting for a condition with a deadline instead of a sleep.
//
// The skip rule: a test that lacks root or a tool skips, unless
// WARDEN_REQUIRE_PRIVILEGED_TESTS is set (CI and `make unit` set it), in
// which case it fails, so that a run meant to exercise the kernel, SPIRE
// or the API server never passes by skipping them.
//
// Only tests import it. It must not import any other warden package; it
// reads the one variable above and nothing else of the environment.
package testenv
