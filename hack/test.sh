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
images_pgid=""
cleanup() {
  local rc=$?
  if [ -n "$images_pgid" ]; then
    kill -KILL -- "-$images_pgid" 2>/dev/null || true
  fi
  if [ -n "$test_pgid" ]; then
    kill -KILL -- "-$test_pgid" 2>/dev/null || true
    sleep 0.2
    # The groups' CPU accounting (hack/lib/e2e-groups.sh), empty once their processes are gone.
    rmdir /sys/fs/cgroup/cpuacct/nbg-e2e-"$test_pgid"-* 2>/dev/null || true
  fi
  if [ -n "$started_cluster" ]; then
    "$here/local-cluster.sh" down || true
  fi
  # The planes with a real node (RealNode in the e2e harness, the README's playground) stop
  # themselves; not when the run is cut short.
  local plane
  for plane in "$repo"/target/*/; do
    # The README playground's test also leaves its git daemon (hack/playground.sh down stops it
    # with the plane).
    if [ -d "$plane/playground/pids" ]; then
      NBG_CLUSTER_DIR="${plane%/}" "$here/playground.sh" down >/dev/null 2>&1 || true
    fi
    if [ -f "$plane/node/id" ]; then
      NBG_CLUSTER_DIR="${plane%/}" "$here/local-cluster.sh" down >/dev/null 2>&1 || true
    fi
  done
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
            pgrep -f "$repo(/e2e/\.\.)?/target/[^ ]*/node/" || true;
            checkout_kernels "$repo"; } | tr '\n' ' ')"
  if [ -n "${left// /}" ]; then
    echo "error: processes left behind: $left" >&2
    rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT
# The images the tests build (hack/images.sh, also through the e2e harness) reuse their release
# build's incremental state: after a change they are ready in seconds, not minutes.
export NBG_IMAGES_INCREMENTAL=1
trap 'exit 130' INT TERM

step "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

# The real Argo CD's tests run redis beside its components.
install_missing redis-server:redis-server

step "control-plane binaries (built once, cached in $NBG_BIN_DIR)"
"$here/build-binaries.sh"

# The tests run some 40 control planes, 16 real nodes and 18 Argo CDs on 2 cores, and their Go
# programs' garbage collection is much of that work: with GOGC=400 (collect when the heap has
# grown 4x, not 2x) a kube-apiserver used 25% less CPU for 70% more memory (docs/benchmarks.md).
# Set after the Go builds above; a GOGC of the caller's own is kept.
export GOGC="${GOGC:-400}"

# The images' release build (hack/images.sh) is what the real node's tests wait for first: where
# it was built before (its mirror exists), it starts now, beside the control plane and the debug
# builds of the binaries and the tests (other profile directories: no lock between them) - a
# cache hit or an incremental build of what changed - and the images group finds it done or
# waits for it (its lock); a failure shows there. On a new machine its first, whole build waits
# for the images group, beside the Argo CD lanes, which mostly wait: beside the debug builds it
# took 17 minutes and held them up 6 (2026-12-06).
mkdir -p target/e2e-logs
if [ -d "$NBG_RELEASE_SRC" ]; then
  setsid bash -c 'exec hack/images.sh >target/e2e-logs/images-early.log 2>&1' &
  images_pgid=$!
fi

step "local control plane"
if ! "$here/local-cluster.sh" status | grep -q '^api: ready'; then
  started_cluster=1
fi
"$here/local-cluster.sh" up

step "controller binaries (the e2e tests run them as processes)"
cargo build --quiet --workspace --bins

step "unit and end-to-end tests"
cargo test --quiet --workspace --no-run
# The end-to-end groups, in three phases (hack/lib/e2e-groups.sh), in a process group of their
# own: every process a test starts is stopped with it.
setsid bash "$here/lib/e2e-groups.sh" &
test_pgid=$!
wait "$test_pgid"
