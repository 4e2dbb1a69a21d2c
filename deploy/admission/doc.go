// Package admission is a generic Kubernetes admission webhook server: HTTPS
// with a certificate it reads again when its files change (so a certificate
// rotated by cert-manager is served without a restart), AdmissionReview
// (admission.k8s.io/v1) decoding and encoding, a Handler per path, and
// GET /healthz. What to answer is the Handler's business (deploy/inject);
// this package knows nothing about pods or warden.
//
// It reports each answered review and each certificate event through
// callbacks, so the caller logs them; it never logs by itself.
package admission
