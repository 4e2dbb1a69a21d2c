// Package deploy holds warden's Kubernetes manifests (kubectl apply -k
// deploy/): the webhook, the example app and the image. Its own Go is the
// tests that check the manifests fit together and are valid objects; the
// code that runs is in its subpackages (admission, inject, netinit). It
// must hold no code of its own: a manifest's one source is its YAML file
// (the injected sidecar's is deploy/inject's template).
package deploy
