package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// What the image is; the Dockerfile says the same (TestDockerfileAgrees).
const (
	BinaryPath = "/usr/local/bin/warden"
	User       = "1337:1337"
	PathEnv    = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// xtablesMulti is iptables' nft backend; the names `warden init` runs
	// link to it (Debian's alternatives, set by a maintainer script the
	// image never runs, would point them there too).
	xtablesMulti = "/usr/sbin/xtables-nft-multi"
	// caBundle is Debian's ca-certificates bundle, one of the files Go's
	// crypto/x509 looks for on Linux.
	caBundle = "/etc/ssl/certs/ca-certificates.crt"
)

// iptablesNames are the commands warden init runs (deploy/netinit), and
// the two plain ones for whoever debugs the pod with kubectl debug.
var iptablesNames = []string{"iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore", "iptables", "ip6tables"}

// Capabilities are warden's file capabilities: CAP_NET_ADMIN (12),
// CAP_PERFMON (38) and CAP_BPF (39), permitted, not effective, as
// `setcap cap_net_admin,cap_bpf,cap_perfmon+p` writes them
// (struct vfs_cap_data, revision 2: magic_etc, then permitted and
// inheritable for bits 0-31 and 32-63, little-endian).
func Capabilities() []byte {
	const revision2 = 0x02000000
	caps := uint64(1)<<12 | uint64(1)<<38 | uint64(1)<<39
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], revision2)
	binary.LittleEndian.PutUint32(b[4:], uint32(caps))
	binary.LittleEndian.PutUint32(b[12:], uint32(caps>>32))
	return b
}

// CapabilityXattr is the extended attribute that holds file capabilities;
// in a layer's tar it is the PAX record SCHILY.xattr.<name>, which
// containerd and Docker apply when they unpack the layer.
const CapabilityXattr = "security.capability"

// Options say what to build from.
type Options struct {
	Binary  string // warden, static
	Sysroot string // where iptables is installed
	Version string
	Ref     string
	Created time.Time
}

// File is one entry of the image's only layer.
type File struct {
	Path     string // absolute
	Type     byte   // tar.TypeDir, tar.TypeReg or tar.TypeSymlink
	Mode     int64
	Linkname string
	Src      string // host file of a tar.TypeReg
	Xattrs   map[string]string
}

// Collect lists the image's files, parents before children: the binary,
// then iptables with the closure of what its ELF files load.
func Collect(o Options) ([]File, error) {
	if err := checkStatic(o.Binary); err != nil {
		return nil, err
	}
	c := &collector{root: o.Sysroot, seen: map[string]bool{}}
	for _, d := range []string{"/usr", "/usr/local", "/usr/local/bin"} {
		c.put(File{Path: d, Type: tar.TypeDir, Mode: 0o755})
	}
	c.put(File{Path: BinaryPath, Type: tar.TypeReg, Mode: 0o755, Src: o.Binary,
		Xattrs: map[string]string{CapabilityXattr: string(Capabilities())}})
	c.put(File{Path: "/tmp", Type: tar.TypeDir, Mode: 0o1777})

	// The system's trust roots, for what warden fetches over HTTPS
	// (policy bundles, JWKS) without a CA of its own: Go reads this file.
	if err := c.add(caBundle); err != nil {
		return nil, fmt.Errorf("trust roots (apt-get install ca-certificates): %w", err)
	}
	if err := c.add(xtablesMulti); err != nil {
		return nil, fmt.Errorf("iptables (apt-get install iptables): %w", err)
	}
	for _, name := range iptablesNames {
		c.put(File{Path: "/usr/sbin/" + name, Type: tar.TypeSymlink, Mode: 0o777, Linkname: path.Base(xtablesMulti)})
	}
	// The extensions (tcp, owner, REDIRECT, ...) iptables dlopens.
	ext, err := c.xtablesDir()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(c.root, ext))
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if err := c.add(path.Join(ext, e.Name())); err != nil {
			return nil, err
		}
	}
	for len(c.elves) > 0 { // the libraries each ELF file needs, until none is new
		p := c.elves[0]
		c.elves = c.elves[1:]
		if err := c.needs(p); err != nil {
			return nil, err
		}
	}
	return c.files, c.err
}

// checkStatic refuses a binary that loads anything: the image has no
// libc for warden.
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("-binary %s: %w", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("-binary %s: dynamically linked; build it with CGO_ENABLED=0", bin)
		}
	}
	return nil
}

type collector struct {
	root  string
	files []File
	seen  map[string]bool
	elves []string // regular files added, to scan for the libraries they need
	err   error
}

func (c *collector) put(f File) {
	if !c.seen[f.Path] {
		c.seen[f.Path] = true
		c.files = append(c.files, f)
	}
}

// add copies the host path p (under root) into the image as it is there:
// a symlink as a symlink (and what it points to), a directory, a file.
// Its parent is resolved first, so that a file reached through a symlinked
// directory (/lib → usr/lib on Debian) lands in the real directory and the
// symlink is in the image too.
func (c *collector) add(p string) error {
	dir, err := c.resolveDir(path.Dir(p))
	if err != nil {
		return err
	}
	q := path.Join(dir, path.Base(p))
	if c.seen[q] {
		return nil
	}
	fi, err := os.Lstat(filepath.Join(c.root, q))
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(filepath.Join(c.root, q))
		if err != nil {
			return err
		}
		c.put(File{Path: q, Type: tar.TypeSymlink, Mode: 0o777, Linkname: target})
		if !path.IsAbs(target) {
			target = path.Join(dir, target)
		}
		return c.add(target)
	case fi.IsDir():
		c.put(File{Path: q, Type: tar.TypeDir, Mode: int64(fi.Mode().Perm())})
	case fi.Mode().IsRegular():
		c.put(File{Path: q, Type: tar.TypeReg, Mode: int64(fi.Mode().Perm()), Src: filepath.Join(c.root, q)})
		c.elves = append(c.elves, q)
	default:
		return fmt.Errorf("%s: neither file, directory nor symlink", q)
	}
	return nil
}

// resolveDir is the real path of the directory d, with each directory and
// symlink on the way added to the image.
func (c *collector) resolveDir(d string) (string, error) {
	if d == "/" {
		return d, nil
	}
	parent, err := c.resolveDir(path.Dir(d))
	if err != nil {
		return "", err
	}
	q := path.Join(parent, path.Base(d))
	fi, err := os.Lstat(filepath.Join(c.root, q))
	if err != nil {
		return "", err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(filepath.Join(c.root, q))
		if err != nil {
			return "", err
		}
		c.put(File{Path: q, Type: tar.TypeSymlink, Mode: 0o777, Linkname: target})
		if !path.IsAbs(target) {
			target = path.Join(parent, target)
		}
		return c.resolveDir(target)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s: not a directory", q)
	}
	c.put(File{Path: q, Type: tar.TypeDir, Mode: int64(fi.Mode().Perm())})
	return q, nil
}

// libDirs are where the dynamic loader looks, for this architecture.
func libDirs() []string {
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[runtime.GOARCH]
	return []string{"/lib/" + triplet, "/usr/lib/" + triplet, "/lib64", "/usr/lib64", "/lib", "/usr/lib"}
}

func (c *collector) xtablesDir() (string, error) {
	for _, d := range libDirs() {
		if fi, err := os.Stat(filepath.Join(c.root, d, "xtables")); err == nil && fi.IsDir() {
			return path.Join(d, "xtables"), nil
		}
	}
	return "", errors.New("iptables: no xtables extension directory under " + c.root)
}

// needs adds the loader and the libraries the ELF file p names; a file
// that is not ELF needs nothing.
func (c *collector) needs(p string) error {
	f, err := elf.Open(filepath.Join(c.root, p))
	if err != nil {
		return nil // not ELF (a script or data): nothing to load
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b, err := io.ReadAll(prog.Open())
			if err != nil {
				return err
			}
			if err := c.add(string(bytes.TrimRight(b, "\x00"))); err != nil {
				return fmt.Errorf("%s: loader: %w", p, err)
			}
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	for _, lib := range libs {
		found := false
		for _, d := range libDirs() {
			if _, err := os.Stat(filepath.Join(c.root, d, lib)); err == nil {
				if err := c.add(path.Join(d, lib)); err != nil {
					return err
				}
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("%s needs %s, found in none of %v", p, lib, libDirs())
		}
	}
	return nil
}

// layerTar is the layer: files in Collect's order, owned by root, with the
// given time, xattrs as PAX records.
func layerTar(files []File, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Path[1:], Typeflag: f.Type, Mode: f.Mode, Linkname: f.Linkname,
			ModTime: mtime, Uname: "root", Gname: "root", Format: tar.FormatPAX}
		if f.Type == tar.TypeDir {
			h.Name += "/"
		}
		if len(f.Xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range f.Xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		var body []byte
		if f.Type == tar.TypeReg {
			b, err := os.ReadFile(f.Src)
			if err != nil {
				return nil, err
			}
			body, h.Size = b, int64(len(b))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		if _, err := tw.Write(body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Labels are the image's labels (OCI annotation keys).
func Labels(o Options) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "warden",
		"org.opencontainers.image.description": "per-pod security sidecar: SPIFFE mTLS, OPA policy, eBPF rate limiting",
		"org.opencontainers.image.source":      "https://github.com/warden-sidecar/warden",
		"org.opencontainers.image.version":     o.Version,
	}
}

// Image is the OCI image of files.
func Image(files []File, o Options) (v1.Image, error) {
	layerBytes, err := layerTar(files, o.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: o.Created}, CreatedBy: "deploy/image: warden " + o.Version + " and Debian's iptables", Comment: "make image"},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = runtime.GOARCH, "linux", v1.Time{Time: o.Created}
	cf.Config.User = User
	cf.Config.Entrypoint = []string{BinaryPath}
	cf.Config.Env = []string{PathEnv}
	cf.Config.Labels = Labels(o)
	return mutate.ConfigFile(img, cf)
}

// WriteArchive writes the OCI image archive: an OCI image layout (oci-layout,
// index.json naming the image o.Ref, blobs/) in one tar, the format of
// `skopeo copy oci-archive:` and `ctr images import`.
func WriteArchive(out string, files []File, o Options) error {
	img, err := Image(files, o)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "warden-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": o.Ref,
		"io.containerd.image.name":          o.Ref,
	})); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarDir(dir, tmp, o.Created); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// tarDir writes the files under dir into a tar at out, in name order.
func tarDir(dir, out string, mtime time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, p := range names {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if fi.IsDir() {
			h.Name, h.Mode, h.Typeflag = h.Name+"/", 0o755, tar.TypeDir
		} else {
			h.Size = fi.Size()
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.IsDir() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, src)
			src.Close()
			if err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WriteRootfs writes the files into dir as the image holds them, xattrs
// included (setting security.capability needs CAP_SETFCAP: root in a
// Docker build).
func WriteRootfs(dir string, files []File) error {
	for _, f := range files {
		p := filepath.Join(dir, f.Path)
		switch f.Type {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(p, os.FileMode(f.Mode)&os.ModePerm|sticky(f.Mode)); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(f.Linkname, p); err != nil {
				return err
			}
		case tar.TypeReg:
			b, err := os.ReadFile(f.Src)
			if err != nil {
				return err
			}
			if err := os.WriteFile(p, b, os.FileMode(f.Mode)); err != nil {
				return err
			}
			if err := os.Chmod(p, os.FileMode(f.Mode)); err != nil {
				return err
			}
			for k, v := range f.Xattrs {
				if err := unix.Setxattr(p, k, []byte(v), 0); err != nil {
					return fmt.Errorf("%s: set %s: %w", f.Path, k, err)
				}
			}
		}
	}
	return nil
}

func sticky(mode int64) os.FileMode {
	if mode&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}
