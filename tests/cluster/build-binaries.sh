#!/usr/bin/env bash
# Builds the real control-plane programs the end-to-end tests and the demo run:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok,
# from their Go modules at the versions pinned in tests/cluster/gobuild/*/go.mod.
#
# Binaries are cached outside the repository, keyed by a hash of the pins, so a
# later run finds them in well under a second. Prints the binary directory.
#
#   EDGE_SCHED_KUBE_BIN_DIR  use binaries from this directory instead (checked)
#   EDGE_SCHED_CACHE         cache root (default ~/.cache/edge-sched)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
programs=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

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

command -v go >/dev/null || { echo "go is required to build the control plane" >&2; exit 1; }

key=$(cat "$here"/gobuild/*/go.mod "$here"/gobuild/*/go.sum "$0" | sha256sum | cut -c1-16)
cache=${EDGE_SCHED_CACHE:-$HOME/.cache/edge-sched}
bin="$cache/kube-$key/bin"
if [[ -f "$bin/.complete" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
# -s -w and -trimpath shorten the link step, which dominates on two cores.
flags=(-trimpath -ldflags=-s\ -w)
build() {  # build <module dir> <output name> <package>
  local dir=$1 out=$2 pkg=$3 start=$SECONDS
  (cd "$here/gobuild/$dir" && go build "${flags[@]}" -o "$bin/$out" "$pkg")
  echo "built $out in $((SECONDS - start))s" >&2
}
build etcd etcd go.etcd.io/etcd/server/v3
build kwok kwok sigs.k8s.io/kwok/cmd/kwok
build kubernetes kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kubernetes kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kubernetes kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kubernetes kubectl k8s.io/kubernetes/cmd/kubectl
touch "$bin/.complete"
echo "$bin"
