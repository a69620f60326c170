package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// DefaultUser is distroless's nonroot user, as the Dockerfile's USER.
	DefaultUser = "65532:65532"
	// DefaultLDFlags are the Dockerfile's go build -ldflags.
	DefaultLDFlags = "-s -w"
	// DefaultCACerts is Debian's bundle; distroless ships the same file.
	DefaultCACerts = "/etc/ssl/certs/ca-certificates.crt"
	imageCACerts   = "/etc/ssl/certs/ca-certificates.crt"

	// Index annotations that name the image: the OCI one, and containerd's,
	// which `ctr images import` uses as the image's full name.
	annotationRefName    = "org.opencontainers.image.ref.name"
	annotationContainerd = "io.containerd.image.name"
)

// Options says what to build. Package or Binary, Entrypoint and at least
// one output are required.
type Options struct {
	Package    string
	Binary     string
	LDFlags    string
	Entrypoint string
	User       string
	CACerts    string
	Platforms  []string
	Name       string
	Layout     string
	Tar        string
	Epoch      int64
	Log        io.Writer
}

// Result is what Build made.
type Result struct {
	// Digest is the digest of the index (several platforms) or of the
	// image manifest (one platform).
	Digest v1.Hash
	// Images holds one image per platform, in Options.Platforms order.
	Images []v1.Image
	// Index is set when several platforms were built.
	Index v1.ImageIndex
}

func (o *Options) validate() error {
	switch {
	case o.Package == "" && o.Binary == "":
		return errors.New("-pkg or -binary is required")
	case o.Package != "" && o.Binary != "":
		return errors.New("-pkg and -binary exclude each other")
	case !strings.HasPrefix(o.Entrypoint, "/") || path.Clean(o.Entrypoint) != o.Entrypoint || o.Entrypoint == "/":
		return fmt.Errorf("-entrypoint %q: want an absolute, clean file path such as /manager", o.Entrypoint)
	case len(o.Platforms) == 0:
		return errors.New("-platforms is empty")
	case o.Binary != "" && len(o.Platforms) > 1:
		return errors.New("-binary packs one binary: give one platform")
	case o.Layout == "" && o.Tar == "":
		return errors.New("-layout or -tar is required")
	}
	if _, _, err := parseUser(o.User); err != nil {
		return err
	}
	for _, p := range o.Platforms {
		if _, err := parsePlatform(p); err != nil {
			return err
		}
	}
	return nil
}

func parseUser(u string) (uid, gid string, err error) {
	uid, gid, ok := strings.Cut(u, ":")
	if !ok || uid == "" || gid == "" || strings.Trim(uid+gid, "0123456789") != "" {
		return "", "", fmt.Errorf("-user %q: want numeric uid:gid such as 65532:65532", u)
	}
	return uid, gid, nil
}

func parsePlatform(p string) (v1.Platform, error) {
	osName, arch, ok := strings.Cut(p, "/")
	if !ok || osName != "linux" || arch == "" || strings.Contains(arch, "/") {
		return v1.Platform{}, fmt.Errorf("platform %q: want linux/<arch> such as linux/arm64", p)
	}
	return v1.Platform{OS: osName, Architecture: arch}, nil
}

// Build compiles (or reads) the binary for each platform, assembles the
// images and writes the outputs.
func Build(ctx context.Context, o Options) (*Result, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.User == "" {
		o.User = DefaultUser
	}
	if o.CACerts == "" {
		o.CACerts = DefaultCACerts
	}
	if o.LDFlags == "" {
		o.LDFlags = DefaultLDFlags
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	created := time.Unix(o.Epoch, 0).UTC()
	base, err := baseLayer(o, created)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	var adds []mutate.IndexAddendum
	for _, p := range o.Platforms {
		plat, _ := parsePlatform(p)
		bin, err := binaryFor(ctx, o, plat)
		if err != nil {
			return nil, err
		}
		img, err := assemble(o, plat, base, bin, created)
		if err != nil {
			return nil, fmt.Errorf("platform %s: %w", p, err)
		}
		res.Images = append(res.Images, img)
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &plat}})
	}
	if len(res.Images) == 1 {
		res.Digest, err = res.Images[0].Digest()
	} else {
		res.Index = mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
		res.Digest, err = res.Index.Digest()
	}
	if err != nil {
		return nil, err
	}
	if err := write(o, res, created); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "image: %s %s (%s)\n", o.Entrypoint, res.Digest, strings.Join(o.Platforms, ", "))
	return res, nil
}

// binaryFor returns the bytes of the static binary for one platform.
func binaryFor(ctx context.Context, o Options, plat v1.Platform) ([]byte, error) {
	if o.Binary != "" {
		b, err := os.ReadFile(o.Binary)
		if err != nil {
			return nil, fmt.Errorf("-binary: %w", err)
		}
		return b, nil
	}
	dir, err := os.MkdirTemp("", "tokenwarden-image-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	out := filepath.Join(dir, "bin")
	// The Dockerfile's build line, for one platform.
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags="+o.LDFlags, "-o", out, o.Package) //nolint:gosec // the package comes from our own Makefile or flags
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+plat.OS, "GOARCH="+plat.Architecture)
	cmd.Stdout, cmd.Stderr = o.Log, o.Log
	fmt.Fprintf(o.Log, "image: go build %s for %s/%s\n", o.Package, plat.OS, plat.Architecture)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build %s for %s/%s: %w", o.Package, plat.OS, plat.Architecture, err)
	}
	return os.ReadFile(out)
}

// entry is one file or directory of a layer.
type entry struct {
	name string // absolute path inside the image
	mode int64
	uid  int
	gid  int
	data []byte
	dir  bool
}

// baseLayer is the part of gcr.io/distroless/static:nonroot the binary
// needs: users and groups (root, nobody, nonroot 65532), CA certificates,
// a world-writable /tmp and nonroot's home.
func baseLayer(o Options, created time.Time) (v1.Layer, error) {
	uid, gid, _ := parseUser(o.User)
	ca, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, fmt.Errorf("-ca-certs: %w", err)
	}
	home := "/home/nonroot"
	passwd := "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		fmt.Sprintf("nonroot:x:%s:%s:nonroot:%s:/sbin/nologin\n", uid, gid, home)
	group := "root:x:0:\nnobody:x:65534:\n" + fmt.Sprintf("nonroot:x:%s:\n", gid)
	u, g := atoi(uid), atoi(gid)
	entries := []entry{
		{name: "/etc", mode: 0o755, dir: true},
		{name: "/etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "/etc/group", mode: 0o644, data: []byte(group)},
		{name: "/etc/nsswitch.conf", mode: 0o644, data: []byte("passwd: files\ngroup: files\nhosts: files dns\n")},
		{name: "/etc/ssl", mode: 0o755, dir: true},
		{name: "/etc/ssl/certs", mode: 0o755, dir: true},
		{name: imageCACerts, mode: 0o644, data: ca},
		{name: "/home", mode: 0o755, dir: true},
		{name: home, mode: 0o700, uid: u, gid: g, dir: true},
		{name: "/root", mode: 0o700, dir: true},
		{name: "/tmp", mode: 0o1777, dir: true},
	}
	return layerOf(entries, created)
}

func binaryLayer(o Options, bin []byte, created time.Time) (v1.Layer, error) {
	var entries []entry
	for d := path.Dir(o.Entrypoint); d != "/"; d = path.Dir(d) {
		entries = append(entries, entry{name: d, mode: 0o755, dir: true})
	}
	entries = append(entries, entry{name: o.Entrypoint, mode: 0o755, data: bin})
	return layerOf(entries, created)
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// layerOf writes a tar with sorted entries, fixed times and numeric owners,
// so that equal entries give an equal layer digest.
func layerOf(entries []entry, created time.Time) (v1.Layer, error) {
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name:    strings.TrimPrefix(e.name, "/"),
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: created,
			Format:  tar.FormatPAX,
		}
		if e.dir {
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

func assemble(o Options, plat v1.Platform, base v1.Layer, bin []byte, created time.Time) (v1.Image, error) {
	top, err := binaryLayer(o, bin, created)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "tokenwarden hack/image: distroless-static-like base (users, CA certificates, /tmp)"}},
		mutate.Addendum{Layer: top, MediaType: types.OCILayer, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "tokenwarden hack/image: COPY " + o.Entrypoint}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		Entrypoint: []string{o.Entrypoint},
		User:       o.User,
		WorkingDir: "/",
		Env: []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"SSL_CERT_FILE=" + imageCACerts,
		},
	}
	return mutate.ConfigFile(img, cf)
}

// containerdName is the name the kubelet asks containerd for: a name
// without a registry is docker.io/library/<name>, as the kubelet normalises
// "tokenwarden:dev".
func containerdName(n string) string {
	if n == "" {
		return ""
	}
	first, _, hasSlash := strings.Cut(n, "/")
	if !hasSlash {
		n = "docker.io/library/" + n
	} else if !strings.ContainsAny(first, ".:") && first != "localhost" {
		n = "docker.io/" + n
	}
	if !strings.Contains(path.Base(n), ":") && !strings.Contains(n, "@") {
		n += ":latest"
	}
	return n
}

func write(o Options, res *Result, created time.Time) error {
	dir := o.Layout
	if dir == "" {
		tmp, err := os.MkdirTemp("", "tokenwarden-layout-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(tmp) }()
		dir = filepath.Join(tmp, "layout")
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("-layout %s: %w", dir, err)
	}
	var opts []layout.Option
	if o.Name != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{
			annotationRefName:    o.Name,
			annotationContainerd: containerdName(o.Name),
		}))
	}
	if res.Index != nil {
		err = p.AppendIndex(res.Index, opts...)
	} else {
		plat, _ := parsePlatform(o.Platforms[0])
		err = p.AppendImage(res.Images[0], append(opts, layout.WithPlatform(plat))...)
	}
	if err != nil {
		return fmt.Errorf("-layout %s: %w", dir, err)
	}
	if o.Tar != "" {
		if err := tarDir(dir, o.Tar, created); err != nil {
			return fmt.Errorf("-tar %s: %w", o.Tar, err)
		}
	}
	return nil
}

// tarDir writes an OCI layout directory as a tar archive (the format
// `ctr images import` reads), with sorted entries and fixed times.
func tarDir(dir, out string, created time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil { //nolint:gosec // build output folder
		return err
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp) }()
	tw := tar.NewWriter(f)
	for _, p := range names {
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: created, Mode: 0o644, Format: tar.FormatPAX}
		if info.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		h.Typeflag, h.Size = tar.TypeReg, info.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if err := copyFile(tw, p); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

func copyFile(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	_, err = io.Copy(w, f)
	return err
}

// hostPlatform is the platform of this machine, the default for images
// imported into the local containerd.
func hostPlatform() string { return "linux/" + runtime.GOARCH }
