// Package testenv starts a real kube-apiserver and etcd (envtest) with the
// tokenwarden CRD installed, for the integration suites, the end-to-end
// suite, the demo and the benchmark.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Root is the repository root, found from this file's location so that tests
// in any package can reach config/ and hack/.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinaryAssets returns the folder holding kube-apiserver and etcd:
// KUBEBUILDER_ASSETS when set, else whatever hack/control-plane.sh builds or
// finds under bin/ (it prints progress on stderr while it builds).
func BinaryAssets() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(Root(), "hack", "control-plane.sh"), filepath.Join(Root(), "bin"))
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the control plane binaries with hack/control-plane.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return lines[len(lines)-1], nil
}

// Start starts a control plane with the CRDs of config/crd/bases installed.
// The caller stops it with env.Stop().
func Start() (*envtest.Environment, *rest.Config, error) {
	assets, err := BinaryAssets()
	if err != nil {
		return nil, nil, err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(Root(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("starting envtest with binaries from %s: %w", assets, err)
	}
	return env, cfg, nil
}
