package spiffe

import (
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Source is what warden needs from an identity provider: its own X.509-SVID
// and the trust bundles to verify peers with. go-spiffe's
// workloadapi.X509Source satisfies it, and so does DevSource.
type Source interface {
	x509svid.Source
	x509bundle.Source
}
