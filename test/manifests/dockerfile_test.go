package manifests_test

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// The image cannot be built here (there may be no container engine), so
// this test checks what the build depends on instead:
//   - the builder's Go image is at least the go directive of go.mod;
//   - the build is CGO_ENABLED=0 of ./cmd, the manager's main package;
//   - every folder of the module that ./cmd imports (go list -deps) is
//     COPYed into the builder, and .dockerignore excludes none of them;
//   - the final stage is gcr.io/distroless/static:nonroot with USER 65532,
//     the user the Deployment runs as, and the entrypoint is the binary the
//     Deployment's command names;
//   - the same `CGO_ENABLED=0 go build ./cmd` gives a static binary (no ELF
//     interpreter, no shared libraries), which distroless/static requires.

type instruction struct {
	op   string // upper case
	args string
}

// dockerfile parses the Dockerfile into instructions, joining continued
// lines and dropping comments.
func dockerfile(t *testing.T) []instruction {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var out []instruction
	var cur string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur == "") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			cur += cont + " "
			continue
		}
		cur += line
		op, args, _ := strings.Cut(strings.TrimSpace(cur), " ")
		out = append(out, instruction{op: strings.ToUpper(op), args: strings.TrimSpace(args)})
		cur = ""
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDockerfile(t *testing.T) {
	ins := dockerfile(t)
	var froms []string
	for _, in := range ins {
		if in.op == "FROM" {
			froms = append(froms, in.args)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, found FROM %v", froms)
	}
	final := ins[slices.IndexFunc(ins, func(in instruction) bool { return in.op == "FROM" && in.args == froms[len(froms)-1] }):]
	if got := strings.Fields(froms[len(froms)-1])[0]; got != "gcr.io/distroless/static:nonroot" {
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static:nonroot", got)
	}

	// The builder's Go version.
	builder := strings.Fields(froms[0])
	image, tag, _ := strings.Cut(builder[0], ":")
	goMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var goVersion string
	for line := range strings.Lines(string(goMod)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "go "); ok {
			goVersion = v
		}
	}
	if image != "golang" || versionLess(tag, goVersion) {
		t.Errorf("builder FROM %s; want golang at least %s (go.mod)", builder[0], goVersion)
	}

	// The build command.
	var build string
	for _, in := range ins {
		if in.op == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	fields := strings.Fields(build)
	if !slices.Contains(fields, "CGO_ENABLED=0") || len(fields) == 0 || fields[len(fields)-1] != "./cmd" {
		t.Errorf("want `CGO_ENABLED=0 ... go build ... ./cmd`, found RUN %q", build)
	}

	// Every folder ./cmd needs is copied in, and not ignored.
	copied := map[string]bool{}
	for _, in := range ins {
		if in.op != "COPY" || strings.HasPrefix(in.args, "--from") {
			continue
		}
		srcs := strings.Fields(in.args)
		for _, s := range srcs[:len(srcs)-1] {
			copied[strings.TrimSuffix(s, "/")] = true
		}
	}
	ignored := dockerignore(t)
	needed := append([]string{"go.mod", "go.sum"}, moduleFolders(t)...)
	for _, n := range needed {
		if !copied[n] {
			t.Errorf("the builder does not COPY %s, which the manager's build needs (copied: %v)", n, copied)
		}
		if ignored[n] {
			t.Errorf(".dockerignore excludes %s", n)
		}
	}

	// Final stage: user, binary, entrypoint.
	deploy := typed[appsv1.Deployment](t, only(t, renderObjects(t, "default"), "Deployment"))
	var user, entrypoint string
	var binary string
	for _, in := range final {
		switch in.op {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "COPY":
			if f := strings.Fields(in.args); strings.HasPrefix(in.args, "--from=builder") && len(f) == 3 {
				binary = f[2]
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if uid != "65532" {
		t.Errorf("USER %q, want 65532 (distroless nonroot)", user)
	}
	if rau := deploy.Spec.Template.Spec.SecurityContext.RunAsUser; rau == nil || strconv.FormatInt(*rau, 10) != uid {
		t.Errorf("the Deployment runs as %v, the image as USER %s", rau, user)
	}
	cmd := deploy.Spec.Template.Spec.Containers[0].Command
	if binary == "" || len(cmd) == 0 || cmd[0] != binary || entrypoint != `["`+binary+`"]` {
		t.Errorf("the binary is copied to %q with ENTRYPOINT %s; the Deployment runs %v", binary, entrypoint, cmd)
	}
}

// moduleFolders returns the top-level folders of this module holding
// packages that ./cmd imports, itself included.
func moduleFolders(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "./cmd")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd: %v", err)
	}
	set := map[string]bool{}
	for dir := range strings.Lines(string(out)) {
		rel, err := filepath.Rel(root, strings.TrimSpace(dir))
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Fatalf("package folder %s is outside the module", dir)
		}
		set[strings.Split(filepath.ToSlash(rel), "/")[0]] = true
	}
	folders := slices.Sorted(func(yield func(string) bool) {
		for f := range set {
			if !yield(f) {
				return
			}
		}
	})
	if !slices.Contains(folders, "cmd") {
		t.Fatalf("go list found no cmd folder: %v", folders)
	}
	return folders
}

// dockerignore returns the plain entries of .dockerignore.
func dockerignore(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "*" || line == "**" {
			t.Errorf(".dockerignore ignores everything (%q); list what to exclude instead", line)
		}
		set[strings.Trim(line, "/")] = true
	}
	return set
}

// versionLess reports whether Go version a (e.g. 1.26) is older than b's
// major.minor (e.g. 1.26.0).
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range 2 {
		if i >= len(pa) || i >= len(pb) {
			return i >= len(pa)
		}
		x, _ := strconv.Atoi(pa[i])
		y, _ := strconv.Atoi(pb[i])
		if x != y {
			return x < y
		}
	}
	return false
}

// TestStaticBinary builds the manager as the Dockerfile does and checks
// that it is statically linked.
func TestStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the manager binary")
	}
	bin := filepath.Join(t.TempDir(), "manager")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./cmd: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the manager binary is dynamically linked (program header %s)", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the manager binary needs shared libraries %v", libs)
	}
}
