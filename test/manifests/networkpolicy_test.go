package manifests_test

import (
	"slices"
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestNetworkPolicies checks the example policies of config/network-policy
// against what config/network-policy/README.md promises and against the
// rendered Deployment. Whether a network plugin enforces them cannot be
// checked here: envtest has no nodes.
func TestNetworkPolicies(t *testing.T) {
	deploy := typed[appsv1.Deployment](t, only(t, renderObjects(t, "default"), "Deployment"))
	podLabels := labels.Set(deploy.Spec.Template.Labels)

	policies := map[string]*networkingv1.NetworkPolicy{}
	for _, o := range ofKind(renderObjects(t, "network-policy"), "NetworkPolicy") {
		np := typed[networkingv1.NetworkPolicy](t, o)
		policies[np.Name] = np
		if np.Namespace != deploy.Namespace {
			t.Errorf("NetworkPolicy %s is in %s, the manager in %s", np.Name, np.Namespace, deploy.Namespace)
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Fatalf("NetworkPolicy %s: %v", np.Name, err)
		}
		if sel.Empty() || !sel.Matches(podLabels) {
			t.Errorf("NetworkPolicy %s selects %s, which does not pick the manager Pod (labels %v)", np.Name, sel, podLabels)
		}
	}

	egress := policies["tokenwarden-manager-egress"]
	if egress == nil {
		t.Fatal("no NetworkPolicy tokenwarden-manager-egress")
	}
	if !slices.Equal(egress.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}) {
		t.Errorf("egress policy types %v", egress.Spec.PolicyTypes)
	}
	var dns, apiServer, https bool
	for _, r := range egress.Spec.Egress {
		ports := portSet(r.Ports)
		switch {
		case ports["UDP/53"] && ports["TCP/53"] && len(ports) == 2:
			for _, peer := range r.To {
				dns = dns || (peer.PodSelector != nil && peer.PodSelector.MatchLabels["k8s-app"] == "kube-dns" &&
					peer.NamespaceSelector != nil && peer.NamespaceSelector.MatchLabels[corev1.LabelMetadataName] == "kube-system")
			}
		case ports["TCP/6443"]:
			apiServer = len(r.To) > 0 && r.To[0].IPBlock != nil
		case ports["TCP/443"] && len(ports) == 1:
			for _, peer := range r.To {
				if peer.IPBlock == nil || peer.IPBlock.CIDR != "0.0.0.0/0" {
					continue
				}
				https = true
				for _, private := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} {
					if !slices.Contains(peer.IPBlock.Except, private) {
						t.Errorf("the HTTPS egress rule does not exclude %s", private)
					}
				}
			}
		default:
			t.Errorf("unexpected egress rule %+v", r)
		}
	}
	if !dns || !apiServer || !https {
		t.Errorf("egress rules: DNS to kube-dns %t, API server %t, HTTPS to 0.0.0.0/0 %t; want all", dns, apiServer, https)
	}

	ingress := policies["tokenwarden-metrics-ingress"]
	if ingress == nil {
		t.Fatal("no NetworkPolicy tokenwarden-metrics-ingress")
	}
	if !slices.Equal(ingress.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("ingress policy types %v", ingress.Spec.PolicyTypes)
	}
	var metricsPort int32
	for _, p := range deploy.Spec.Template.Spec.Containers[0].Ports {
		if p.Name == "metrics" {
			metricsPort = p.ContainerPort
		}
	}
	if len(ingress.Spec.Ingress) != 1 {
		t.Fatalf("want one ingress rule (metrics from monitoring), got %d", len(ingress.Spec.Ingress))
	}
	r := ingress.Spec.Ingress[0]
	if ports := portSet(r.Ports); len(ports) != 1 || !ports["TCP/"+strconv.Itoa(int(metricsPort))] || metricsPort != 8443 {
		t.Errorf("ingress ports %v, want only the metrics port TCP/8443 (the Deployment's is %d)", ports, metricsPort)
	}
	if len(r.From) != 1 || r.From[0].NamespaceSelector == nil || r.From[0].PodSelector != nil || r.From[0].IPBlock != nil ||
		r.From[0].NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != "monitoring" {
		t.Errorf("ingress from %+v, want only the namespace monitoring", r.From)
	}
}

// portSet returns "PROTO/port" for each port of a rule.
func portSet(ports []networkingv1.NetworkPolicyPort) map[string]bool {
	set := map[string]bool{}
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		port := "*"
		if p.Port != nil {
			port = p.Port.String()
		}
		set[string(proto)+"/"+port] = true
	}
	return set
}
