package chart_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// writeKubeconfig writes a kubeconfig for envtest's admin.
func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	server := cfg.Host
	if !strings.Contains(server, "://") {
		server = "https://" + server
	}
	if len(cfg.CAData) == 0 || len(cfg.CertData) == 0 || len(cfg.KeyData) == 0 {
		t.Fatal(errors.New("envtest's rest.Config has no CA, client certificate or key data"))
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestHelmInstallUpgradeUninstall runs helm itself against the API server:
// install (CRDs already present, as on an upgrade from kustomize), upgrade
// with a changed value, uninstall. The CRDs stay after the uninstall. (No
// Pod runs: envtest has no nodes; the real node test covers readiness.)
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	needAPIServer(t)
	kubeconfig := writeKubeconfig(t, cfg)
	const ns, name = "tokenwarden-helm", "twhelm"
	run := func(args ...string) {
		t.Helper()
		args = append(args, "--kubeconfig", kubeconfig, "--namespace", ns)
		if stdout, stderr, err := helm(t, args...); err != nil {
			t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stdout, stderr)
		}
	}
	run("install", name, chart, "--create-namespace")
	var d appsv1.Deployment
	key := client.ObjectKey{Namespace: ns, Name: name + "-tokenwarden"}
	if err := k8s.Get(t.Context(), key, &d); err != nil {
		t.Fatalf("after helm install: %v", err)
	}
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas %d, want 2", *d.Spec.Replicas)
	}
	run("upgrade", name, chart, "--reuse-values", "--set", "replicaCount=3")
	if err := k8s.Get(t.Context(), key, &d); err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 3 {
		t.Errorf("after helm upgrade: replicas %d, want 3", *d.Spec.Replicas)
	}
	run("uninstall", name, "--wait")
	if err := k8s.Get(t.Context(), key, &d); !apierrors.IsNotFound(err) {
		t.Errorf("after helm uninstall the Deployment is still there (%v)", err)
	}
	crd := &unstructured.Unstructured{}
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	if err := k8s.Get(t.Context(), client.ObjectKey{Name: "apicredentials.auth.tokenwarden.io"}, crd); err != nil {
		t.Errorf("helm uninstall removed the APICredential CRD: %v", err)
	}
}
