// Command image builds warden's container image without a registry, a
// container engine or a shell: `make image` runs it to write an OCI image
// archive (bin/warden-image.tar) that `ctr images import`, `podman load` or
// `skopeo copy oci-archive:...` read. The Dockerfile next to it runs the same
// program with -rootfs, so that both images hold the same files.
//
// The image is one layer: warden's static binary at /usr/local/bin/warden
// (root-owned, 0755, with the file capabilities cap_net_admin, cap_bpf and
// cap_perfmon permitted but not effective, as `setcap ...+p` writes them:
// the security.capability xattr, carried in the layer's tar as a PAX
// record), and Debian's iptables (nft backend) with the shared libraries
// and xtables extensions it loads, which `warden init` runs, and Debian's
// trust roots for what warden fetches over HTTPS. No shell, no
// package manager. The image runs as 1337:1337, entrypoint
// /usr/local/bin/warden.
//
// It is a main package under deploy/, not under cmd/: cmd/ holds the one
// binary warden ships, and this is a build tool of the deployment.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var o Options
	var created string
	fs.StringVar(&o.Binary, "binary", "bin/warden-static", "warden, built with CGO_ENABLED=0")
	fs.StringVar(&o.Sysroot, "sysroot", "/", "where Debian's iptables is installed (the files are copied from there)")
	fs.StringVar(&o.Version, "version", "dev", "the version label")
	fs.StringVar(&o.Ref, "ref", "ghcr.io/warden-sidecar/warden:dev", "the image's name in the archive's index")
	fs.StringVar(&created, "created", "", "RFC 3339 time of the image and its files (default: the Unix epoch, for a reproducible build)")
	out := fs.String("out", "", "write the OCI image archive here")
	rootfs := fs.String("rootfs", "", "write the image's files into this directory instead (the Dockerfile's way)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Created = time.Unix(0, 0).UTC()
	if created != "" {
		t, err := time.Parse(time.RFC3339, created)
		if err != nil {
			return fmt.Errorf("-created %q: %w", created, err)
		}
		o.Created = t.UTC()
	}
	files, err := Collect(o)
	if err != nil {
		return err
	}
	switch {
	case *out != "" && *rootfs == "":
		return WriteArchive(*out, files, o)
	case *rootfs != "" && *out == "":
		return WriteRootfs(*rootfs, files)
	}
	return errors.New("expected one of -out and -rootfs")
}
