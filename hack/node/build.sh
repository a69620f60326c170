#!/usr/bin/env bash
# Builds what a single real node needs, from source through the Go module
# proxy, and installs runc and the CNI plugins from Debian when missing:
#   bin/k8s/node-<k8s>/{kubelet,kube-controller-manager,kube-scheduler,kube-proxy}
#   bin/containerd/v<containerd>/{containerd,containerd-shim-runc-v2,ctr}
# Same pattern as hack/control-plane.sh: a throwaway module that requires
# k8s.io/kubernetes at the kube-apiserver's version and replaces every staging
# repo with its published tag. Reuses binaries already built.
#
# Usage: hack/node/build.sh [bin-dir]
#   Prints two lines on stdout: the k8s node folder, then the containerd
#   folder. Progress goes to stderr.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.36.3}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-2.4.2}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bindir="$(mkdir -p "${1:-$root/bin}" && cd "${1:-$root/bin}" && pwd)"
k8sdest="$bindir/k8s/node-$K8S_VERSION"
ctrdest="$bindir/containerd/v$CONTAINERD_VERSION"
K8S_BINS=(kubelet kube-controller-manager kube-scheduler kube-proxy)
CTR_BINS=(containerd containerd-shim-runc-v2 ctr)

say() { printf 'node-build: %s\n' "$*" >&2; }

all_there() {
  local dir=$1; shift
  for b in "$@"; do [ -x "$dir/$b" ] || return 1; done
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

progress() {
  local what=$1 pid=$2 start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30
    kill -0 "$pid" 2>/dev/null && say "still building $what ($((SECONDS - start))s so far)"
  done
  wait "$pid"
}

build_k8s() {
  local dir="$work/k8s" gomod
  mkdir -p "$dir" "$k8sdest"
  gomod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    echo "module tokenwarden.local/node"
    echo
    echo "go 1.25"
    echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    grep -Eo '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' | sort -u |
      while read -r repo; do echo "replace $repo => $repo v0.${K8S_VERSION#1.}"; done
  } >"$dir/go.mod"
  {
    echo '//go:build tools'
    echo
    echo 'package tools'
    echo
    for b in "${K8S_BINS[@]}"; do echo "import _ \"k8s.io/kubernetes/cmd/$b\""; done
  } >"$dir/tools.go"
  (
    cd "$dir"
    go mod tidy >/dev/null 2>&1 || go mod tidy
    local pkg=k8s.io/component-base/version minor
    minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
    for b in "${K8S_BINS[@]}"; do
      [ -x "$k8sdest/$b" ] && continue
      say "building $b v$K8S_VERSION"
      CGO_ENABLED=0 go build -trimpath \
        -ldflags "-X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
        -o "$k8sdest/$b.tmp" "k8s.io/kubernetes/cmd/$b"
      mv "$k8sdest/$b.tmp" "$k8sdest/$b"
    done
  )
}

build_containerd() {
  local dir="$work/containerd" mod=github.com/containerd/containerd/v2
  mkdir -p "$dir" "$ctrdest"
  {
    echo '//go:build tools'
    echo
    echo 'package tools'
    echo
    for b in "${CTR_BINS[@]}"; do echo "import _ \"$mod/cmd/$b\""; done
  } >"$dir/tools.go"
  (
    cd "$dir"
    go mod init tokenwarden.local/containerd >/dev/null 2>&1
    go get "$mod@v$CONTAINERD_VERSION" >/dev/null 2>&1 || go get "$mod@v$CONTAINERD_VERSION"
    go mod tidy >/dev/null 2>&1 || go mod tidy
    for b in "${CTR_BINS[@]}"; do
      [ -x "$ctrdest/$b" ] && continue
      say "building $b v$CONTAINERD_VERSION"
      CGO_ENABLED=0 go build -trimpath -tags "no_btrfs no_devmapper no_zfs no_aufs" \
        -ldflags "-X $mod/version.Version=v$CONTAINERD_VERSION" \
        -o "$ctrdest/$b.tmp" "$mod/cmd/$b"
      mv "$ctrdest/$b.tmp" "$ctrdest/$b"
    done
  )
}

install_debian() {
  local missing=()
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    say "missing ${missing[*]}: install them as root (apt-get install -y ${missing[*]})"
    return 1
  fi
  say "installing ${missing[*]} from Debian"
  apt-get update >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
}

install_debian
if ! all_there "$ctrdest" "${CTR_BINS[@]}"; then
  say "building containerd v$CONTAINERD_VERSION from source (about 1 minute on first run)"
  build_containerd &
  progress containerd $!
fi
if ! all_there "$k8sdest" "${K8S_BINS[@]}"; then
  say "building kubelet, kube-controller-manager, kube-scheduler, kube-proxy v$K8S_VERSION (3-5 minutes on first run)"
  build_k8s &
  progress "node binaries" $!
fi
say "node binaries ready in $k8sdest and $ctrdest"
echo "$k8sdest"
echo "$ctrdest"
