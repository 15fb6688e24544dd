#!/usr/bin/env bash
# `just up` / `just down`: a playground to validate your own notebooks on this machine. `up`
# starts the local control plane, every controller of this workspace, the kubelet double (which
# runs validation pods as local processes: real git, papermill and Jupyter kernel) and a
# read-only git daemon on loopback, in the background, and prints one status line per component.
# Then `hack/just kubectl apply -f my-nvj.yaml` validates a notebook for real.
#
# A notebook in a git repository on this machine is named `url: git://localhost/path/to/repo`
# (the NVJ API accepts network URLs only: validation pods never use git's file transport). The
# kubelet double's node-level git configuration points `git://localhost/` at the playground's git
# daemon, which serves the repositories under NBG_PLAYGROUND_GIT_DIRS read-only on loopback.
#
# usage: hack/playground.sh up|down|status
# Environment: NBG_PLAYGROUND_NAMESPACES (where the controllers act; default: default),
# NBG_PLAYGROUND_GIT_DIRS (directories the git daemon may serve, space-separated; default: your
# home directory and /tmp), and those of hack/local-cluster.sh (NBG_CLUSTER_DIR, ports).
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
controllers=(nvj-validator trigger-controller wave-marker app-status-aggregator event-notifier)

say() { printf '[playground] %s\n' "$*" >&2; }

pid_of() { [ -f "$pids/$1.pid" ] && cat "$pids/$1.pid" || true; }
alive() { local p; p="$(pid_of "$1")"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

# A TCP port on 127.0.0.1 that nothing listens on, from BASE upwards (below the ephemeral range).
free_port_from() {
  local port="$1"
  while ss -Htln "sport = :$port" 2>/dev/null | grep -q .; do port=$((port + 1)); done
  echo "$port"
}

start() { # name args...
  local name="$1"; shift
  setsid "$@" >"$logs/$name.log" 2>&1 </dev/null &
  echo $! >"$pids/$name.pid"
}

stop() { # name
  local p; p="$(pid_of "$1")"
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
    kill -TERM -- "-$p" 2>/dev/null || true
    kill -INT -- "-$p" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$p" 2>/dev/null || true
  fi
  rm -f "$pids/$1.pid" "$state/$1.port"
}

# Waits until a controller answers /readyz; fails naming its log when it exits first.
wait_controller() { # name port
  local deadline=$((SECONDS + 60))
  until curl -sf "http://127.0.0.1:$2/readyz" >/dev/null 2>&1; do
    if ! alive "$1"; then
      tail -n 5 "$logs/$1.log" >&2 || true
      say "error: $1 exited during start-up; its log is $logs/$1.log"
      return 1
    fi
    [ $SECONDS -lt $deadline ] || { say "error: $1 not ready after 60 s; its log is $logs/$1.log"; return 1; }
    sleep 0.2
  done
}

cmd_up() {
  require_tools cargo go python3 git openssl curl ss setsid
  mkdir -p "$logs" "$pids"
  if alive nvj-validator; then
    say "already running"
    cmd_status
    return
  fi
  cmd_down_components
  step "Kubernetes binaries (built once, cached in $NBG_BIN_DIR)"
  "$here/build-binaries.sh" etcd kube-apiserver kube-controller-manager kubectl
  step "notebook Python environment (once)"
  local python
  python="$("$here/python-env.sh")/python"
  # Every binary of the workspace, with the same command as hack/test.sh. The README's e2e test
  # sets NBG_PLAYGROUND_SKIP_BUILD: hack/test.sh ran this command before the tests (running it
  # again after `cargo test` rebuilt the binaries with test features costs CI 90 s).
  if [ -z "${NBG_PLAYGROUND_SKIP_BUILD:-}" ]; then
    step "our binaries (cargo; several minutes the first time)"
    cargo build --quiet --workspace --bins
  fi
  step "local control plane"
  "$here/local-cluster.sh" up

  step "playground components"
  local git_port
  git_port="$(free_port_from 19418)"
  # shellcheck disable=SC2086 # one directory per word
  start git-daemon git daemon --reuseaddr --listen=127.0.0.1 --port="$git_port" --export-all \
    $git_dirs
  cat >"$state/node-gitconfig" <<CFG
[url "git://127.0.0.1:$git_port/"]
	insteadOf = git://localhost/
CFG
  say "git daemon:         git://127.0.0.1:$git_port serves the repositories under $git_dirs (url: git://localhost/path/to/repo)"

  start local-kubelet "$target/debug/local-kubelet" --kubeconfig "$kubeconfig" \
    --node-name playground --namespaces "$namespaces" --work-dir "$state/kubelet" \
    --node-env "GIT_CONFIG_GLOBAL=$state/node-gitconfig"
  say "kubelet double:     runs validation pods in namespace(s) $namespaces as local processes (log $logs/local-kubelet.log)"

  local port=18081 name extra
  for name in "${controllers[@]}"; do
    port="$(free_port_from "$port")"
    extra=()
    if [ "$name" = nvj-validator ]; then
      extra=(--runner-image local/nvj-validator:playground --runner-path "$target/debug/nvj-validator"
             --notebook-python "$python" --retry-backoff 2s)
    fi
    RUST_LOG="info,kube=warn" start "$name" "$target/debug/$name" --kubeconfig "$kubeconfig" \
      --namespaces "$namespaces" --http-addr "127.0.0.1:$port" "${extra[@]}"
    echo "$port" >"$state/$name.port"
    port=$((port + 1))
  done
  for name in "${controllers[@]}"; do
    wait_controller "$name" "$(cat "$state/$name.port")"
  done
  cmd_status
  cat >&2 <<MSG
[playground] ready. Apply an NVJ:  hack/just kubectl apply -f my-nvj.yaml   (namespace $namespaces)
[playground] logs:                 $logs/
[playground] stop everything:      hack/just down
MSG
}

cmd_status() {
  local name
  for name in git-daemon local-kubelet "${controllers[@]}"; do
    if alive "$name"; then
      local where=""
      [ -f "$state/$name.port" ] && where=", metrics http://127.0.0.1:$(cat "$state/$name.port")/metrics"
      printf '%-22s running (pid %s%s, log %s)\n' "$name:" "$(pid_of "$name")" "$where" "$logs/$name.log"
    else
      printf '%-22s stopped\n' "$name:"
    fi
  done
  "$here/local-cluster.sh" status
}

cmd_down_components() {
  local name
  for name in "${controllers[@]}" local-kubelet git-daemon; do stop "$name"; done
  # Kernels of validations still running start sessions of their own.
  local pid
  for pid in $(checkout_kernels "$repo"); do kill -KILL "$pid" 2>/dev/null || true; done
}

cmd_down() {
  cmd_down_components
  "$here/local-cluster.sh" down
  say "stopped"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
