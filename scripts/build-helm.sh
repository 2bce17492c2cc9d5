#!/usr/bin/env bash
# Build helm (helm.sh/helm/v4, pinned in tools/helm/go.mod) from its Go module,
# like scripts/build-kube.sh builds the cluster's programs. Output: a cache
# outside the clone, keyed by helm's version and a hash of our module files, so
# every clone on this machine reuses it and nothing built is ever committed;
# a second run only checks the stamp.
# Prints the directory holding `helm` on its last line.
set -euo pipefail
cd "$(dirname "$0")/../tools/helm"

HELM_VERSION=$(awk '$1 == "helm.sh/helm/v4" || ($1 == "require" && $2 == "helm.sh/helm/v4") {print $NF; exit}' go.mod)
[ -n "$HELM_VERSION" ] || { echo "build-helm: helm.sh/helm/v4 is not required in tools/helm/go.mod" >&2; exit 1; }
CACHE_ROOT=${STX_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stx-intel-gpu/helm}
key=$(cat go.mod go.sum tools.go | sha256sum | cut -c1-12)
out="$CACHE_ROOT/$HELM_VERSION-$key"

if [ -f "$out/.complete" ] && [ -x "$out/helm" ]; then
    echo "$out"
    exit 0
fi
command -v go >/dev/null || { echo "build-helm: go is not installed (the Go in tools/helm/go.mod needed)" >&2; exit 1; }
mkdir -p "$out"
start=$(date +%s)
echo "build-helm: building helm $HELM_VERSION into $out; a first build takes a few minutes" >&2
# helm's `version` reads these; without them it reports v4.x-dev.
ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
ldflags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/helm" helm.sh/helm/v4/cmd/helm
mv "$tmp/helm" "$out/helm"
echo "$HELM_VERSION built in $(( $(date +%s) - start )) s" > "$out/.complete"
echo "build-helm: done in $(( $(date +%s) - start )) s" >&2
echo "$out"
