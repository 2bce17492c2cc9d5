#!/usr/bin/env bash
# Build the local cluster's programs from their Go modules (tools/kube/go.mod):
# kube-apiserver, kube-controller-manager, kube-scheduler and kubelet of
# k8s.io/kubernetes v1.34.1 (the 1.34 release StarlingX ships), etcd v3.6.4 (the
# etcd of that release's module graph) and fake-cri (Kubernetes' own fake CRI
# runtime behind our tiny main). Output: a cache outside the clone, keyed by the
# Kubernetes version and a hash of the module files and our Go sources, so every
# clone on this machine reuses it; a second run only checks the stamp.
# Prints the directory of the binaries on its last line.
set -euo pipefail
cd "$(dirname "$0")/../tools/kube"

KUBE_VERSION=v1.34.1
CACHE_ROOT=${STX_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stx-intel-gpu/kube}
key=$(cat go.mod go.sum tools.go cmd/*/main.go | sha256sum | cut -c1-12)
out="$CACHE_ROOT/$KUBE_VERSION-$key"
programs=(kube-apiserver kube-controller-manager kube-scheduler kubelet etcd fake-cri)

if [ -f "$out/.complete" ]; then
    echo "$out"
    exit 0
fi
command -v go >/dev/null || { echo "build-kube: go is not installed (Go >= 1.24 needed)" >&2; exit 1; }
mkdir -p "$out"
start=$(date +%s)
echo "build-kube: building ${programs[*]} ($KUBE_VERSION) into $out; a first build takes a while" >&2
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
done
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet \
    ./cmd/etcd ./cmd/fake-cri
for p in "${programs[@]}"; do
    mv "$tmp/$p" "$out/$p"
done
echo "$KUBE_VERSION built in $(( $(date +%s) - start )) s" > "$out/.complete"
echo "build-kube: done in $(( $(date +%s) - start )) s" >&2
echo "$out"
