// Package chart_test checks the Helm chart (charts/tokenwarden) against the
// kustomize install and a real kube-apiserver (envtest):
//
//   - its CRDs, its copy of the manager's RBAC rules and of the monitoring
//     bundle are identical to config/ (make helm-crds copies them);
//   - every object it renders, in cluster and namespaced mode and with every
//     optional piece on, passes a server-side dry-run with strict field
//     validation; the ServiceMonitor and PrometheusRule against CRDs that
//     controller-gen generates from the Prometheus Operator's own API types
//     (the monitoringcrds module next to this file);
//   - its RBAC rules and its Pod and container settings equal those of
//     config/rbac and config/manager, and the Pod passes the restricted Pod
//     Security profile enforced by the API server;
//   - the installed ServiceAccount may do what the operator needs, where it
//     needs it, and no more (SubjectAccessReviews against the real RBAC);
//   - every manager flag is set from a value, and values.schema.json types
//     every value and rejects wrong ones.
//
// helm is $HELM, else bin/helm-<HELM_VERSION of hack/make/chart.mk>, built by
// `make helm` when missing; controller-gen likewise from the Makefile.
package chart_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

var (
	root    = testenv.Root()
	chart   = filepath.Join(root, "charts", "tokenwarden")
	helmBin string
	// cfg and k8s reach the envtest API server as its admin; nil when the
	// control plane could not start (tests that need it then fail).
	cfg *rest.Config
	k8s client.Client
	// startErr says why there is no API server.
	startErr error
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if helmBin, err = findTool("helm", "HELM", filepath.Join("hack", "make", "chart.mk"), "HELM_VERSION"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env, stop, err := startControlPlane()
	if err != nil {
		startErr = err
		fmt.Fprintln(os.Stderr, "chart: no API server:", err)
	} else {
		defer stop()
		cfg = env.Config
		if k8s, err = client.New(cfg, client.Options{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// needAPIServer fails the test when the control plane did not start.
func needAPIServer(t *testing.T) {
	t.Helper()
	if k8s == nil {
		t.Fatalf("no API server: %v", startErr)
	}
}

// startControlPlane starts envtest with the chart's CRDs and the Prometheus
// Operator's ServiceMonitor and PrometheusRule CRDs, and the
// OwnerReferencesPermissionEnforcement admission plugin on.
func startControlPlane() (*envtest.Environment, func(), error) {
	assets, err := testenv.BinaryAssets()
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "tokenwarden-chart-crds-")
	if err != nil {
		return nil, nil, err
	}
	monitoring, err := monitoringCRDs(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     append([]string{filepath.Join(chart, "crds")}, monitoring...),
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		ControlPlane:          envtest.ControlPlane{APIServer: &envtest.APIServer{}},
	}
	// As some distributions do: setting a blocking owner reference then
	// needs update rights on the owner's finalizers.
	env.ControlPlane.APIServer.Configure().Set("enable-admission-plugins", "OwnerReferencesPermissionEnforcement")
	if _, err := env.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("starting envtest with binaries from %s: %w", assets, err)
	}
	return env, func() {
		_ = env.Stop()
		_ = os.RemoveAll(dir)
	}, nil
}

// monitoringCRDs generates the monitoring.coreos.com CRDs from the API types
// pinned by test/chart/monitoringcrds and returns the ServiceMonitor and
// PrometheusRule files.
func monitoringCRDs(dir string) ([]string, error) {
	controllerGen, err := findTool("controller-gen", "CONTROLLER_GEN", "Makefile", "CONTROLLER_GEN_VERSION")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(controllerGen, "crd",
		"paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1",
		"output:crd:dir="+dir)
	cmd.Dir = filepath.Join(root, "test", "chart", "monitoringcrds")
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("generating the monitoring.coreos.com CRDs with controller-gen: %w\n%s", err, out)
	}
	var files []string
	for _, name := range []string{"monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("controller-gen wrote no %s: %w", name, err)
		}
		files = append(files, p)
	}
	return files, nil
}

// findTool returns $env, else bin/<name>-<version>, the version read from
// `<versionVar> ?= ...` in file (relative to the root), built with
// `make <name>` when missing.
func findTool(name, env, file, versionVar string) (string, error) {
	if p := os.Getenv(env); p != "" {
		return p, nil
	}
	mk, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^` + versionVar + ` \?= (\S+)$`).FindSubmatch(mk)
	if m == nil {
		return "", fmt.Errorf("%s sets no %s", file, versionVar)
	}
	path := filepath.Join(root, "bin", name+"-"+string(m[1]))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	fmt.Fprintf(os.Stderr, "chart: building %s with make %s (a few minutes, once)\n", path, name)
	cmd := exec.Command("make", "-s", name)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("make %s: %w\n%s", name, err, out)
	}
	return path, nil
}

// helm runs helm and returns stdout, stderr and its error.
func helm(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), helmBin, args...)
	cmd.Dir = root
	// Keep helm's caches and config out of $HOME.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// release is one way of installing the chart.
type release struct {
	name      string
	namespace string
	// values are files under the chart (ci/...) and --set arguments.
	valueFiles []string
	sets       []string
}

func (r release) args() []string {
	args := []string{"template", r.name, chart, "--namespace", r.namespace}
	for _, f := range r.valueFiles {
		args = append(args, "--values", filepath.Join(chart, f))
	}
	for _, s := range r.sets {
		args = append(args, "--set", s)
	}
	return args
}

// The installs the tests render: both modes, every optional piece on, and
// every optional piece off.
var (
	clusterRelease    = release{name: "tokenwarden", namespace: "tokenwarden-system"}
	namespacedRelease = release{name: "twns", namespace: "tokenwarden-ns", valueFiles: []string{"ci/namespaced-values.yaml"}}
	fullRelease       = release{name: "twfull", namespace: "tokenwarden-full", valueFiles: []string{"ci/full-values.yaml"}}
	minimalRelease    = release{name: "twmin", namespace: "tokenwarden-min", valueFiles: []string{"ci/minimal-values.yaml"}}
)

// render runs helm template and decodes the objects.
func render(t *testing.T, r release) []unstructured.Unstructured {
	t.Helper()
	stdout, stderr, err := helm(t, r.args()...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(r.args(), " "), err, stderr)
	}
	return decode(t, []byte(stdout))
}

// decode splits YAML into objects.
func decode(t *testing.T, data []byte) []unstructured.Unstructured {
	t.Helper()
	var objs []unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("decoding YAML: %v", err)
		}
		if obj != nil {
			objs = append(objs, unstructured.Unstructured{Object: obj})
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ofKind(objs []unstructured.Unstructured, kind string) []unstructured.Unstructured {
	var out []unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func only(t *testing.T, objs []unstructured.Unstructured, kind string) unstructured.Unstructured {
	t.Helper()
	found := ofKind(objs, kind)
	if len(found) != 1 {
		t.Fatalf("want one %s, rendered %d", kind, len(found))
	}
	return found[0]
}
