// Command image builds OCI images of tokenwarden's static Go binaries with
// Go tooling only: no Docker engine, no registry, no base image pull.
//
//	go run ./hack/image -pkg ./cmd -entrypoint /manager \
//	    -platforms linux/amd64,linux/arm64 -name tokenwarden:dev \
//	    -layout bin/images/tokenwarden -tar bin/images/tokenwarden.tar
//
// The image equals what the Dockerfile ships: the binary built with
// CGO_ENABLED=0 -trimpath -ldflags="-s -w" on a distroless-static-like base
// built here (a passwd and group naming nonroot 65532, CA certificates,
// /tmp and /home/nonroot), run as 65532:65532. With one platform the layout
// holds that image's manifest; with several, an OCI image index.
//
// Builds are reproducible: every timestamp is SOURCE_DATE_EPOCH (or
// -epoch, default 0), tar entries are sorted and owned by root, and gzip
// carries no name or time, so one commit gives one digest. The digest is
// printed on stdout.
//
// -binary packs a binary already built (one platform) instead of -pkg;
// `ctr -n k8s.io images import` reads the -tar archive.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	digest, err := run(ctx, os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Println(digest)
}

func run(ctx context.Context, args []string, stderr io.Writer) (string, error) {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	var platforms, epoch string
	fs.StringVar(&o.Package, "pkg", "", "Go package to build for each platform (CGO_ENABLED=0 -trimpath), e.g. ./cmd")
	fs.StringVar(&o.Binary, "binary", "", "an already built static binary to pack instead of -pkg (one platform only)")
	fs.StringVar(&o.LDFlags, "ldflags", DefaultLDFlags, "go build -ldflags (the Dockerfile's)")
	fs.StringVar(&o.Entrypoint, "entrypoint", "", "path of the binary inside the image, also the entrypoint (e.g. /manager)")
	fs.StringVar(&o.User, "user", DefaultUser, "user:group the image runs as")
	fs.StringVar(&o.CACerts, "ca-certs", DefaultCACerts, "CA bundle copied to "+imageCACerts)
	fs.StringVar(&platforms, "platforms", hostPlatform(), "comma-separated os/arch list; more than one gives an image index")
	fs.StringVar(&o.Name, "name", "", "image name written into the layout's index (org.opencontainers.image.ref.name and io.containerd.image.name), e.g. tokenwarden:dev")
	fs.StringVar(&o.Layout, "layout", "", "directory to write the OCI layout to (replaced)")
	fs.StringVar(&o.Tar, "tar", "", "file to write the OCI layout to as a tar archive")
	fs.StringVar(&epoch, "epoch", os.Getenv("SOURCE_DATE_EPOCH"), "Unix time of every timestamp (default $SOURCE_DATE_EPOCH, else 0)")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if epoch != "" {
		n, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil || n < 0 {
			return "", fmt.Errorf("-epoch (or SOURCE_DATE_EPOCH) %q: want a non-negative Unix time", epoch)
		}
		o.Epoch = n
	}
	for _, p := range strings.Split(platforms, ",") {
		if p = strings.TrimSpace(p); p != "" {
			o.Platforms = append(o.Platforms, p)
		}
	}
	o.Log = stderr
	res, err := Build(ctx, o)
	if err != nil {
		return "", err
	}
	return res.Digest.String(), nil
}
