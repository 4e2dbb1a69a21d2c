package admission

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// checkEvery bounds how often the certificate files are looked at: on a
// handshake, at most once per interval.
const checkEvery = time.Second

// certReloader serves the key pair in two files and loads it again when
// either file changes (size, modification time or inode: a Secret volume
// swaps a symlink, cert-manager rewrites the Secret). A pair that fails to
// load (a half-written file, a key that does not match) is reported once and
// the previous one is served meanwhile.
type certReloader struct {
	certFile, keyFile string
	onLoad            func(*x509.Certificate)
	onError           func(error)

	cur atomic.Pointer[keyPair]

	mu         sync.Mutex // one reload at a time; guards the fields below
	nextCheck  time.Time
	lastFailed stamps // the files as they were when they last failed to load
	statFailed bool   // the files could not be read at the last check
}

type keyPair struct {
	cert  *tls.Certificate
	files stamps
}

type stamp struct {
	size, mod int64 // mod: modification time, Unix nanoseconds
	ino       uint64
}

type stamps [2]stamp

func newCertReloader(certFile, keyFile string, onLoad func(*x509.Certificate), onError func(error)) (*certReloader, error) {
	l := &certReloader{certFile: certFile, keyFile: keyFile, onLoad: onLoad, onError: onError}
	st, err := l.stat()
	if err != nil {
		return nil, err
	}
	if err := l.load(st); err != nil {
		return nil, err
	}
	return l, nil
}

// getCertificate is tls.Config.GetCertificate.
func (l *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l.maybeReload(time.Now())
	return l.cur.Load().cert, nil
}

func (l *certReloader) maybeReload(now time.Time) {
	if !l.mu.TryLock() {
		return // another handshake is looking
	}
	defer l.mu.Unlock()
	if now.Before(l.nextCheck) {
		return
	}
	l.nextCheck = now.Add(checkEvery)
	st, err := l.stat()
	switch {
	case err != nil:
		if !l.statFailed {
			l.statFailed = true
			l.report(fmt.Errorf("%w (serving the previous certificate)", err))
		}
		return
	case st == l.cur.Load().files || st == l.lastFailed:
		l.statFailed = false
		return
	}
	l.statFailed = false
	if err := l.load(st); err != nil {
		l.lastFailed = st
		l.report(fmt.Errorf("%w (serving the previous certificate)", err))
	}
}

func (l *certReloader) load(st stamps) error {
	pair, err := tls.LoadX509KeyPair(l.certFile, l.keyFile)
	if err != nil {
		return fmt.Errorf("admission: load certificate %s and key %s: %w", l.certFile, l.keyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("admission: parse certificate %s: %w", l.certFile, err)
		}
	}
	l.cur.Store(&keyPair{cert: &pair, files: st})
	l.lastFailed = stamps{}
	if l.onLoad != nil {
		l.onLoad(pair.Leaf)
	}
	return nil
}

func (l *certReloader) stat() (stamps, error) {
	var st stamps
	for i, f := range []string{l.certFile, l.keyFile} {
		info, err := os.Stat(f)
		if err != nil {
			return st, fmt.Errorf("admission: certificate file: %w", err)
		}
		st[i] = stamp{size: info.Size(), mod: info.ModTime().UnixNano()}
		if sys, ok := info.Sys().(*syscall.Stat_t); ok {
			st[i].ino = sys.Ino
		}
	}
	return st, nil
}

func (l *certReloader) report(err error) {
	if l.onError != nil {
		l.onError(err)
	}
}
