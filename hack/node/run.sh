#!/usr/bin/env bash
# Runs a command next to a real single node on the local control plane and
# leaves the machine as it found it.
#
#   hack/node/run.sh [command...]      (root; default: an interactive shell)
#
# The node (see inside.sh) runs in new mount, network and PID namespaces,
# so its processes, mounts, interfaces, iptables chains and per-network
# sysctls end with them. What is global, and undone here: the cgroups the
# kubelet creates (kubepods in every v1 hierarchy), the kernel sysctls it
# sets (vm.overcommit_memory, vm.panic_on_oom, kernel.panic,
# kernel.panic_on_oops, kernel.keys.root_maxkeys, kernel.keys.root_maxbytes)
# and the empty mount points made on the real disk. At the end it lists
# whatever is left and fails if anything is.
#
# Needs: hack/node/build.sh's binaries, the control plane
# (hack/control-plane.sh), the images in bin/images/node (make node-images).
# NODE_SYNC_FREQUENCY sets the kubelet's syncFrequency (default 10s);
# NODE_KEEP_STATE=1 keeps the state folder (logs) after the run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${LOCALBIN:-$root/bin}"
say() { printf 'node: %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
  say "must run as root (the kubelet and containerd manage mounts, cgroups and networks)"
  exit 1
fi
k8s="$("$root/hack/control-plane.sh" "$bin" | tail -n 1)"
mapfile -t dirs < <("$root/hack/node/build.sh" "$bin")
images="${NODE_IMAGES:-$bin/images/node}"
ls "$images"/*.tar >/dev/null 2>&1 || { say "no images in $images: run make node-images"; exit 1; }

state="$(mktemp -d /tmp/tokenwarden-node.XXXXXX)"
sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
declare -A before
for s in "${sysctls[@]}"; do before[$s]="$(sysctl -n "$s")"; done
cgroups_now() { find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d -name 'kubepods*' 2>/dev/null | sort; }
preexisting_cgroups="$(cgroups_now)"
if [ -n "$preexisting_cgroups" ]; then
  say "kubepods cgroups exist before the run (another node on this machine?):"
  echo "$preexisting_cgroups" >&2
  exit 1
fi
mountpoints=(/var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /run/netns /var/run/netns /etc/cni/net.d /run/containerd)
made=()
for d in "${mountpoints[@]}"; do
  [ -e "$d" ] && continue
  # The first missing ancestor is what this run creates.
  top="$d"
  while [ ! -e "$(dirname "$top")" ]; do top="$(dirname "$top")"; done
  made+=("$top")
  mkdir -p "$d"
done

cleanup() {
  local rc=$?
  set +e
  # Kernel sysctls are not namespaced; the kubelet sets them at start.
  for s in "${sysctls[@]}"; do
    [ "$(sysctl -n "$s")" = "${before[$s]}" ] || sysctl -q -w "$s=${before[$s]}"
  done
  # cgroup v1 hierarchies are global: remove the kubelet's, deepest first,
  # retrying while the last tasks die.
  for _ in $(seq 50); do
    [ -z "$(cgroups_now)" ] && break
    for top in $(cgroups_now); do
      find "$top" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    [ -z "$(cgroups_now)" ] || sleep 0.2
  done
  # Only empty folders: the node's files went to tmpfs in its namespace.
  for d in "${made[@]}"; do find "$d" -depth -type d -empty -delete 2>/dev/null; done
  # What is left, listed: any line is a leak.
  local left=()
  while read -r c; do [ -n "$c" ] && left+=("cgroup $c"); done < <(cgroups_now)
  for s in "${sysctls[@]}"; do
    [ "$(sysctl -n "$s")" = "${before[$s]}" ] || left+=("sysctl $s=$(sysctl -n "$s") (was ${before[$s]})")
  done
  for d in "${made[@]}"; do [ -e "$d" ] && left+=("path $d"); done
  while read -r m; do left+=("mount $m"); done < <(grep -F "$state" /proc/self/mounts | awk '{print $2}')
  while read -r p; do left+=("process $p"); done < <(pgrep -a -f "$state" | grep -v "^$$ " || true)
  ip link show tw-cni0 >/dev/null 2>&1 && left+=("interface tw-cni0 in the host network namespace")
  iptables -S 2>/dev/null | grep -q 'KUBE-' && left+=("iptables KUBE- chains in the host network namespace")
  if [ ${#left[@]} -eq 0 ]; then
    say "cleanup verified: no process, mount, cgroup, sysctl, interface, iptables chain or path left"
  else
    say "cleanup left behind:"
    printf '  %s\n' "${left[@]}" >&2
    [ "$rc" = 0 ] && rc=1
  fi
  if [ "${NODE_KEEP_STATE:-}" = 1 ] || [ "$rc" != 0 ]; then
    say "logs kept in $state/log"
  else
    rm -rf "$state"
  fi
  exit "$rc"
}
trap cleanup EXIT

[ $# -gt 0 ] || set -- bash -i
# --kill-child: if this script is stopped (Ctrl-C, SIGTERM, a closed
# terminal), the namespace's first process gets SIGKILL and the kernel
# kills every other process in the PID namespace with it.
unshare --mount --net --pid --fork --mount-proc --propagation private --kill-child \
  "$root/hack/node/inside.sh" "$state" "$k8s" "${dirs[0]}" "${dirs[1]}" "$images" "$@" &
child=$!
# unshare ignores SIGINT and SIGTERM while it waits for its child: KILL it.
stop() { kill -KILL "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 130; }
trap stop INT TERM HUP
wait "$child"
