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
  # The planes with a real node (RealNode in the e2e harness, the README's playground) stop
  # themselves; not when the run is cut short.
  local plane
  for plane in "$repo"/target/*/; do
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

step "local control plane"
if ! "$here/local-cluster.sh" status | grep -q '^api: ready'; then
  started_cluster=1
fi
"$here/local-cluster.sh" up

step "controller binaries (the e2e tests run them as processes)"
cargo build --quiet --workspace --bins

step "unit and end-to-end tests"
cargo test --quiet --workspace --no-run
# The API server restart test, the real Argo CD tests and the short chaos run bring up control
# planes of their own and mostly wait on them, so they run beside the other tests (their output
# follows theirs). All in one process group of their own, so every process a test starts is
# stopped with it.
restart_log="$repo/target/e2e-logs/api-server-restart-test.log"
argocd_log="$repo/target/e2e-logs/real-argocd-tests.log"
argocd_cells_log="$repo/target/e2e-logs/real-argocd-matrix-tests.log"
chaos_log="$repo/target/e2e-logs/chaos-test.log"
images_log="$repo/target/e2e-logs/images.log"
mkdir -p "$(dirname "$restart_log")"
setsid bash -c '
  restart_log="$1"; argocd_log="$2"; images_log="$3"; chaos_log="$4"; argocd_cells_log="$5"
  cargo test -p nbg-e2e --test api_server_restart >"$restart_log" 2>&1 &
  restart=$!
  # Two minutes of all five controllers under faults (a random seed each time; a failure prints
  # it). Niced below the tests beside it: its checks wait for the controllers to settle, theirs
  # have deadlines.
  nice -n 10 cargo test -p nbg-e2e --test chaos -- --nocapture >"$chaos_log" 2>&1 &
  chaos=$!
  # The real Argo CD tests in each configuration of the compatibility matrix (docs/argocd.md):
  # v3.2 as installed, with the demo; beside it, v3.2 with label tracking under the Helm
  # chart'"'"'s key and v2.14 as installed (each cell'"'"'s planes, ports and nodes its own).
  argocd_tests=(--test argocd_real --test argocd_triggers --test argocd_aggregator --test argocd_wave_marker --test argocd_validated_waves --test argocd_tracking)
  NBG_ARGOCD_CELL=v3 cargo test -p nbg-e2e "${argocd_tests[@]}" --test demo \
    -- --skip the_demo_plays_its_three_acts_without_argo_cd >"$argocd_log" 2>&1 &
  argocd=$!
  { NBG_ARGOCD_CELL=v3-label cargo test -p nbg-e2e "${argocd_tests[@]}" >"$argocd_cells_log.label" 2>&1 & label=$!
    NBG_ARGOCD_CELL=v2 cargo test -p nbg-e2e "${argocd_tests[@]}" >"$argocd_cells_log.v2" 2>&1; r2=$?
    r1=0; wait $label || r1=$?; cat "$argocd_cells_log.label" "$argocd_cells_log.v2"; [ $r1 -eq 0 ] && [ $r2 -eq 0 ]; } >"$argocd_cells_log" 2>&1 &
  argocd_cells=$!
  # The images (static release builds) compile while the end-to-end tests mostly wait on the
  # API server; then their test unpacks and runs each one, and the real node runs them. Not
  # niced: the real node'"'"'s tests (and the Argo CD cells'"'"' that start nodes) wait for it.
  # The real node'"'"'s tests, three planes at a time (they mostly wait on their pods).
  { hack/images.sh && cargo test -p nbg-oci-image --test images \
      && { { cargo test -p nbg-e2e --test real_node --test readme_playground --test nvj_validator -- --nocapture; } >"$images_log.a" 2>&1 & a=$!
           { cargo test -p nbg-e2e --test real_node_install --test real_node_failover -- --nocapture \
               && cargo test -p nbg-e2e --test trigger_controller -- --nocapture --exact restarts_roll_real_pods_on_a_real_node; } >"$images_log.b" 2>&1 & b=$!
           cargo test -p nbg-e2e --test kserve_restart --test demo -- --nocapture \
             --skip the_demo_plays_its_three_acts_with_the_real_argo_cd_and_kserve >"$images_log.c" 2>&1 & c=$!
           ra=0; wait $a || ra=$?; rb=0; wait $b || rb=$?; rc=0; wait $c || rc=$?
           cat "$images_log.a" "$images_log.b" "$images_log.c"; [ $ra -eq 0 ] && [ $rb -eq 0 ] && [ $rc -eq 0 ]; }; } >"$images_log" 2>&1 &
  images=$!
  rest=0
  cargo test --workspace --no-fail-fast -- \
    --skip every_image_runs_its_binary_as_the_non_root_user_and_is_what_the_chart_deploys \
    --skip every_archive_loads_as_docker_and_as_an_oci_layout \
    --skip controllers_are_back_within_seconds_after_the_api_server_restarts \
    --skip argo_cd_holds_the_next_wave_until_the_notebook_succeeds_and_fails_the_sync_when_it_fails \
    --skip the_real_argo_cd_runs_a_triggered_sync_once_after_the_running_one \
    --skip aggregates_land_on_an_application_argo_cd_manages_without_a_refresh_storm \
    --skip the_serving_hook_waits_for_the_training_nvj_under_the_real_argo_cd \
    --skip argo_cd_applies_the_next_wave_only_after_nvj_validator_ran_the_notebook \
    --skip a_notebook_syncs_its_own_application_and_the_aggregate_lands_under_argo_cds_tracking \
    --skip the_demo_plays_its_three_acts_with_the_real_argo_cd_and_kserve \
    --skip the_five_controllers_lose_nothing_and_repeat_nothing_under_faults \
    --skip validation_pods_behave_on_a_real_node_as_on_any_cluster \
    --skip the_umbrella_chart_runs_its_controllers_and_the_flow_on_a_real_node \
    --skip the_readme_playground_validates_a_local_notebook_and_stops_cleanly \
    --skip inference_service_restarts_on_the_real_kserve \
    --skip the_demo_plays_its_three_acts_without_argo_cd_and_kserve \
    --skip the_standby_takes_over_from_a_killed_leader_and_every_trigger_applies_once \
    --skip validation_runs_report_compare_time_out_and_retry_on_a_real_node \
    --skip restarts_roll_real_pods_on_a_real_node || rest=$?
  restart_rc=0
  wait "$restart" || restart_rc=$?
  argocd_rc=0
  wait "$argocd" || argocd_rc=$?
  argocd_cells_rc=0
  wait "$argocd_cells" || argocd_cells_rc=$?
  chaos_rc=0
  wait "$chaos" || chaos_rc=$?
  images_rc=0
  wait "$images" || images_rc=$?
  echo "== the API server restart test (run beside the others; exit $restart_rc)"
  cat "$restart_log"
  echo "== the real Argo CD tests, v3.2 as installed (run beside the others; exit $argocd_rc)"
  cat "$argocd_log"
  echo "== the real Argo CD tests, v3.2 with label tracking, then v2.14 as installed (run beside the others; exit $argocd_cells_rc)"
  cat "$argocd_cells_log"
  echo "== the short chaos run (run beside the others; exit $chaos_rc)"
  cat "$chaos_log"
  echo "== the images: hack/images.sh, their test, and the real node'"'"'s (run beside the others; exit $images_rc)"
  cat "$images_log"
  [ "$rest" -eq 0 ] && [ "$restart_rc" -eq 0 ] && [ "$argocd_rc" -eq 0 ] && [ "$argocd_cells_rc" -eq 0 ] && [ "$chaos_rc" -eq 0 ] && [ "$images_rc" -eq 0 ]
' tests "$restart_log" "$argocd_log" "$images_log" "$chaos_log" "$argocd_cells_log" &
test_pgid=$!
wait "$test_pgid"
