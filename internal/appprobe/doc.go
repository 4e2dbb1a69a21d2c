// Package appprobe is the contract between the webhook and the sidecar for
// the app's rewritten probes (WARDEN_APP_PROBES): the kubelet probes warden's
// admin port at /app-health/<container>/<probe>, and warden probes the app
// the way the original probe would have. The webhook encodes the original
// probes with Set.Encode; agent/config parses them with Parse; agent/admin
// serves them.
//
// A probe names a port and a path, never a host: warden always probes
// 127.0.0.1, so no value of WARDEN_APP_PROBES can send a request off the
// pod's loopback.
package appprobe
