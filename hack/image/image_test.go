package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// managerPkg is what the Dockerfile builds (./cmd), named so that the test
// builds it from this folder.
const managerPkg = "github.com/tokenwarden/tokenwarden/cmd"

// dockerfile is what the Dockerfile says about the shipped image.
type dockerfile struct {
	buildLine  string
	copyFrom   string
	copyTo     string
	user       string
	entrypoint []string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var d dockerfile
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "RUN" && strings.Contains(line, "go build"):
			d.buildLine = line
		case f[0] == "COPY" && len(f) == 4 && strings.HasPrefix(f[1], "--from="):
			d.copyFrom, d.copyTo = f[2], f[3]
		case f[0] == "USER":
			d.user = f[1]
		case f[0] == "ENTRYPOINT":
			if err := json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(line, "ENTRYPOINT"))), &d.entrypoint); err != nil {
				t.Fatalf("Dockerfile ENTRYPOINT %q: %v", line, err)
			}
		}
	}
	if d.buildLine == "" || d.copyTo == "" || d.user == "" || len(d.entrypoint) == 0 {
		t.Fatalf("Dockerfile: cannot find the build line, COPY --from, USER and ENTRYPOINT: %+v", d)
	}
	return d
}

// TestDockerfileBuildLine keeps the tool's compile flags those of the
// Dockerfile: a change there must be made here too.
func TestDockerfileBuildLine(t *testing.T) {
	d := readDockerfile(t)
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags="` + DefaultLDFlags + `"`, " ./cmd"} {
		if !strings.Contains(d.buildLine, want) {
			t.Errorf("Dockerfile build line %q lacks %q, which hack/image uses", d.buildLine, want)
		}
	}
	if DefaultUser != d.user {
		t.Errorf("hack/image runs as %q, the Dockerfile as USER %q", DefaultUser, d.user)
	}
}

func build(t *testing.T, dir string, platforms ...string) *Result {
	t.Helper()
	res, err := Build(context.Background(), Options{
		Package:    managerPkg,
		Entrypoint: "/manager",
		Platforms:  platforms,
		Name:       "tokenwarden:test",
		Layout:     filepath.Join(dir, "layout"),
		Tar:        filepath.Join(dir, "image.tar"),
		Epoch:      1700000000,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestManagerImage builds the operator's image index twice, as make image
// does, and checks that both builds are byte for byte one image and that
// the image is the Dockerfile's.
func TestManagerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the manager for two platforms")
	}
	d := readDockerfile(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	a := build(t, dirA, "linux/amd64", "linux/arm64")
	b := build(t, dirB, "linux/amd64", "linux/arm64")

	t.Run("reproducible", func(t *testing.T) {
		if a.Digest != b.Digest {
			t.Fatalf("two builds gave two index digests: %s and %s", a.Digest, b.Digest)
		}
		ta, _ := os.ReadFile(filepath.Join(dirA, "image.tar"))
		tb, _ := os.ReadFile(filepath.Join(dirB, "image.tar"))
		if len(ta) == 0 || !bytes.Equal(ta, tb) {
			t.Fatalf("two builds gave different tar archives (%d and %d bytes)", len(ta), len(tb))
		}
	})

	t.Run("index", func(t *testing.T) {
		p, err := layout.FromPath(filepath.Join(dirA, "layout"))
		if err != nil {
			t.Fatal(err)
		}
		top, err := p.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		im, err := top.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(im.Manifests) != 1 || im.Manifests[0].Digest != a.Digest {
			t.Fatalf("layout index.json should name the image index %s once, has %+v", a.Digest, im.Manifests)
		}
		if got := im.Manifests[0].Annotations[annotationContainerd]; got != "docker.io/library/tokenwarden:test" {
			t.Errorf("containerd name %q, want docker.io/library/tokenwarden:test", got)
		}
		idx, err := a.Index.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		var plats []string
		for _, m := range idx.Manifests {
			plats = append(plats, m.Platform.OS+"/"+m.Platform.Architecture)
		}
		if strings.Join(plats, ",") != "linux/amd64,linux/arm64" {
			t.Errorf("index platforms %v, want linux/amd64 and linux/arm64", plats)
		}
	})

	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for i, arch := range []string{"amd64", "arm64"} {
		img := a.Images[i]
		t.Run("dockerfile equivalence "+arch, func(t *testing.T) {
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.Architecture != arch || cf.OS != "linux" {
				t.Errorf("config platform %s/%s, want linux/%s", cf.OS, cf.Architecture, arch)
			}
			if strings.Join(cf.Config.Entrypoint, " ") != strings.Join(d.entrypoint, " ") {
				t.Errorf("entrypoint %q, Dockerfile's %q", cf.Config.Entrypoint, d.entrypoint)
			}
			if cf.Config.User != d.user {
				t.Errorf("user %q, Dockerfile's USER %q", cf.Config.User, d.user)
			}
			files := extract(t, img)
			bin, ok := files[d.copyTo]
			if !ok {
				t.Fatalf("the image lacks %s, where the Dockerfile copies the manager", d.copyTo)
			}
			if bin.mode&0o111 == 0 {
				t.Errorf("%s mode %o is not executable", d.copyTo, bin.mode)
			}
			f, err := elf.NewFile(bytes.NewReader(bin.data))
			if err != nil {
				t.Fatalf("%s is not an ELF binary: %v", d.copyTo, err)
			}
			if f.Machine != machines[arch] {
				t.Errorf("%s is built for %v, want %v", d.copyTo, f.Machine, machines[arch])
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s has an ELF interpreter: not static (CGO_ENABLED=0)", d.copyTo)
				}
			}
			if f.Section(".symtab") != nil {
				t.Errorf("%s keeps its symbol table: not built with -ldflags=%q", d.copyTo, DefaultLDFlags)
			}
			uid, gid, _ := strings.Cut(d.user, ":")
			passwd := string(files["/etc/passwd"].data)
			if !regexp.MustCompile(`(?m)^nonroot:x:` + uid + `:` + gid + `:`).MatchString(passwd) {
				t.Errorf("/etc/passwd lacks the nonroot user %s: %q", d.user, passwd)
			}
			if !regexp.MustCompile(`(?m)^nonroot:x:` + gid + `:`).MatchString(string(files["/etc/group"].data)) {
				t.Errorf("/etc/group lacks the nonroot group %s", gid)
			}
			if ca := files[imageCACerts].data; !bytes.Contains(ca, []byte("BEGIN CERTIFICATE")) {
				t.Errorf("%s holds no certificate", imageCACerts)
			}
			if tmp, ok := files["/tmp"]; !ok || tmp.mode&0o1777 != 0o1777 {
				t.Errorf("/tmp missing or not world-writable with the sticky bit")
			}
			for name := range files {
				if !allowed[name] && name != d.copyTo {
					t.Errorf("unexpected file %s in the image: the Dockerfile's image has the manager on distroless static only", name)
				}
			}
		})
	}
}

// allowed is what the base layer holds besides the binary.
var allowed = map[string]bool{
	"/etc": true, "/etc/passwd": true, "/etc/group": true, "/etc/nsswitch.conf": true,
	"/etc/ssl": true, "/etc/ssl/certs": true, imageCACerts: true,
	"/home": true, "/home/nonroot": true, "/root": true, "/tmp": true,
}

type file struct {
	mode int64
	data []byte
}

func extract(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	out := map[string]file{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		name := "/" + strings.TrimSuffix(h.Name, "/")
		out[name] = file{mode: h.Mode, data: data}
	}
	return out
}

// TestSingleBinary packs a prebuilt binary, as the node test does for the
// sandbox and the consumer, and checks the options are validated.
func TestSingleBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tool")
	if err := os.WriteFile(bin, []byte("\x7fELF not really"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := Options{Binary: bin, Entrypoint: "/usr/bin/tool", Platforms: []string{"linux/amd64"}, Tar: filepath.Join(dir, "t.tar")}
	res, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	files := extract(t, res.Images[0])
	if string(files["/usr/bin/tool"].data) != "\x7fELF not really" || files["/usr/bin/tool"].mode != 0o755 {
		t.Errorf("/usr/bin/tool not packed as given: %+v", files["/usr/bin/tool"])
	}
	if _, ok := files["/usr/bin"]; !ok {
		t.Errorf("parent folder /usr/bin missing")
	}
	for _, tc := range []struct {
		name string
		mut  func(*Options)
		want string
	}{
		{"relative entrypoint", func(o *Options) { o.Entrypoint = "tool" }, "-entrypoint"},
		{"two platforms for one binary", func(o *Options) { o.Platforms = []string{"linux/amd64", "linux/arm64"} }, "one platform"},
		{"bad platform", func(o *Options) { o.Platforms = []string{"windows/amd64"} }, "platform"},
		{"named user", func(o *Options) { o.User = "nonroot" }, "-user"},
		{"no output", func(o *Options) { o.Tar = "" }, "-layout or -tar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := o
			tc.mut(&bad)
			if _, err := Build(context.Background(), bad); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestContainerdName(t *testing.T) {
	for in, want := range map[string]string{
		"tokenwarden:dev":                    "docker.io/library/tokenwarden:dev",
		"tokenwarden":                        "docker.io/library/tokenwarden:latest",
		"tokenwarden/tokenwarden:v1":         "docker.io/tokenwarden/tokenwarden:v1",
		"ghcr.io/tokenwarden/tokenwarden:v1": "ghcr.io/tokenwarden/tokenwarden:v1",
		"localhost:5000/tw:dev":              "localhost:5000/tw:dev",
	} {
		if got := containerdName(in); got != want {
			t.Errorf("containerdName(%q) = %q, want %q", in, got, want)
		}
	}
}
