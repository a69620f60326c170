#!/usr/bin/env bash
# Builds kube-apiserver and etcd from source through the Go module proxy, for
# envtest, the e2e suite, the demo and the benchmark. There is no download of
# prebuilt binaries on purpose: the Go module proxy is the one registry that
# every machine tokenwarden is developed on can reach.
#
# Usage: hack/control-plane.sh [bin-dir]
#   Prints the directory holding kube-apiserver and etcd on stdout (the last
#   line) and progress on stderr. Reuses binaries already built there. Honours
#   KUBEBUILDER_ASSETS when it already points at both binaries.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bindir="$(mkdir -p "${1:-$root/bin}" && cd "${1:-$root/bin}" && pwd)"
dest="$bindir/k8s/$K8S_VERSION-etcd-$ETCD_VERSION"

say() { printf 'control-plane: %s\n' "$*" >&2; }

has_both() { [ -x "$1/kube-apiserver" ] && [ -x "$1/etcd" ]; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && has_both "$KUBEBUILDER_ASSETS"; then
  say "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi
if has_both "$dest"; then
  echo "$dest"
  exit 0
fi

mkdir -p "$dest"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Prints a line every 30 s while a long build runs, so nobody thinks it hung.
progress() {
  local what=$1 pid=$2 start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30
    kill -0 "$pid" 2>/dev/null && say "still building $what ($((SECONDS - start))s so far)"
  done
  wait "$pid"
}

build_etcd() {
  local dir="$work/etcd"
  mkdir -p "$dir"
  cat >"$dir/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (
    cd "$dir"
    go mod init tokenwarden.local/etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1
    go mod tidy >/dev/null 2>&1
    CGO_ENABLED=0 go build -trimpath -o "$dest/etcd.tmp" .
  )
  mv "$dest/etcd.tmp" "$dest/etcd"
}

build_apiserver() {
  local dir="$work/apiserver"
  mkdir -p "$dir"
  # k8s.io/kubernetes refers to its staging repos as v0.0.0 with local
  # replaces; a consuming module must replace each with the published tag.
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    echo "module tokenwarden.local/apiserver"
    echo
    echo "go 1.25"
    echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    grep -Eo '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' | sort -u |
      while read -r repo; do echo "replace $repo => $repo v0.${K8S_VERSION#1.}"; done
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  (
    cd "$dir"
    go mod tidy >/dev/null 2>&1 || go mod tidy
    local pkg=k8s.io/component-base/version minor
    minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
      -o "$dest/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  )
  mv "$dest/kube-apiserver.tmp" "$dest/kube-apiserver"
}

if [ ! -x "$dest/etcd" ]; then
  say "building etcd v$ETCD_VERSION from source (about 1 minute on first run)"
  build_etcd &
  progress etcd $!
fi
if [ ! -x "$dest/kube-apiserver" ]; then
  say "building kube-apiserver v$K8S_VERSION from source (about 8 minutes on first run)"
  build_apiserver &
  progress kube-apiserver $!
fi
say "control plane binaries ready in $dest"
echo "$dest"
