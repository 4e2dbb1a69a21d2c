package main

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"golang.org/x/sys/unix"

	"github.com/warden-sidecar/warden/bpf/bpftest"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// built is the image `make image` builds, from a warden binary built by the
// test as the Makefile builds it, written as an OCI archive and read back
// with go-containerregistry: the archive is checked, not the builder's
// intermediate values.
type built struct {
	binary []byte // the warden built
	cfg    *v1.ConfigFile
	ref    string
	files  map[string]*tar.Header // by path, without the leading /
	bodies map[string][]byte      // regular files
}

var image *built

func buildImage(t *testing.T) *built {
	t.Helper()
	if image != nil {
		return image
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "warden")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v9.9.9", "-o", bin, "../../cmd/warden")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	archive := filepath.Join(dir, "warden-image.tar")
	if err := run([]string{"-binary", bin, "-out", archive, "-version", "v9.9.9", "-ref", "ghcr.io/warden-sidecar/warden:v9.9.9", "-created", "2026-01-02T03:04:05Z"}); err != nil {
		t.Fatal(err)
	}

	// Read it back: untar the OCI layout, open it with go-containerregistry.
	ociDir := filepath.Join(dir, "oci")
	untar(t, archive, ociDir)
	idx, err := layout.ImageIndexFromPath(ociDir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) != 1 {
		t.Fatalf("index: %v %+v", err, m)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v, %d", err, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	binBytes, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	b := &built{binary: binBytes, cfg: cfg, ref: m.Manifests[0].Annotations["org.opencontainers.image.ref.name"],
		files: map[string]*tar.Header{}, bodies: map[string][]byte{}}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if _, dup := b.files[name]; dup {
			t.Errorf("%s twice in the layer", name)
		}
		b.files[name] = h
		if h.Typeflag == tar.TypeReg {
			b.bodies[name], _ = io.ReadAll(tr)
		}
	}
	image = b
	return b
}

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, h.Name)
		if h.Typeflag == tar.TypeDir {
			_ = os.MkdirAll(p, 0o755)
			continue
		}
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		b, _ := io.ReadAll(tr)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// resolve follows symlinks inside the image to a regular file, as the
// kernel would with the image as root; "" when it leads nowhere.
func (b *built) resolve(p string) string {
	for range 40 {
		p = strings.TrimPrefix(path.Clean("/"+p), "/")
		// Resolve the directories first: /lib/x.so is usr/lib/x.so.
		parts := strings.Split(p, "/")
		cur := ""
		for i, part := range parts {
			next := path.Join(cur, part)
			h, ok := b.files[next]
			if !ok {
				return ""
			}
			if h.Typeflag == tar.TypeSymlink {
				target := h.Linkname
				if !path.IsAbs(target) {
					target = path.Join("/", cur, target)
				}
				p = path.Join(append([]string{target}, parts[i+1:]...)...)
				goto again
			}
			cur = next
		}
		if h := b.files[p]; h.Typeflag == tar.TypeReg {
			return p
		}
		return ""
	again:
	}
	return ""
}

func TestImageConfig(t *testing.T) {
	b := buildImage(t)
	c := b.cfg.Config
	if c.User != "1337:1337" || !slicesEqual(c.Entrypoint, []string{"/usr/local/bin/warden"}) || len(c.Cmd) != 0 {
		t.Errorf("user %q, entrypoint %q, cmd %q", c.User, c.Entrypoint, c.Cmd)
	}
	if !slicesEqual(c.Env, []string{PathEnv}) {
		t.Errorf("env %q", c.Env)
	}
	if c.Labels["org.opencontainers.image.version"] != "v9.9.9" || c.Labels["org.opencontainers.image.source"] == "" {
		t.Errorf("labels %v", c.Labels)
	}
	if b.cfg.OS != "linux" || b.cfg.Architecture != runtime.GOARCH || !b.cfg.Created.Time.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("os %s arch %s created %v", b.cfg.OS, b.cfg.Architecture, b.cfg.Created)
	}
	if b.ref != "ghcr.io/warden-sidecar/warden:v9.9.9" {
		t.Errorf("ref.name %q", b.ref)
	}
}

func TestImageBinary(t *testing.T) {
	b := buildImage(t)
	h := b.files["usr/local/bin/warden"]
	if h == nil || h.Typeflag != tar.TypeReg {
		t.Fatalf("no /usr/local/bin/warden: %+v", h)
	}
	if h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 {
		t.Errorf("warden: mode %o, owner %d:%d; want 0755 root:root (the user 1337 cannot replace its own binary)", h.Mode, h.Uid, h.Gid)
	}
	if got := h.PAXRecords["SCHILY.xattr.security.capability"]; got != string(Capabilities()) {
		t.Errorf("security.capability %x, want %x (cap_net_admin,cap_bpf,cap_perfmon+p)", got, Capabilities())
	}
	if !bytes.Equal(b.bodies["usr/local/bin/warden"], b.binary) {
		t.Error("the image's warden is not the binary built")
	}
	f, err := elf.NewFile(bytes.NewReader(b.bodies["usr/local/bin/warden"]))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("warden in the image is dynamically linked")
		}
	}
	if !h.ModTime.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("mtime %v: want the -created time (reproducible layers)", h.ModTime)
	}
}

// The trust roots Go reads on Linux are in the image, for bundles and
// JWKS fetched over HTTPS.
func TestImageHasTrustRoots(t *testing.T) {
	b := buildImage(t)
	p := b.resolve(caBundle)
	if p == "" {
		t.Fatalf("%s is not in the image", caBundle)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.bodies[p]) {
		t.Errorf("%s holds no certificate", caBundle)
	}
}

// No shell: nothing an attacker who gets code execution in warden could
// run as one, and no package manager.
func TestImageHasNoShell(t *testing.T) {
	b := buildImage(t)
	for _, sh := range []string{"bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/bash", "bin/dash", "usr/bin/dash"} {
		if b.resolve(sh) != "" {
			t.Errorf("the image has %s", sh)
		}
	}
	for name := range b.files {
		switch path.Base(name) {
		case "sh", "bash", "dash", "ash", "busybox", "apt", "apt-get", "dpkg", "perl", "python3":
			t.Errorf("the image has %s", name)
		}
	}
}

// Every command warden init runs resolves in the image to an ELF file
// whose loader and libraries are in the image too.
func TestImageIptablesIsComplete(t *testing.T) {
	b := buildImage(t)
	checked := map[string]bool{}
	var check func(p string)
	check = func(p string) {
		if checked[p] {
			return
		}
		checked[p] = true
		f, err := elf.NewFile(bytes.NewReader(b.bodies[p]))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			return
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				interp, _ := io.ReadAll(prog.Open())
				if l := b.resolve(string(bytes.TrimRight(interp, "\x00"))); l == "" {
					t.Errorf("%s: loader %s is not in the image", p, interp)
				}
			}
		}
		libs, _ := f.ImportedLibraries()
	libs:
		for _, lib := range libs {
			for _, d := range libDirs() {
				if l := b.resolve(path.Join(d, lib)); l != "" {
					check(l)
					continue libs
				}
			}
			t.Errorf("%s needs %s, which is not in the image", p, lib)
		}
	}
	for _, cmd := range []string{"iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore"} {
		p := b.resolve("/usr/sbin/" + cmd)
		if p == "" {
			t.Errorf("/usr/sbin/%s does not resolve to a file in the image", cmd)
			continue
		}
		check(p)
	}
	for _, ext := range []string{"libxt_tcp.so", "libxt_owner.so", "libxt_REDIRECT.so", "libxt_standard.so"} {
		found := false
		for _, d := range libDirs() {
			if p := b.resolve(path.Join(d, "xtables", ext)); p != "" {
				check(p)
				found = true
			}
		}
		if !found {
			t.Errorf("the xtables extension %s, which warden's rules use, is not in the image", ext)
		}
	}
}

// The bytes Capabilities writes are those of setcap, which the Dockerfile
// runs: the two images carry the same capabilities.
func TestCapabilitiesAreSetcaps(t *testing.T) {
	testenv.RequirePrivileged(t, "setcap needs CAP_SETFCAP")
	setcap := testenv.NeedTool(t, "setcap", "apt-get install libcap2-bin")
	f := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(f, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(setcap, "cap_net_admin,cap_bpf,cap_perfmon+p", f).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v\n%s", err, out)
	}
	buf := make([]byte, 64)
	n, err := unix.Getxattr(f, CapabilityXattr, buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf[:n], Capabilities()) {
		t.Errorf("setcap wrote %x, Capabilities is %x", buf[:n], Capabilities())
	}
}

// The image's files, unpacked as a runtime unpacks them (xattrs applied)
// onto a read-only root with /proc, run `warden init` as the pod's init
// container does, in a network namespace the test creates: the redirect is
// installed with the image's own iptables. The binary keeps its file
// capabilities and starts as uid 1337.
func TestImageRunsWardenInit(t *testing.T) {
	bpftest.RequirePrivileged(t)
	chroot := testenv.NeedTool(t, "chroot", "coreutils")
	getcap := testenv.NeedTool(t, "getcap", "apt-get install libcap2-bin")
	b := buildImage(t)
	root := t.TempDir()
	unpack(t, b, root)
	if err := os.Mkdir(filepath.Join(root, "proc"), 0o555); err != nil {
		t.Fatal(err)
	}
	mount(t, root, root, "", unix.MS_BIND)
	mount(t, "", root, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY)
	mount(t, "proc", filepath.Join(root, "proc"), "proc", 0)

	if out, err := exec.Command(getcap, filepath.Join(root, "usr/local/bin/warden")).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "cap_net_admin,cap_perfmon,cap_bpf=p") {
		t.Errorf("getcap of the unpacked warden: %v %s", err, out)
	}

	ns := bpftest.NewNetns(t)
	cmd := ns.Command(chroot, root, "/usr/local/bin/warden", "init")
	cmd.Env = []string{PathEnv, "WARDEN_REDIRECT_PORTS=8080"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("warden init in the image: %v\n%s", err, out)
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, err := ns.Command(save, "-t", "nat").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", save, err, out)
		}
		if !strings.Contains(string(out), "-A WARDEN_INBOUND -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 15443") ||
			!strings.Contains(string(out), "-A PREROUTING -p tcp -j WARDEN_INBOUND") {
			t.Errorf("%s after warden init in the image:\n%s", save, out)
		}
	}

	cmd = ns.Command(chroot, "--userspec=1337:1337", root, "/usr/local/bin/warden", "version")
	cmd.Env = []string{PathEnv}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "v9.9.9") {
		t.Errorf("warden version as 1337 in the image: %v\n%s", err, out)
	}
}

func mount(t *testing.T, src, dst, fstype string, flags uintptr) {
	t.Helper()
	if err := unix.Mount(src, dst, fstype, flags, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", src, dst, err)
	}
	if flags&unix.MS_REMOUNT == 0 {
		t.Cleanup(func() { _ = unix.Unmount(dst, unix.MNT_DETACH) })
	}
}

// unpack writes the layer into root as a container runtime does: owners,
// modes, symlinks, and the PAX xattr records as extended attributes.
func unpack(t *testing.T, b *built, root string) {
	t.Helper()
	names := make([]string, 0, len(b.files))
	for n := range b.files {
		names = append(names, n)
	}
	// Parents before children: a shorter path first is enough here.
	sortByDepth(names)
	for _, n := range names {
		h, p := b.files[n], filepath.Join(root, n)
		var err error
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, os.FileMode(h.Mode)&os.ModePerm)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			err = os.WriteFile(p, b.bodies[n], os.FileMode(h.Mode)&os.ModePerm)
			if err == nil {
				err = os.Chmod(p, os.FileMode(h.Mode)&os.ModePerm)
			}
		}
		if err == nil && h.Typeflag != tar.TypeSymlink {
			err = os.Lchown(p, h.Uid, h.Gid)
		}
		// After the owner: chown clears security.capability.
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && err == nil {
				err = unix.Setxattr(p, x, []byte(v), 0)
			}
		}
		if err != nil {
			t.Fatalf("unpack %s: %v", n, err)
		}
	}
}

func sortByDepth(names []string) {
	depth := func(s string) int { return strings.Count(s, "/") }
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && (depth(names[j]) < depth(names[j-1]) || depth(names[j]) == depth(names[j-1]) && names[j] < names[j-1]); j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00") && len(a) == len(b)
}

// The Dockerfile's final stage says what the program writes into the
// image's configuration: user, entrypoint, PATH and labels; its files come
// from the program's -rootfs.
func TestDockerfileAgrees(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.LastIndex(text, "\nFROM ")
	final := strings.ReplaceAll(text[i:], "\\\n", " ")
	if !strings.HasPrefix(final, "\nFROM scratch\n") {
		t.Errorf("the final stage is not FROM scratch: %q", strings.SplitN(final, "\n", 3)[1])
	}
	labels := Labels(Options{Version: "${VERSION}"})
	want := []string{
		"COPY --from=rootfs /rootfs/ /",
		"ENV " + PathEnv,
		"USER " + User,
		`ENTRYPOINT ["` + BinaryPath + `"]`,
	}
	for k, v := range labels {
		want = append(want, k+`="`+v+`"`)
	}
	for _, w := range want {
		if !strings.Contains(final, w) {
			t.Errorf("the Dockerfile's final stage lacks %s", w)
		}
	}
	if n := strings.Count(final, "org.opencontainers.image."); n != len(labels) {
		t.Errorf("the Dockerfile sets %d labels, the program %d", n, len(labels))
	}
	for _, w := range []string{"RUN /out/image -binary /out/warden -rootfs /rootfs", `-ldflags "-s -w -X main.version=${VERSION}"`, "CGO_ENABLED=0"} {
		if !strings.Contains(text, w) {
			t.Errorf("the Dockerfile lacks %s", w)
		}
	}
}

// The rootfs the Dockerfile copies is the layer `make image` writes: same
// paths, types, modes, links and xattrs.
func TestRootfsIsTheLayer(t *testing.T) {
	testenv.RequirePrivileged(t, "writing security.capability needs CAP_SETFCAP")
	b := buildImage(t)
	bin := filepath.Join(t.TempDir(), "warden")
	if err := os.WriteFile(bin, b.binary, 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := Collect(Options{Binary: bin, Sysroot: "/"})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := WriteRootfs(root, files); err != nil {
		t.Fatal(err)
	}
	seen := 0
	err = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		h := b.files[rel]
		if h == nil {
			t.Errorf("rootfs has %s, the layer does not", rel)
			return nil
		}
		seen++
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			if h.Typeflag != tar.TypeSymlink || h.Linkname != l {
				t.Errorf("%s: symlink to %s, layer %c %s", rel, l, h.Typeflag, h.Linkname)
			}
		case fi.IsDir():
			if h.Typeflag != tar.TypeDir || int64(fi.Mode().Perm()) != h.Mode&0o777 {
				t.Errorf("%s: dir %v, layer %c %o", rel, fi.Mode(), h.Typeflag, h.Mode)
			}
		default:
			if h.Typeflag != tar.TypeReg || int64(fi.Mode().Perm()) != h.Mode {
				t.Errorf("%s: file %v, layer %c %o", rel, fi.Mode(), h.Typeflag, h.Mode)
			}
			buf := make([]byte, 64)
			n, _ := unix.Getxattr(p, CapabilityXattr, buf)
			if got, want := string(buf[:max(n, 0)]), h.PAXRecords["SCHILY.xattr."+CapabilityXattr]; got != want {
				t.Errorf("%s: security.capability %x, layer %x", rel, got, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(b.files) {
		t.Errorf("rootfs has %d of the layer's %d entries", seen, len(b.files))
	}
}
