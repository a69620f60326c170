package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

// etcdQuotaBytes lifts etcd's 2 GiB default backend quota: the memory phase
// alone writes 1 GiB of Secrets, and etcd keeps old revisions until the API
// server compacts them.
const etcdQuotaBytes = "8589934592"

// controlPlane is kube-apiserver and etcd with the audit log on.
type controlPlane struct {
	env        *envtest.Environment
	cfg        *rest.Config // admin
	dir        string
	auditPath  string
	kubeconfig string       // the operator's user (system:masters), for the manager
	loadCfg    *rest.Config // the load generator's user (system:masters)
	assets     string
	apiPid     int
	etcdPid    int
}

func startControlPlane(dir string) (*controlPlane, error) {
	assets, err := testenv.BinaryAssets()
	if err != nil {
		return nil, err
	}
	cp := &controlPlane{dir: dir, assets: assets, auditPath: filepath.Join(dir, "audit.log")}
	apiDir, etcdDir := filepath.Join(dir, "apiserver"), filepath.Join(dir, "etcd")
	for _, d := range []string{apiDir, etcdDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	etcd := &envtest.Etcd{DataDir: etcdDir}
	etcd.Configure().Set("quota-backend-bytes", etcdQuotaBytes)
	cp.env = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(testenv.Root(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		ControlPlane: envtest.ControlPlane{
			APIServer: &envtest.APIServer{CertDir: apiDir},
			Etcd:      etcd,
		},
	}
	cp.env.ControlPlane.GetAPIServer().Configure().
		Set("audit-policy-file", policy).
		Set("audit-log-path", cp.auditPath).
		Set("audit-log-maxsize", auditMaxSizeMB).
		Set("audit-log-maxbackup", "1")
	cfg, err := cp.env.Start()
	if err != nil {
		_ = cp.env.Stop()
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	cp.cfg = cfg
	// The operator and the load generator each get a user of their own, so
	// that the audit policy selects exactly their requests.
	op, err := cp.env.AddUser(envtest.User{Name: operatorUser, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = cp.env.Stop()
		return nil, err
	}
	kc, err := op.KubeConfig()
	if err != nil {
		_ = cp.env.Stop()
		return nil, err
	}
	cp.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(cp.kubeconfig, kc, 0o600); err != nil {
		_ = cp.env.Stop()
		return nil, err
	}
	load, err := cp.env.AddUser(envtest.User{Name: loadUser, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = cp.env.Stop()
		return nil, err
	}
	cp.loadCfg = rest.CopyConfig(load.Config())
	if cp.apiPid, err = findPid("kube-apiserver", apiDir); err != nil {
		_ = cp.env.Stop()
		return nil, err
	}
	if cp.etcdPid, err = findPid("etcd", etcdDir); err != nil {
		_ = cp.env.Stop()
		return nil, err
	}
	return cp, nil
}

func (cp *controlPlane) stop() error { return cp.env.Stop() }

// versions returns the API server's and etcd's versions.
func (cp *controlPlane) versions() (kube, etcd string) {
	if cs, err := kubernetes.NewForConfig(cp.cfg); err == nil {
		if v, err := cs.Discovery().ServerVersion(); err == nil {
			kube = v.GitVersion
		}
	}
	if out, err := exec.Command(filepath.Join(cp.assets, "etcd"), "--version").Output(); err == nil {
		line, _, _ := strings.Cut(string(out), "\n")
		etcd = strings.TrimSpace(strings.TrimPrefix(line, "etcd Version:"))
	}
	return kube, etcd
}

// apiserverMetrics is GET /metrics on the API server as the admin.
func (cp *controlPlane) apiserverMetrics(ctx context.Context) (string, error) {
	cs, err := kubernetes.NewForConfig(cp.cfg)
	if err != nil {
		return "", err
	}
	raw, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	return string(raw), err
}

// apiserverFamilies are the metric families kept from the API server.
var apiserverFamilies = []string{
	"apiserver_request_duration_seconds",
	"apiserver_request_total",
	"apiserver_storage_objects",
	"apiserver_storage_size_bytes",
	"apiserver_current_inflight_requests",
	"apiserver_flowcontrol_request_wait_duration_seconds",
	"apiserver_flowcontrol_rejected_requests_total",
	"apiserver_watch_events_total",
	"etcd_request_duration_seconds",
	"etcd_requests_total",
	"etcd_db_total_size_in_bytes",
	"process_cpu_seconds_total",
	"process_resident_memory_bytes",
	"go_goroutines",
}

// operatorFamilies are the metric families kept from the manager.
var operatorFamilies = []string{
	"controller_runtime_",
	"workqueue_",
	"rest_client_",
	"tokenwarden_refresh_attempts_total",
	"tokenwarden_provider_request_duration_seconds",
	"tokenwarden_provider_rate_limited_total",
	"process_",
	"go_memstats_heap",
	"go_gc_duration_seconds",
	"go_goroutines",
}

// meanLatency returns the mean of a histogram (…_sum/…_count) between two
// scrapes, restricted to series matching matchers, in milliseconds.
func meanLatency(a, b metrics, name string, matchers ...string) (ms, count float64) {
	n := b.sum(name+"_count", matchers...) - a.sum(name+"_count", matchers...)
	if n <= 0 {
		return 0, 0
	}
	s := b.sum(name+"_sum", matchers...) - a.sum(name+"_sum", matchers...)
	return round(1000*s/n, 2), n
}

// protectLeases puts the operator's Lease requests in the API server's
// leader-election priority level, as kube-controller-manager's are by the
// built-in FlowSchemas: at saturation the operator's own refresh traffic
// queues in its user's flow, and a Lease renewal waiting behind it past the
// renew deadline makes the operator give up leadership and exit. A platform
// does the same for its operators (docs/performance.md).
func (cp *controlPlane) protectLeases(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(cp.cfg)
	if err != nil {
		return err
	}
	fs := &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: "tokenwarden-leader-election"},
		Spec: flowcontrolv1.FlowSchemaSpec{
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "leader-election"},
			MatchingPrecedence:         150,
			DistinguisherMethod:        &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindUser, User: &flowcontrolv1.UserSubject{Name: operatorUser}}},
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{
					Verbs: []string{"get", "create", "update"}, APIGroups: []string{"coordination.k8s.io"},
					Resources: []string{"leases"}, Namespaces: []string{flowcontrolv1.NamespaceEvery},
				}},
			}},
		},
	}
	_, err = cs.FlowcontrolV1().FlowSchemas().Create(ctx, fs, metav1.CreateOptions{})
	return err
}
