package spiffe

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// maxRenewalMargin caps RenewalMargin for long-lived SVIDs.
const maxRenewalMargin = time.Minute

// RenewalMargin is how long before its expiry an SVID that has not been
// renewed makes warden unready: a tenth of its lifetime, at most a minute.
// A SPIRE agent renews at about half-life, so a healthy pod never comes
// near it; a pod whose agent is gone stops getting new traffic before its
// handshakes start failing.
func RenewalMargin(leaf *x509.Certificate) time.Duration {
	return min(leaf.NotAfter.Sub(leaf.NotBefore)/10, maxRenewalMargin)
}

// NearExpiry reports whether svid is within its RenewalMargin of expiring,
// or has expired, at now.
func NearExpiry(svid *x509svid.SVID, now time.Time) bool {
	leaf := svid.Certificates[0]
	return !now.Before(leaf.NotAfter.Add(-RenewalMargin(leaf)))
}

// Unexpired wraps src so that an SVID past its NotAfter is refused with an
// error rather than returned: a TLS configuration built on it fails the
// handshake instead of presenting a certificate every peer would reject,
// and the error says why.
func Unexpired(src x509svid.Source) x509svid.Source {
	return unexpired{src}
}

type unexpired struct{ src x509svid.Source }

func (u unexpired) GetX509SVID() (*x509svid.SVID, error) {
	svid, err := u.src.GetX509SVID()
	if err != nil {
		return nil, err
	}
	if exp := svid.Certificates[0].NotAfter; time.Now().After(exp) {
		return nil, fmt.Errorf("spiffe: own X.509-SVID %s expired at %s: not presenting it", svid.ID, exp.UTC().Format(time.RFC3339))
	}
	return svid, nil
}
