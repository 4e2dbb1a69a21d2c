package cluster

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BuildImages builds, from the repository at root, the images the node
// imports: warden's, as `make image` builds it (deploy/image, from a static
// build of cmd/warden), and the pause image (deploy/cluster/pause). The
// archives go to dir.
func BuildImages(t testing.TB, root, dir string) Images {
	t.Helper()
	goBin := "go"
	if g := os.Getenv("GO"); g != "" {
		goBin = g
	}
	build := func(out, pkg string) {
		t.Helper()
		cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cluster: go build %s: %v\n%s", pkg, err, b)
		}
	}
	wardenBin, pauseBin := filepath.Join(dir, "warden-static"), filepath.Join(dir, "pause")
	build(wardenBin, "./cmd/warden")
	build(pauseBin, "./deploy/cluster/pause")

	wardenTar := filepath.Join(dir, "warden-image.tar")
	cmd := exec.Command(goBin, "run", "./deploy/image", "-binary", wardenBin, "-out", wardenTar, "-ref", WardenImage, "-version", "cluster-test")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cluster: the warden image (deploy/image; `make image` needs iptables and ca-certificates): %v\n%s", err, b)
	}
	pauseTar := filepath.Join(dir, "pause.tar")
	if err := pauseImage(pauseBin, pauseTar); err != nil {
		t.Fatalf("cluster: the pause image: %v", err)
	}
	return Images{WardenImage: wardenTar, PauseImage: pauseTar}
}

// pauseImage writes a one-file image (/pause, uid 65535 like Kubernetes')
// as a Docker archive, which ctr imports by its tag.
func pauseImage(bin, out string) error {
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = runtime.GOARCH, "linux"
	cf.Config = v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	tag, err := name.NewTag(PauseImage)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}
