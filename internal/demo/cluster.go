package demo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

// ControlPlane is a kube-apiserver and etcd started by envtest from the
// binaries hack/control-plane.sh builds (or KUBEBUILDER_ASSETS).
type ControlPlane struct {
	Env    *envtest.Environment
	Config *rest.Config // the admin user (system:masters)
	// AdminKubeconfig is the path of a kubeconfig for the admin user.
	AdminKubeconfig string
	// Assets is the folder holding kube-apiserver and etcd.
	Assets string
}

// ControlPlaneOptions configure StartControlPlane.
type ControlPlaneOptions struct {
	// Dir holds the API server's certificates, etcd's data and the admin
	// kubeconfig. Both processes carry it on their command line, which is
	// how a test finds them if anything is left running.
	Dir string
	// CRDDirectory, when set, is installed by envtest before Start returns
	// (the demo); the e2e suite leaves it empty and applies config/crd with
	// kubectl like a user.
	CRDDirectory string
	// AdmissionPlugins are enabled on the API server besides its defaults,
	// for example OwnerReferencesPermissionEnforcement, which some
	// distributions turn on.
	AdmissionPlugins []string
}

// StartControlPlane starts kube-apiserver and etcd. The caller stops them
// with Stop.
func StartControlPlane(o ControlPlaneOptions) (*ControlPlane, error) {
	assets, err := testenv.BinaryAssets()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"apiserver", "etcd"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		ControlPlane: envtest.ControlPlane{
			APIServer: &envtest.APIServer{CertDir: filepath.Join(o.Dir, "apiserver")},
			Etcd:      &envtest.Etcd{DataDir: filepath.Join(o.Dir, "etcd")},
		},
	}
	if len(o.AdmissionPlugins) > 0 {
		env.ControlPlane.APIServer.Configure().Set("enable-admission-plugins", strings.Join(o.AdmissionPlugins, ","))
	}
	if o.CRDDirectory != "" {
		env.CRDDirectoryPaths = []string{o.CRDDirectory}
		env.ErrorIfCRDPathMissing = true
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	cp := &ControlPlane{Env: env, Config: cfg, Assets: assets, AdminKubeconfig: filepath.Join(o.Dir, "kubeconfig")}
	if err := os.WriteFile(cp.AdminKubeconfig, env.KubeConfig, 0o600); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return cp, nil
}

// Stop stops kube-apiserver and etcd and waits for them to exit.
func (c *ControlPlane) Stop() error { return c.Env.Stop() }

// WriteTokenKubeconfig writes a kubeconfig for the API server of cfg that
// authenticates with a bearer token, as a Pod's ServiceAccount would.
func WriteTokenKubeconfig(path string, cfg *rest.Config, user, token string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: user}
	kc.CurrentContext = "local"
	return clientcmd.WriteToFile(*kc, path)
}
