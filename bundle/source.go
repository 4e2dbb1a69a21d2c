package bundle

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	opabundle "github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/loader/filter"

	"github.com/warden-sidecar/warden/internal/fetch"
	"github.com/warden-sidecar/warden/internal/redact"
)

// defaultBundle is the policy shipped in the binary ("all:" keeps .manifest).
//
//go:embed all:default
var defaultBundle embed.FS

// A source produces a bundle's files. fetch returns nil, nil when the source
// has not changed since the last snapshot it returned.
type source interface {
	fetch(ctx context.Context) (*snapshot, error)
	// changes reports whether polling can ever find something new.
	changes() bool
	// forget makes the next fetch return the content even if unchanged.
	forget()
	String() string
}

// snapshot is a bundle's files read into memory, so that what is verified,
// digested and parsed is one and the same content, whatever happens to the
// source meanwhile.
type snapshot struct {
	files   []file // sorted by path
	digest  [sha256.Size]byte
	trusted bool // part of the binary: signatures are not required
	// bad is set when a complete download or file could not be unpacked: a
	// verdict on the content (digest is then of the archive), not a failure
	// to fetch it, so it is not retried until the content changes.
	bad error
}

type file struct {
	path string // slash-separated, relative, clean (".manifest", "x/data.json")
	data []byte
}

func newSnapshot(files []file) (*snapshot, error) {
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.path, b.path) })
	h := sha256.New()
	var n [8]byte
	for i, f := range files {
		if i > 0 && files[i-1].path == f.path {
			return nil, fmt.Errorf("file %s appears twice", f.path)
		}
		binary.BigEndian.PutUint64(n[:], uint64(len(f.path)))
		h.Write(n[:])
		h.Write([]byte(f.path))
		binary.BigEndian.PutUint64(n[:], uint64(len(f.data)))
		h.Write(n[:])
		h.Write(f.data)
	}
	s := &snapshot{files: files}
	h.Sum(s.digest[:0])
	return s, nil
}

func newSource(src string, fetchOpts []fetch.Option) (source, error) {
	switch {
	case src == "":
		return &embeddedSource{}, nil
	case strings.Contains(src, "://"):
		u, err := url.Parse(src)
		if err != nil {
			// url.Parse's error quotes the whole URL: keep only its reason.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, fmt.Errorf("bundle: source is not a valid URL: %w", err)
		}
		name := redact.URL(src)
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("bundle: source %s: want an http(s):// URL, a .tar.gz file or a directory", name)
		}
		opts := append([]fetch.Option{fetch.WithMaxBytes(maxBundleBytes), fetch.WithTimeouts(fetch.Timeouts{Total: fetchTimeout})}, fetchOpts...)
		return &urlSource{url: src, name: name, fetcher: fetch.New(opts...)}, nil
	case strings.HasSuffix(src, ".tar.gz") || strings.HasSuffix(src, ".tgz"):
		return &tarballSource{path: src}, nil
	default:
		return &dirSource{path: src}, nil
	}
}

// readLoader reads every file an OPA loader yields, within maxBundleBytes.
func readLoader(l opabundle.DirectoryLoader) ([]file, error) {
	var files []file
	var total int64
	for {
		d, err := l.NextFile()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		n, err := d.Read(&buf, maxBundleBytes+1-total)
		_ = d.Close()
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s: %w", d.Path(), err)
		}
		if total += n; total > maxBundleBytes {
			return nil, fmt.Errorf("bundle expands to more than %d MiB", maxBundleBytes>>20)
		}
		p, err := cleanPath(d.Path())
		if err != nil {
			return nil, err
		}
		files = append(files, file{path: p, data: buf.Bytes()})
	}
}

// cleanPath turns a loader's path ("/x/a.rego", "./x/a.rego") into "x/a.rego".
func cleanPath(p string) (string, error) {
	c := strings.TrimPrefix(path.Clean("/"+filepath.ToSlash(p)), "/")
	if c == "" || c == "." {
		return "", fmt.Errorf("file %q has no name", p)
	}
	return c, nil
}

// embeddedSource is bundle/default, compiled into the binary.
type embeddedSource struct{ done bool }

func (s *embeddedSource) String() string { return "embedded:bundle/default" }
func (s *embeddedSource) changes() bool  { return false }
func (s *embeddedSource) forget()        { s.done = false }

func (s *embeddedSource) fetch(context.Context) (*snapshot, error) {
	if s.done {
		return nil, nil
	}
	sub, err := fs.Sub(defaultBundle, "default")
	if err != nil {
		return nil, &LoadError{Source: s.String(), Stage: "read", Err: err}
	}
	l, err := opabundle.NewFSLoader(sub)
	if err != nil {
		return nil, &LoadError{Source: s.String(), Stage: "read", Err: err}
	}
	files, err := readLoader(l)
	if err != nil {
		return nil, &LoadError{Source: s.String(), Stage: "read", Err: err}
	}
	snap, err := newSnapshot(files)
	if err != nil {
		return nil, &LoadError{Source: s.String(), Stage: "read", Err: err}
	}
	snap.trusted = true
	s.done = true
	return snap, nil
}

// dirSource is a bundle directory. A Kubernetes ConfigMap or Secret volume
// works: its "..data" indirection is skipped and the symlinks it publishes are
// followed.
type dirSource struct {
	path string
	seen [sha256.Size]byte // stat fingerprint of the last snapshot
	have bool
}

func (s *dirSource) String() string { return s.path }
func (s *dirSource) changes() bool  { return true }
func (s *dirSource) forget()        { s.have = false }

func (s *dirSource) fetch(context.Context) (*snapshot, error) {
	fp, err := s.fingerprint()
	if err != nil {
		return nil, &LoadError{Source: s.path, Stage: "read", Err: err}
	}
	if s.have && fp == s.seen {
		return nil, nil
	}
	root := filepath.ToSlash(filepath.Clean(s.path))
	l := opabundle.NewDirectoryLoader(s.path).
		WithFollowSymlinks(true).
		WithSizeLimitBytes(maxBundleBytes).
		WithFilter(func(p string, info fs.FileInfo, _ int) bool {
			return strings.HasPrefix(info.Name(), "..") && filepath.ToSlash(filepath.Clean(p)) != root
		})
	files, err := readLoader(l)
	if err != nil {
		return nil, &LoadError{Source: s.path, Stage: "read", Err: err}
	}
	snap, err := newSnapshot(files)
	if err != nil {
		return nil, &LoadError{Source: s.path, Stage: "read", Err: err}
	}
	// A file changed while it was read shows up at the next poll, because the
	// fingerprint was taken before reading.
	s.seen, s.have = fp, true
	return snap, nil
}

// fingerprint digests the name, size, mode and mtime of every file the loader
// would read, so an unchanged directory costs a few stat calls per poll.
func (s *dirSource) fingerprint() ([sha256.Size]byte, error) {
	h := sha256.New()
	err := filepath.WalkDir(s.path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != s.path && strings.HasPrefix(d.Name(), "..") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		info, err := os.Stat(p) // follows the symlinks the loader follows
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%q %d %d %d\n", p, info.Size(), info.Mode(), info.ModTime().UnixNano())
		return nil
	})
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum, err
}

// tarballSource is a .tar.gz file on disk.
type tarballSource struct {
	path  string
	size  int64
	mtime time.Time
	have  bool
}

func (s *tarballSource) String() string { return s.path }
func (s *tarballSource) changes() bool  { return true }
func (s *tarballSource) forget()        { s.have = false }

func (s *tarballSource) fetch(context.Context) (*snapshot, error) {
	fail := func(err error) (*snapshot, error) {
		return nil, &LoadError{Source: s.path, Stage: "read", Err: err}
	}
	f, err := os.Open(s.path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if s.have && info.Size() == s.size && info.ModTime().Equal(s.mtime) {
		return nil, nil
	}
	raw, err := fetch.ReadAll(f, maxBundleBytes)
	if err != nil {
		return fail(err)
	}
	s.size, s.mtime, s.have = info.Size(), info.ModTime(), true
	return untar(raw, s.path), nil
}

// untar reads a bundle archive with OPA's tarball loader. That loader expands
// the whole archive in memory, so the expanded size is checked first: a small
// gzip bomb must not exhaust the sidecar's memory.
func untar(raw []byte, base string) *snapshot {
	snap, err := unpack(raw, base)
	if err != nil {
		return &snapshot{digest: sha256.Sum256(raw), bad: err}
	}
	return snap
}

func unpack(raw []byte, base string) (*snapshot, error) {
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("archive read failed: %w", err)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(zr, maxBundleBytes+1))
	if err != nil {
		return nil, fmt.Errorf("archive read failed: %w", err)
	}
	if n > maxBundleBytes {
		return nil, fmt.Errorf("bundle expands to more than %d MiB", maxBundleBytes>>20)
	}
	l := opabundle.NewTarballLoaderWithBaseURL(bytes.NewReader(raw), base).WithSizeLimitBytes(maxBundleBytes)
	files, err := readLoader(l)
	if err != nil {
		return nil, err
	}
	return newSnapshot(files)
}

// urlSource is a bundle served over HTTP, polled with If-None-Match. Its
// URL's userinfo and query (a signed URL's signature) are sent, and never
// shown: name, in errors and Status, is scheme://host/path, and the
// fetcher's errors show no more.
type urlSource struct {
	url     string // what is fetched, credentials included
	name    string // redact.URL(url)
	fetcher *fetch.Fetcher
	etag    string // of the last complete download
}

func (s *urlSource) String() string { return s.name }
func (s *urlSource) changes() bool  { return true }
func (s *urlSource) forget()        { s.etag = "" }

func (s *urlSource) fetch(ctx context.Context) (*snapshot, error) {
	doc, err := s.fetcher.Fetch(ctx, s.url, s.etag)
	if err != nil {
		return nil, &LoadError{Source: s.name, Stage: "fetch", Err: err}
	}
	if doc.NotModified {
		return nil, nil
	}
	// The download is complete: whatever it holds, asking again for the same
	// ETag would give the same verdict.
	s.etag = doc.ETag
	return untar(doc.Body, s.name), nil
}

// memLoader serves a snapshot to OPA's bundle.Reader. Paths are slash-rooted,
// as OPA's own directory loader yields them.
type memLoader struct {
	files []file
	next  int
}

func (m *memLoader) NextFile() (*opabundle.Descriptor, error) {
	if m.next >= len(m.files) {
		return nil, io.EOF
	}
	f := m.files[m.next]
	m.next++
	p := "/" + f.path
	return opabundle.NewDescriptor(p, p, bytes.NewBuffer(f.data)), nil
}

// The snapshot is already filtered and bounded: these options are no-ops.
func (m *memLoader) WithFilter(filter.LoaderFilter) opabundle.DirectoryLoader      { return m }
func (m *memLoader) WithPathFormat(opabundle.PathFormat) opabundle.DirectoryLoader { return m }
func (m *memLoader) WithSizeLimitBytes(int64) opabundle.DirectoryLoader            { return m }
func (m *memLoader) WithFollowSymlinks(bool) opabundle.DirectoryLoader             { return m }
