#!/usr/bin/env bash
# `just demo`: the train -> validate -> reload flow on this machine, with no cluster needed.
# Builds (once, cached) the control-plane, node, KServe and Argo CD binaries, our binaries and
# the images the node runs, starts the local control plane with a real node if it is not
# running (hack/local-node.sh; it needs root), plays the
# demo (e2e/src/demo/), and stops everything it started - at the end, on Ctrl-C, or on failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"
# shellcheck source=lib/versions.sh
source "$here/lib/versions.sh"
# shellcheck source=lib/processes.sh
source "$here/lib/processes.sh"
require_tools cargo go python3 git openssl curl ss setsid

started_cluster=""
demo_pgid=""
cleanup() {
  local rc=$?
  if [ -n "$demo_pgid" ]; then
    # SIGINT first: the demo stops its controllers and says so; then nothing may remain.
    kill -INT -- "-$demo_pgid" 2>/dev/null || true
    sleep 2
    kill -KILL -- "-$demo_pgid" 2>/dev/null || true
  fi
  local pid
  for pid in $(checkout_kernels "$repo"); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -n "$started_cluster" ]; then
    step "stopping the local control plane the demo started"
    "$here/local-cluster.sh" down || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# `--no-kserve`, `--no-argocd`: the demo plays KServe's or Argo CD's part, so it is not built.
components=(etcd kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet kube-proxy coredns helm kserve argocd)
for arg in "$@"; do
  case "$arg" in
    --no-kserve) components=("${components[@]/kserve/}") ;;
    --no-argocd) components=("${components[@]/argocd/}") ;;
  esac
done
read -r -a components <<<"${components[*]}"
step "Kubernetes, KServe and Argo CD binaries (built from source once - about 12 minutes for Kubernetes and KServe, 12 more for Argo CD, the first time - then cached in $NBG_BIN_DIR)"
"$here/build-binaries.sh" "${components[@]}"
# The real Argo CD runs redis beside its components.
case " ${components[*]} " in *" argocd "*) install_missing redis-server:redis-server ;; esac

step "our binaries (cargo; several minutes the first time)"
cargo build -p nvj-validator -p trigger-controller -p nbg-e2e --bin nvj-validator --bin trigger-controller --bin demo
step "the images the node runs: nvj-validator's (its runner), then the notebook runner and KServe's sklearn server (built once, a few minutes)"
"$here/images.sh" "${CARGO_TARGET_DIR:-$repo/target}/images"

step "local control plane"
if ! "$here/local-cluster.sh" status | grep -q '^api: ready'; then
  started_cluster=1
fi
# The pods run on a real node (a running control plane without one is restarted with one).
NBG_NODE=real NBG_NODE_IMAGE_DIR="${CARGO_TARGET_DIR:-$repo/target}/images" "$here/local-cluster.sh" up

step "the demo"
# In its own process group, so everything it starts stops with it.
NBG_DEMO_STOPS_CLUSTER="${started_cluster}" setsid "${CARGO_TARGET_DIR:-target}/debug/demo" "$@" &
demo_pgid=$!
wait "$demo_pgid"
