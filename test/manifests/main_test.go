// Package manifests_test checks what `kubectl apply -k` would install,
// against a real kube-apiserver (envtest) and the kubectl binary:
//
//   - config/default, config/namespaced and config/network-policy render with
//     `kubectl kustomize` and pass `kubectl apply --dry-run=server`, i.e. the
//     API server's validation, defaulting and admission (the RBAC escalation
//     check, PodSecurity warnings for the Deployment);
//   - the manager's pod template passes the restricted Pod Security profile,
//     enforced by the API server's PodSecurity admission on a dry-run Pod, and
//     deliberately broken copies of it are refused;
//   - the RBAC is minimal, and the namespaced install's ServiceAccount can do
//     exactly what the operator needs where it needs it (kubectl auth can-i);
//   - the Dockerfile builds the right package from the right folders into a
//     static binary on a distroless non-root base (the image itself is not
//     built: there may be no container engine).
//
// kubectl is $KUBECTL, else kubectl on PATH, else built once from source
// through the Go module proxy into bin/ (see kubectl_test.go), so that
// `make test` still needs nothing but Go.
package manifests_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

var (
	// kubeconfig is a kubeconfig file for envtest's admin user
	// (system:masters), written by TestMain.
	kubeconfig string
	// cacheDir keeps kubectl's discovery cache out of $HOME.
	cacheDir string
	// kubectlBin is the kubectl binary every test runs.
	kubectlBin string
	// clientset talks to the same API server, for setup only.
	clientset kubernetes.Interface
	// root is the repository root.
	root = testenv.Root()
)

// The operator's namespace and ServiceAccount, as config/default renders them.
const (
	operatorNS = "tokenwarden-system"
	operatorSA = "system:serviceaccount:tokenwarden-system:tokenwarden-controller-manager"
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if kubectlBin, err = findKubectl(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env, cfg, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()

	dir, err := os.MkdirTemp("", "tokenwarden-manifests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	kubeconfig = filepath.Join(dir, "kubeconfig")
	cacheDir = filepath.Join(dir, "kube-cache")
	if err := writeKubeconfig(cfg, kubeconfig); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// writeKubeconfig writes a kubeconfig for the user of cfg: envtest's admin,
// authenticated by a client certificate.
func writeKubeconfig(cfg *rest.Config, path string) error {
	server := cfg.Host
	if !strings.Contains(server, "://") {
		server = "https://" + server
	}
	if len(cfg.CAData) == 0 || len(cfg.CertData) == 0 || len(cfg.KeyData) == 0 {
		return errors.New("envtest's rest.Config has no CA, client certificate or key data")
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{
		Server:                   server,
		CertificateAuthorityData: cfg.CAData,
	}
	kc.AuthInfos["envtest-admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
	}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "envtest-admin"}
	kc.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*kc, path)
}

// kubectl runs kubectl against the envtest API server with stdin as its
// input and returns stdout, stderr and the error of the run.
func kubectl(t *testing.T, stdin []byte, args ...string) (string, string, error) {
	t.Helper()
	full := append([]string{"--kubeconfig", kubeconfig, "--cache-dir", cacheDir}, args...)
	cmd := exec.CommandContext(t.Context(), kubectlBin, full...)
	cmd.Dir = root
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// mustKubectl is kubectl that fails the test when kubectl fails.
func mustKubectl(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	stdout, stderr, err := kubectl(t, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout
}

// render runs `kubectl kustomize config/<dir>` and returns the YAML.
func render(t *testing.T, dir string) []byte {
	t.Helper()
	return []byte(mustKubectl(t, nil, "kustomize", filepath.Join("config", dir)))
}

// decode splits rendered YAML into objects.
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
			t.Fatalf("decoding rendered YAML: %v", err)
		}
		if obj != nil {
			objs = append(objs, unstructured.Unstructured{Object: obj})
		}
	}
}

// renderObjects renders config/<dir> and decodes it.
func renderObjects(t *testing.T, dir string) []unstructured.Unstructured {
	t.Helper()
	return decode(t, render(t, dir))
}

// ofKind returns the objects of one kind.
func ofKind(objs []unstructured.Unstructured, kind string) []unstructured.Unstructured {
	var out []unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// only returns the single object of a kind, failing when there is not
// exactly one.
func only(t *testing.T, objs []unstructured.Unstructured, kind string) unstructured.Unstructured {
	t.Helper()
	found := ofKind(objs, kind)
	if len(found) != 1 {
		t.Fatalf("want exactly one %s in the rendered manifests, found %d", kind, len(found))
	}
	return found[0]
}

// typed converts an unstructured object into its Go type.
func typed[T any](t *testing.T, u unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
		t.Fatalf("converting %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

// toYAML encodes objects as a YAML stream for kubectl's stdin (JSON is
// YAML).
func toYAML(t *testing.T, objs ...unstructured.Unstructured) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, o := range objs {
		data, err := o.MarshalJSON()
		if err != nil {
			t.Fatalf("encoding %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		buf.WriteString("---\n")
		buf.Write(data)
		buf.WriteString("\n")
	}
	return buf.Bytes()
}

// ensureNamespace creates a namespace with labels unless it exists.
func ensureNamespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	_, err := clientset.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}
