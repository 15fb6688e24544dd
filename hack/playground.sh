#!/usr/bin/env bash
# `just up` / `just down`: a playground to validate your own notebooks on this machine. `up`
# starts the local control plane with a real node (containerd, kubelet, kube-proxy, CoreDNS:
# hack/local-node.sh), installs the umbrella chart's controllers on it from the images built
# here (hack/images.sh; Argo CD is not part of the playground, so neither is
# app-status-aggregator), and serves the git repositories on this machine to the node's pods,
# in the background; then it prints what runs. `hack/just kubectl apply -f my-nvj.yaml`
# validates a notebook for real, in the notebook-runner image (hack/node-images.sh).
#
# A notebook in a git repository on this machine is named by its path behind the Service
# nbg-system/git: `url: git://git.nbg-system.svc/path/to/repo` (the NVJ API accepts network URLs
# only). A read-only git daemon on the host end of the node's link serves the repositories
# under NBG_PLAYGROUND_GIT_DIRS; the Service's endpoint is that daemon.
#
# usage: hack/playground.sh up|down|status
# Environment: NBG_PLAYGROUND_NAMESPACES (where the controllers act, comma-separated; default:
# default), NBG_PLAYGROUND_GIT_DIRS (directories the git daemon may serve, space-separated;
# default: your home directory and /tmp), and those of hack/local-cluster.sh (NBG_CLUSTER_DIR,
# ports).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"
# shellcheck source=lib/versions.sh
source "$here/lib/versions.sh"
# shellcheck source=lib/processes.sh
source "$here/lib/processes.sh"

cluster_dir="${NBG_CLUSTER_DIR:-$repo/target/local-cluster}"
state="$cluster_dir/playground"
logs="$state/logs"
pids="$state/pids"
kubeconfig="$cluster_dir/kubeconfig"
namespaces="${NBG_PLAYGROUND_NAMESPACES:-default}"
git_dirs="${NBG_PLAYGROUND_GIT_DIRS:-$HOME /tmp}"
target="${CARGO_TARGET_DIR:-$repo/target}"
release_ns=nbg-system
# The controllers the playground installs: app-status-aggregator writes onto Argo CD
# Applications, and the playground has no Argo CD.
controllers=(nvj-validator trigger-controller wave-marker event-notifier)

say() { printf '[playground] %s\n' "$*" >&2; }
# shellcheck source=lib/components.sh
source "$here/lib/components.sh"
bin() { "$here/build-binaries.sh" --path "$1"; }
kubectl_() { "$(bin kubectl)" --kubeconfig "$kubeconfig" "$@"; }

# A TCP port on ADDRESS that nothing listens on, from BASE upwards.
free_port_on() { # address base
  local port="$2"
  while ss -Htln "src $1:$port" 2>/dev/null | grep -q .; do port=$((port + 1)); done
  echo "$port"
}

cmd_up() {
  require_tools cargo go python3 git openssl curl ss setsid
  mkdir -p "$logs" "$pids"
  if alive git-daemon && "$here/local-cluster.sh" status | grep -q '^api: ready'; then
    say "already running"
    cmd_status
    return
  fi
  stop git-daemon
  step "Kubernetes binaries and helm (built once, cached in $NBG_BIN_DIR)"
  "$here/build-binaries.sh" etcd kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet kube-proxy coredns helm
  step "the controllers' images (release builds; several minutes the first time)"
  "$here/images.sh" "$target/images"
  step "local control plane with a real node (the node's images are built the first time, about a minute)"
  NBG_NODE=real NBG_NODE_IMAGE_DIR="$target/images" "$here/local-cluster.sh" up

  step "playground components"
  local node_id host_ip git_port
  node_id="$(cat "$cluster_dir/node/id")"
  host_ip="10.201.$node_id.1"
  git_port="$(free_port_on "$host_ip" 9418)"
  # shellcheck disable=SC2086 # one directory per word
  start git-daemon git daemon --reuseaddr --listen="$host_ip" --port="$git_port" --export-all \
    $git_dirs
  kubectl_ create namespace "$release_ns" --dry-run=client -o yaml | kubectl_ apply -f - >/dev/null
  kubectl_ apply --server-side --field-manager nbg-playground -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: git, namespace: $release_ns}
spec:
  ports: [{name: git, port: 9418, protocol: TCP, targetPort: $git_port}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: git-host
  namespace: $release_ns
  labels: {kubernetes.io/service-name: git}
addressType: IPv4
endpoints: [{addresses: ["$host_ip"], conditions: {ready: true}}]
ports: [{name: git, port: $git_port, protocol: TCP}]
YAML
  say "git daemon:         git://git.$release_ns.svc/<path> serves the repositories under $git_dirs (the daemon: $host_ip:$git_port)"

  local sets=(--set global.argocd.enabled=false --set app-status-aggregator.enabled=false) name
  for name in "${controllers[@]}"; do
    sets+=(--set "$name.watchNamespaces={$namespaces}")
  done
  sets+=(--set nvj-validator.retryBackoff=2s)
  say "installing the controllers (helm install nbg charts/notebook-gitops -n $release_ns)"
  "$(bin helm)" --kubeconfig "$kubeconfig" upgrade --install nbg "$repo/charts/notebook-gitops" \
    -n "$release_ns" --wait --timeout 3m "${sets[@]}" >"$logs/helm.log" 2>&1 || {
    cat "$logs/helm.log" >&2
    kubectl_ get pods -n "$release_ns" -o wide >&2 || true
    say "error: the controllers did not become ready; their logs: hack/just kubectl logs -n $release_ns deploy/nbg-<controller>"
    return 1
  }
  cmd_status
  cat >&2 <<MSG
[playground] ready. Apply an NVJ:  hack/just kubectl apply -f my-nvj.yaml   (namespace $namespaces)
[playground] controller logs:      hack/just kubectl logs -n $release_ns deploy/nbg-nvj-validator
[playground] stop everything:      hack/just down
MSG
}

cmd_status() {
  if alive git-daemon; then
    printf '%-22s running (pid %s, log %s)\n' "git-daemon:" "$(pid_of git-daemon)" "$logs/git-daemon.log"
  else
    printf '%-22s stopped\n' "git-daemon:"
  fi
  "$here/local-cluster.sh" status
  if "$here/local-cluster.sh" status | grep -q '^api: ready'; then
    kubectl_ get pods -n "$release_ns" -o wide 2>/dev/null || true
  fi
}

cmd_down() {
  stop git-daemon
  "$here/local-cluster.sh" down
  say "stopped"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
