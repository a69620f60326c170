package manifests_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// kubectlVersion is the kubectl built when none is installed: the minor
// version of the kube-apiserver that hack/control-plane.sh builds.
const kubectlVersion = "1.36.3"

// findKubectl returns $KUBECTL, else kubectl from PATH, else a kubectl built
// from k8s.io/kubectl through the Go module proxy into bin/ (once; a few
// minutes on the first run, like the control plane binaries).
func findKubectl() (string, error) {
	if k := os.Getenv("KUBECTL"); k != "" {
		return k, nil
	}
	if k, err := exec.LookPath("kubectl"); err == nil {
		return k, nil
	}
	dest := filepath.Join(root, "bin", "kubectl-v"+kubectlVersion)
	if _, err := os.Stat(dest); err == nil {
		return dest, nil
	}
	fmt.Fprintf(os.Stderr, "manifests: no kubectl on PATH; building kubectl v%s from source into %s\n", kubectlVersion, dest)
	if err := buildKubectl(dest); err != nil {
		return "", fmt.Errorf("no kubectl on PATH and building one failed (set KUBECTL to a kubectl binary): %w", err)
	}
	return dest, nil
}

// buildKubectl builds the kubectl command of k8s.io/kubectl (the same
// main as k8s.io/kubernetes/cmd/kubectl) in a throwaway module.
func buildKubectl(dest string) error {
	dir, err := os.MkdirTemp("", "tokenwarden-kubectl-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	minor := strings.Split(kubectlVersion, ".")[1]
	files := map[string]string{
		"go.mod": "module tokenwarden.local/kubectl\n\ngo 1.25\n\nrequire k8s.io/kubectl v0." + strings.TrimPrefix(kubectlVersion, "1.") + "\n",
		"main.go": `package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() { os.Exit(cli.Run(cmd.NewDefaultKubectlCommand())) }
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	pkg := "k8s.io/component-base/version"
	ldflags := fmt.Sprintf("-X %s.gitVersion=v%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean",
		pkg, kubectlVersion, pkg, pkg, minor, pkg)
	steps := [][]string{
		{"go", "mod", "tidy"},
		{"go", "build", "-trimpath", "-ldflags", ldflags, "-o", dest + ".tmp", "."},
	}
	for _, step := range steps {
		cmd := exec.Command(step[0], step[1:]...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(step, " "), err, out.String())
		}
	}
	return os.Rename(dest+".tmp", dest)
}
