// Package bpftest gives warden's privileged tests what they need to send real
// packets across a real link: network namespaces joined by a veth pair,
// created by the test and removed when it ends. It also decides whether such
// a test may skip: only without root, and never when
// WARDEN_REQUIRE_PRIVILEGED_TESTS is set (CI sets it).
//
// It is for tests only: nothing outside _test.go files may import it
// (TestLayout checks).
package bpftest
