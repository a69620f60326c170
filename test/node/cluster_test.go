//go:build node

package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenwarden/tokenwarden/internal/demo"
)

// cluster is the node hack/node/run.sh started.
type cluster struct {
	kubeconfig string
	state      string
	nodeIP     string
	c          client.Client
	cs         *kubernetes.Clientset
}

func connect(t *testing.T) *cluster {
	t.Helper()
	kc := os.Getenv("NODE_KUBECONFIG")
	if kc == "" {
		t.Fatal("NODE_KUBECONFIG is not set: run this test through make test-node (hack/node/run.sh)")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: demo.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{kubeconfig: kc, state: os.Getenv("NODE_STATE"), nodeIP: os.Getenv("NODE_IP"), c: c, cs: cs}
}

// kubectl runs kubectl against the node and returns its combined output.
func (cl *cluster) kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", cl.kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// restricted is the Pod Security "restricted" profile's container
// settings, which the consumer Pods meet.
func restricted() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](65532),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// consumerPod calls the sandbox's protected API with the value of key in
// secret, mounted as a volume, once a second.
func consumerPod(ns, name, secret, key, apiURL string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			AutomountServiceAccountToken:  ptr.To(false),
			Containers: []corev1.Container{{
				Name:            "consumer",
				Image:           "tokenwarden-consumer:node",
				ImagePullPolicy: corev1.PullNever,
				Args:            []string{"-token-file=/token/" + key, "-header-value", "-url=" + apiURL, "-ca=/ca/" + demo.CASecretKey},
				SecurityContext: restricted(),
				VolumeMounts: []corev1.VolumeMount{
					{Name: "token", MountPath: "/token", ReadOnly: true},
					{Name: "ca", MountPath: "/ca", ReadOnly: true},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}},
				{Name: "ca", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: demo.CASecretName}}},
			},
		},
	}
}

// waitPodReady waits for a Pod's Ready condition and returns its IP.
func (cl *cluster) waitPodReady(ctx context.Context, ns, name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		var p corev1.Pod
		err := cl.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &p)
		if err == nil && podReady(&p) {
			return p.Status.PodIP, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("pod %s/%s not Ready after %s: %s", ns, name, timeout, podSummary(&p))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podSummary(p *corev1.Pod) string {
	var parts []string
	parts = append(parts, "phase "+string(p.Status.Phase))
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			parts = append(parts, fmt.Sprintf("%s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message))
		case cs.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("%s terminated: %s exit %d", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode))
		}
		if lt := cs.LastTerminationState.Terminated; lt != nil {
			parts = append(parts, fmt.Sprintf("%s last exit %d (%s), %d restarts", cs.Name, lt.ExitCode, lt.Reason, cs.RestartCount))
		}
	}
	return strings.Join(parts, "; ")
}

// fingerprint is the consumer's name for a token value.
func fingerprint(v string) string {
	v = strings.TrimSpace(v)
	if v == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:6])
}

// percentile of sorted durations, nearest rank.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

// managerRSS reads the VmRSS of the /manager process (the operator's
// container; the node shares this PID namespace).
func managerRSS() (string, error) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.HasPrefix(b, []byte("/manager\x00")) {
			continue
		}
		status, err := os.ReadFile(filepath.Join(filepath.Dir(p), "status"))
		if err != nil {
			return "", err
		}
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				return strings.TrimSpace(v), nil
			}
		}
	}
	return "", fmt.Errorf("no /manager process found")
}

func runScript(ctx context.Context, path string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
