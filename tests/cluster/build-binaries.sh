#!/usr/bin/env bash
# Builds the real control-plane programs the end-to-end tests and the demo run:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok,
# from their Go modules at the versions pinned in tests/cluster/gobuild/*/go.mod.
#
# Binaries are cached outside the repository, keyed by a hash of the pins and of
# the build recipe below, so a later run finds them in well under a second.
# Prints the binary directory on stdout; progress goes to stderr.
#
#   EDGE_SCHED_KUBE_BIN_DIR  use binaries from this directory instead (checked)
#   KUBEBUILDER_ASSETS       envtest assets: their kube-apiserver, etcd (and
#                            kubectl) are used when they are the pinned versions;
#                            the other programs are built. Otherwise ignored.
#   EDGE_SCHED_CACHE         cache root (default ~/.cache/edge-sched)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
programs=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)
# The versions the go.mod files pin; binaries from elsewhere must match them.
kube_version=v1.36.3
etcd_version=3.6.8

if [[ -n "${EDGE_SCHED_KUBE_BIN_DIR:-}" ]]; then
  for p in "${programs[@]}"; do
    [[ -x "$EDGE_SCHED_KUBE_BIN_DIR/$p" ]] || {
      echo "EDGE_SCHED_KUBE_BIN_DIR=$EDGE_SCHED_KUBE_BIN_DIR lacks an executable $p" >&2
      exit 1
    }
  done
  echo "$EDGE_SCHED_KUBE_BIN_DIR"
  exit 0
fi

# -s -w and -trimpath shorten the link step, which dominates on two cores.
# The Kubernetes programs get the version stamps their release build sets (`go build`
# of the module alone reports v0.0.0-master), so `--version` and /version say
# $kube_version.
ldflags="-s -w"
kube_ldflags="$ldflags"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=${kube_version:1:1}"
  kube_ldflags+=" -X $pkg.gitMinor=$(cut -d. -f2 <<<"$kube_version") -X $pkg.gitTreeState=clean"
done
# The recipe is part of the cache key: change it and everything is rebuilt.
recipe="go build -trimpath -ldflags '$ldflags' / kubernetes: '$kube_ldflags'"
key=$({ cat "$here"/gobuild/*/go.mod "$here"/gobuild/*/go.sum; echo "$recipe"; } | sha256sum | cut -c1-16)
cache=${EDGE_SCHED_CACHE:-$HOME/.cache/edge-sched}
bin="$cache/kube-$key/bin"

# Which programs come from KUBEBUILDER_ASSETS (only when they are the pinned versions).
declare -A from_assets=()
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  assets=$KUBEBUILDER_ASSETS
  apiserver_v=$("$assets/kube-apiserver" --version 2>/dev/null || true)
  etcd_v=$("$assets/etcd" --version 2>/dev/null | head -n1 || true)
  if [[ "$apiserver_v" == "Kubernetes $kube_version" && "$etcd_v" == "etcd Version: $etcd_version" ]]; then
    from_assets[kube-apiserver]=1
    from_assets[etcd]=1
    kubectl_v=$("$assets/kubectl" version --client 2>/dev/null | head -n1 || true)
    [[ "$kubectl_v" == "Client Version: $kube_version" ]] && from_assets[kubectl]=1
    echo "using ${!from_assets[*]} from KUBEBUILDER_ASSETS=$assets" >&2
  else
    echo "ignoring KUBEBUILDER_ASSETS=$assets: found '${apiserver_v:-no kube-apiserver}'" \
      "and '${etcd_v:-no etcd}', need Kubernetes $kube_version and etcd $etcd_version" >&2
  fi
fi

if [[ ${#from_assets[@]} -eq 0 && -f "$bin/.complete" ]]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "go is required to build the control plane (Go >= 1.26)" >&2; exit 1; }
mkdir -p "$bin"
# Two concurrent test sessions must not build into the same directory.
exec 9>"$cache/kube-$key.lock"
flock 9

build() {  # build <module dir> <output name> <package>
  local dir=$1 out=$2 pkg=$3 start=$SECONDS flags=$ldflags
  [[ -x "$bin/$out" || -n "${from_assets[$out]:-}" ]] && return 0
  [[ $dir == kubernetes ]] && flags=$kube_ldflags
  # Build beside the target and rename, so an interrupted build never leaves a
  # truncated binary that a later run would take for a finished one.
  (cd "$here/gobuild/$dir" && go build -trimpath -ldflags="$flags" -o "$bin/.$out.partial" "$pkg")
  mv "$bin/.$out.partial" "$bin/$out"
  echo "built $out in $((SECONDS - start))s" >&2
}
build etcd etcd go.etcd.io/etcd/server/v3
build kwok kwok sigs.k8s.io/kwok/cmd/kwok
build kubernetes kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kubernetes kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kubernetes kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kubernetes kubectl k8s.io/kubernetes/cmd/kubectl

if [[ ${#from_assets[@]} -eq 0 ]]; then
  touch "$bin/.complete"
  echo "$bin"
  exit 0
fi

# Mixed set: one directory of links, per assets directory, so callers still get
# a single bin dir holding every program.
mixed="$cache/kube-$key/assets-$(realpath "$assets" | sha256sum | cut -c1-12)"
mkdir -p "$mixed"
for p in "${programs[@]}"; do
  if [[ -n "${from_assets[$p]:-}" ]]; then
    ln -sfn "$(realpath "$assets/$p")" "$mixed/$p"
  else
    ln -sfn "$bin/$p" "$mixed/$p"
  fi
done
echo "$mixed"
