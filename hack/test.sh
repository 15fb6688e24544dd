#!/usr/bin/env bash
# The project's test command (`hack/just test`, and what CI runs): format and lint checks,
# unit tests, and the end-to-end tests on a real local control plane. It builds or reuses
# every binary it needs, starts the control plane if it is not running, and stops everything
# it started - also when a test fails or the run is interrupted.
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
test_pgid=""
cleanup() {
  local rc=$?
  if [ -n "$test_pgid" ]; then
    kill -KILL -- "-$test_pgid" 2>/dev/null || true
  fi
  if [ -n "$started_cluster" ]; then
    "$here/local-cluster.sh" down || true
  fi
  # Notebook kernels run in sessions of their own (jupyter_client starts them so); those of this
  # run work inside this checkout's target/. They stop when their papermill does; make sure.
  local pid
  for pid in $(checkout_kernels "$repo"); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  # Nothing of this run may survive it.
  local left
  sleep 0.5
  left="$( { [ -n "$test_pgid" ] && pgrep -g "$test_pgid" || true; [ -n "$started_cluster" ] && pgrep -f "$repo/target/local-cluster" || true;
            checkout_kernels "$repo"; } | tr '\n' ' ')"
  if [ -n "${left// /}" ]; then
    echo "error: processes left behind: $left" >&2
    rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "control-plane binaries (built once, cached in $NBG_BIN_DIR)"
"$here/build-binaries.sh"

step "local control plane"
if ! "$here/local-cluster.sh" status | grep -q '^api: ready'; then
  started_cluster=1
fi
"$here/local-cluster.sh" up

step "controller binaries (the e2e tests run them as processes)"
cargo build --quiet --workspace --bins

step "unit and end-to-end tests"
# In its own process group, so every process a test starts is stopped with it.
setsid cargo test --workspace --no-fail-fast &
test_pgid=$!
wait "$test_pgid"
