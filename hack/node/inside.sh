#!/usr/bin/env bash
# The node itself, run by hack/node/run.sh inside new mount, network and PID
# namespaces: etcd and kube-apiserver, containerd (runc, bridge CNI),
# kube-controller-manager, kube-scheduler and a kubelet named localhost,
# then the given command with NODE_KUBECONFIG and NODE_STATE set. When the
# command ends, every process here ends with the PID namespace, and the
# mounts, interfaces, iptables chains and per-network sysctls with theirs.
#
# Usage (from run.sh): inside.sh STATE_DIR K8S_DIR NODE_DIR CONTAINERD_DIR IMAGE_DIR command...
set -euo pipefail

S=$1 K8S=$2 NODEBIN=$3 CTRD=$4 IMAGES=$5
shift 5
export PATH="$CTRD:$NODEBIN:$PATH"

NODE_IP=10.99.0.1       # on lo: reachable from Pods through the bridge's gateway
SERVICE_CIDR=10.0.0.0/24
KUBERNETES_SVC=10.0.0.1 # first address of SERVICE_CIDR
POD_CIDR=10.88.0.0/16
SYNC_FREQUENCY="${NODE_SYNC_FREQUENCY:-10s}"
ADMISSION="${NODE_ADMISSION_PLUGINS:-NodeRestriction,OwnerReferencesPermissionEnforcement}"

say() { printf 'node: %s\n' "$*" >&2; }
mkdir -p "$S"/{pki,log,run,etcd,cni/net.d,containerd,kubelet-cfg}

# --- file system: private copies of what the kubelet and CNI write outside
# their own folders; they vanish with this mount namespace.
for d in /var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /run/netns /var/run/netns /etc/cni/net.d /run/containerd; do
  mkdir -p "$d"
  mount -t tmpfs -o mode=0755 tmpfs "$d"
done
mount --make-rshared /var/lib/kubelet

# --- network: loopback and the node's address; the kubernetes Service
# routed to the API server by one DNAT rule (kube-proxy's job for it).
ip link set lo up
ip addr add "$NODE_IP/32" dev lo
iptables -t nat -A PREROUTING -d "$KUBERNETES_SVC/32" -p tcp --dport 443 -j DNAT --to-destination "$NODE_IP:6443"
iptables -t nat -A OUTPUT -d "$KUBERNETES_SVC/32" -p tcp --dport 443 -j DNAT --to-destination "$NODE_IP:6443"

# --- PKI: a CA, the API server's serving certificate (the kubernetes
# Service's address among its names, for in-cluster clients), its client
# certificate towards the kubelet, the ServiceAccount signing key.
pki="$S/pki"
openssl_q() { openssl "$@" >/dev/null 2>&1; }
openssl_q req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tokenwarden-node-ca" -keyout "$pki/ca.key" -out "$pki/ca.crt"
cat >"$pki/apiserver.ext" <<EXT
subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SVC
extendedKeyUsage=serverAuth
EXT
openssl_q req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr"
openssl_q x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 2 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt"
echo "extendedKeyUsage=clientAuth" >"$pki/client.ext"
openssl_q req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" -keyout "$pki/kubelet-client.key" -out "$pki/kubelet-client.csr"
openssl_q x509 -req -in "$pki/kubelet-client.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 2 -extfile "$pki/client.ext" -out "$pki/kubelet-client.crt"
openssl_q genrsa -out "$pki/sa.key" 2048
openssl_q rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

# Static bearer tokens, random per run, one per component.
tok() { openssl rand -hex 24; }
ADMIN_TOKEN=$(tok) KUBELET_TOKEN=$(tok) KCM_TOKEN=$(tok) SCHED_TOKEN=$(tok)
umask 077
cat >"$pki/tokens.csv" <<CSV
$ADMIN_TOKEN,admin,admin,system:masters
$KUBELET_TOKEN,system:node:localhost,kubelet,system:nodes
$KCM_TOKEN,system:kube-controller-manager,kcm
$SCHED_TOKEN,system:kube-scheduler,scheduler
CSV
kubeconfig() { # name token
  cat >"$S/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: node
  cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$pki/ca.crt"}
users:
- name: $1
  user: {token: "$2"}
contexts:
- name: node
  context: {cluster: node, user: $1}
current-context: node
KC
}
kubeconfig admin "$ADMIN_TOKEN"
kubeconfig kubelet "$KUBELET_TOKEN"
kubeconfig kcm "$KCM_TOKEN"
kubeconfig scheduler "$SCHED_TOKEN"
umask 022

start() { # name command...
  local name=$1; shift
  "$@" >"$S/log/$name.log" 2>&1 &
  echo $! >"$S/run/$name.pid"
}
wait_for() { # what seconds command...
  local what=$1 n=$2; shift 2
  for _ in $(seq "$((n * 5))"); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$(cat "$S/run/$what.pid")" 2>/dev/null || break
    sleep 0.2
  done
  say "$what did not come up in ${n}s or exited; last lines of its log:"
  tail -n 30 "$S/log/$what.log" >&2 || true
  return 1
}
kc() { kubectl --kubeconfig "$S/admin.kubeconfig" "$@"; }

say "starting etcd and kube-apiserver"
start etcd "$K8S/etcd" --data-dir "$S/etcd" --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --unsafe-no-fsync
start kube-apiserver "$K8S/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
  --bind-address 0.0.0.0 --advertise-address "$NODE_IP" --secure-port 6443 \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" --client-ca-file "$pki/ca.crt" \
  --token-auth-file "$pki/tokens.csv" --authorization-mode Node,RBAC \
  --service-cluster-ip-range "$SERVICE_CIDR" --service-account-issuer "https://kubernetes.default.svc" \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --kubelet-client-certificate "$pki/kubelet-client.crt" --kubelet-client-key "$pki/kubelet-client.key" \
  --kubelet-preferred-address-types Hostname,InternalIP --enable-admission-plugins "$ADMISSION" \
  --allow-privileged=true --cert-dir "$S/pki/apiserver-generated"
wait_for kube-apiserver 60 kc get --raw /readyz

say "starting containerd"
cat >"$S/containerd/config.toml" <<TOML
version = 3
root = "$S/containerd/root"
state = "/run/containerd/state"
[grpc]
  address = "$S/containerd/containerd.sock"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = 'docker.io/library/tokenwarden-pause:node'
[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE: without this every Pod sandbox fails
  # with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '$(command -v runc)'
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = '/etc/cni/net.d'
TOML
start containerd containerd --config "$S/containerd/config.toml"
ctr() { "$CTRD/ctr" --address "$S/containerd/containerd.sock" "$@"; }
wait_for containerd 30 ctr version
for img in "$IMAGES"/*.tar; do
  ctr -n k8s.io images import --local "$img" >/dev/null 2>&1 || ctr -n k8s.io images import --local "$img"
done
say "images: $(ctr -n k8s.io images ls -q 2>/dev/null | grep -v '^sha256:' | tr '\n' ' ')"

cat >/etc/cni/net.d/10-tokenwarden.conflist <<JSON
{"cniVersion": "1.0.0", "name": "tokenwarden-node", "plugins": [
  {"type": "bridge", "bridge": "tw-cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
JSON

say "starting kube-controller-manager and kube-scheduler"
start kube-controller-manager "$NODEBIN/kube-controller-manager" --kubeconfig "$S/kcm.kubeconfig" \
  --authentication-kubeconfig "$S/kcm.kubeconfig" --authorization-kubeconfig "$S/kcm.kubeconfig" \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" --use-service-account-credentials \
  --leader-elect=false --bind-address 127.0.0.1 --secure-port 10257 --controllers '*,-node-ipam-controller,-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller'
start kube-scheduler "$NODEBIN/kube-scheduler" --kubeconfig "$S/scheduler.kubeconfig" \
  --authentication-kubeconfig "$S/scheduler.kubeconfig" --authorization-kubeconfig "$S/scheduler.kubeconfig" \
  --leader-elect=false --bind-address 127.0.0.1 --secure-port 10259

write_kubelet_config() { # syncFrequency
  cat >"$S/kubelet-cfg/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$S/containerd/containerd.sock
readOnlyPort: 0
address: 127.0.0.1
healthzBindAddress: 127.0.0.1
syncFrequency: $1
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
YAML
}
start_kubelet() {
  start kubelet "$NODEBIN/kubelet" --config "$S/kubelet-cfg/config.yaml" --kubeconfig "$S/kubelet.kubeconfig" \
    --hostname-override localhost --node-ip "$NODE_IP" --root-dir /var/lib/kubelet --v 2
}
write_kubelet_config "$SYNC_FREQUENCY"
say "starting the kubelet (syncFrequency $SYNC_FREQUENCY)"
start_kubelet
wait_for kubelet 90 kc wait --for=condition=Ready node/localhost --timeout=1s
# ServiceAccount admission refuses Pods until the controller made "default".
wait_for kube-controller-manager 60 kc -n default get serviceaccount default

# restart-kubelet.sh SYNC: the test measures the default sync period on the
# same node, with the Pods kept running.
cat >"$S/restart-kubelet.sh" <<RESTART
#!/usr/bin/env bash
set -euo pipefail
$(declare -f say start write_kubelet_config start_kubelet)
S="$S" pki="$pki" NODEBIN="$NODEBIN" NODE_IP="$NODE_IP"
kill "\$(cat "\$S/run/kubelet.pid")"; while kill -0 "\$(cat "\$S/run/kubelet.pid")" 2>/dev/null; do sleep 0.2; done
mv "\$S/log/kubelet.log" "\$S/log/kubelet.\$(date +%s).log"
write_kubelet_config "\$1"
start_kubelet
say "kubelet restarted with syncFrequency \$1"
RESTART
chmod +x "$S/restart-kubelet.sh"

say "node localhost Ready: $(kc get node localhost -o jsonpath='{.status.nodeInfo.kubeletVersion} {.status.nodeInfo.containerRuntimeVersion}')"
export NODE_KUBECONFIG="$S/admin.kubeconfig" NODE_STATE="$S" NODE_IP NODE_SYNC_FREQUENCY="$SYNC_FREQUENCY"
rc=0
"$@" || rc=$?
say "command exited $rc; stopping the node"
# Best effort from here on: the exit status is the command's.
set +e +o pipefail
# Pods first, so that the kubelet unmounts their volumes and containerd
# removes their cgroups; what is left ends with the PID namespace.
kc delete namespace --all --wait=false >/dev/null 2>&1 || true
for p in kubelet kube-scheduler kube-controller-manager; do kill "$(cat "$S/run/$p.pid")" 2>/dev/null || true; done
ctr -n k8s.io tasks ls -q 2>/dev/null | while read -r t; do ctr -n k8s.io tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
sleep 1
for c in $(ctr -n k8s.io containers ls -q 2>/dev/null); do ctr -n k8s.io tasks delete -f "$c" >/dev/null 2>&1 || true; done
kill "$(cat "$S/run/containerd.pid")" 2>/dev/null || true
sleep 1
# Mounts containerd made under its root (overlay snapshots, shm) are on
# the real disk: unmount them before the namespace goes.
grep -o " $S/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
exit "$rc"
