package openapi

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Store holds the Spec in force and replaces it when its file changes.
type Store struct {
	path string
	log  zerolog.Logger
	spec atomic.Pointer[Spec]

	// Watch's state, owned by its goroutine.
	seen   fileStat          // the file as last read
	digest [sha256.Size]byte // of the content last read, loaded or not
}

type fileStat struct {
	mtime time.Time
	size  int64
}

// NewStore loads the document at path. An error means there is no spec to
// enforce: the caller stops warden (and names its variable: the error
// names the file).
func NewStore(path string, log zerolog.Logger) (*Store, error) {
	s := &Store{path: path, log: log}
	st, data, err := s.read()
	if err != nil {
		return nil, err
	}
	spec, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	s.seen, s.digest = st, sha256.Sum256(data)
	s.spec.Store(spec)
	s.logLoaded(spec)
	return s, nil
}

// Spec is the document in force.
func (s *Store) Spec() *Spec { return s.spec.Load() }

// Watch polls the file every interval until ctx is done (it blocks: run it
// in a goroutine the caller owns). A change of modification time or size
// makes it read the file; new content is compiled and, if it loads,
// replaces the Spec in force (event openapi_loaded). Content that does not
// load leaves the Spec in force and is logged once (event
// openapi_reload_failed), until the file changes again.
func (s *Store) Watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.poll()
		}
	}
}

// poll checks the file once.
func (s *Store) poll() {
	fi, err := os.Stat(s.path)
	if err != nil {
		// A ConfigMap update swaps a symlink: the file may be missing for
		// a moment. Keep the spec; say so once.
		if s.seen != (fileStat{}) {
			s.seen = fileStat{}
			s.failed(err)
		}
		return
	}
	if (fileStat{fi.ModTime(), fi.Size()}) == s.seen {
		return
	}
	st, data, err := s.read()
	if err != nil {
		s.failed(err)
		return
	}
	s.seen = st
	digest := sha256.Sum256(data)
	if digest == s.digest {
		return // touched, not changed; or the failed content again
	}
	s.digest = digest
	spec, err := Parse(data, s.path)
	if err != nil {
		s.failed(err)
		return
	}
	s.spec.Store(spec)
	s.logLoaded(spec)
}

// read reads the file and the stat that goes with it, taken before the
// content so that a write in between is seen again on the next poll.
func (s *Store) read() (fileStat, []byte, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return fileStat{}, nil, fmt.Errorf("openapi: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileStat{}, nil, fmt.Errorf("openapi: %w", err)
	}
	data, err := readAtMost(f, MaxSpecBytes)
	if err != nil {
		return fileStat{}, nil, fmt.Errorf("openapi: %s: %w", s.path, err)
	}
	return fileStat{fi.ModTime(), fi.Size()}, data, nil
}

func (s *Store) failed(err error) {
	cur := s.spec.Load()
	s.log.Error().Str("event", "openapi_reload_failed").Str("file", s.path).
		Str("revision", cur.Revision()).Err(err).Msg("OpenAPI document not loaded; the previous one stays in force")
}

func (s *Store) logLoaded(spec *Spec) {
	s.log.Info().Str("event", "openapi_loaded").Str("file", s.path).
		Str("revision", spec.Revision()).Int("operations", spec.Operations()).Msg("OpenAPI document loaded")
}
