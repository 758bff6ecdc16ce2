#!/usr/bin/env bash
# Build the local control plane binaries (kube-apiserver, kube-controller-manager, etcd, helm)
# from Go modules into a cache outside the repository, keyed by version.
# Idempotent: with every binary present it returns in well under a second.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_VERSION="${K8S_VERSION:-v1.33.13}"
HELM_VERSION="${HELM_VERSION:-v3.19.5}"
cache_root="${VECTORLOAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vectorload}"
bin_dir="$cache_root/k8s-$K8S_VERSION/bin"
helm_dir="$cache_root/helm-$HELM_VERSION-k8s-$K8S_VERSION/bin"

export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=mod"



build_k8s() {
  local name="$1" pkg="$2" out="$bin_dir/$1"
  if [ -x "$out" ]; then echo "  ✓ $name (cached)"; return; fi
  echo "  … building $name ($pkg) — cold builds take several minutes"
  local start=$SECONDS
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ldflags="-s -w"
  local vpkg
  for vpkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $vpkg.gitVersion=$K8S_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor"
    ldflags+=" -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$here/k8s" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  echo "  ✓ $name built in $((SECONDS - start)) s"
}

mkdir -p "$bin_dir" "$helm_dir"
echo "local control plane binaries → $bin_dir"
build_k8s etcd go.etcd.io/etcd/server/v3
build_k8s kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build_k8s kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
if [ -x "$helm_dir/helm" ]; then
  echo "  ✓ helm (cached)"
else
  echo "  … building helm $HELM_VERSION"
  start=$SECONDS
  # stamp helm's version and the Kubernetes version it assumes offline (`helm template`, lint)
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  helm_ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for hpkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    helm_ldflags+=" -X $hpkg.k8sVersionMajor=1 -X $hpkg.k8sVersionMinor=$minor"
  done
  GOFLAGS="-buildvcs=false" GOBIN="$helm_dir" go install -trimpath -ldflags "$helm_ldflags" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  echo "  ✓ helm built in $((SECONDS - start)) s"
fi
