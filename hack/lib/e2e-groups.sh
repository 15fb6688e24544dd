#!/usr/bin/env bash
# The end-to-end tests of the test command in groups (hack/test.sh runs this in a process group
# of its own, so every process a test starts is stopped with it). Two cores carry all of it; most
# groups mostly wait (on Argo CD, on pods, on timeouts) and use a fraction of a core, but tests
# with deadlines flake when too much runs beside them (the chaos run beside the four node lanes
# and everything else reached a load of 42, and notebook kernels did not start within papermill's
# 60 s - the runner now gives them the run's timeout). So:
#   1. at once: the images (hack/images.sh, started early by hack/test.sh: cached by their
#      inputs, or built incrementally under the test command) with their test, and the real
#      Argo CD tests in each configuration of the compatibility matrix (docs/argocd.md; each
#      cell's planes, ports and nodes its own), each cell's lane then one of the real Flux tests
#      (docs/flux.md; beside the node's lanes they raised the load until a training Job missed
#      its deadline);
#   2. once the images are there: the tests on the shared control plane (the main run), the API
#      server restart test, the demo with the real Argo CD and KServe, and the real node's
#      tests in four lanes (each test a control plane with a node of its own);
#   3. once one of those lanes is done: the chaos run.
# Each group's output goes to target/e2e-logs/<group>.log and is printed at the end with its
# exit code and when it ran.
#
# usage: hack/lib/e2e-groups.sh    (from the repository's root)
set -uo pipefail
logs=target/e2e-logs
mkdir -p "$logs"
t0=$(date +%s)
groups=()

# The CPU time of a group is counted in a cpuacct cgroup of its own where the host has cgroup v1's
# cpuacct (removed at the end; hack/test.sh removes what an interrupted run leaves), so the
# summary says which groups compute and which mostly wait.
cpu_root=/sys/fs/cgroup/cpuacct

# The machine's busy and available CPU-seconds since boot (/proc/stat: all but idle and iowait).
machine_cpu() {
  local hz
  hz=$(getconf CLK_TCK)
  awk -v hz="$hz" '/^cpu /{busy=$2+$3+$4+$7+$8+$9; all=busy+$5+$6; print int(busy/hz), int(all/hz)}' /proc/stat
}
read -r busy0 all0 < <(machine_cpu)

# group NAME COMMAND...: runs COMMAND in the background into NAME's log, recording its exit code,
# its start and end (seconds into the run) and its CPU seconds.
group() {
  local name=$1
  shift
  groups+=("$name")
  rm -f "$logs/$name.rc"
  (
    cgroup="$cpu_root/nbg-e2e-$$-$name"
    { [ -w "$cpu_root" ] && mkdir "$cgroup" && echo "$BASHPID" >"$cgroup/cgroup.procs"; } 2>/dev/null || cgroup=""
    start=$(($(date +%s) - t0))
    "$@" >"$logs/$name.log" 2>&1
    rc=$?
    cpu=-
    [ -n "$cgroup" ] && cpu=$(($(cat "$cgroup/cpuacct.usage") / 1000000000))
    echo "$rc $start $(($(date +%s) - t0)) $cpu" >"$logs/$name.rc"
  ) &
}

# The tests the groups below run, which the main run skips.
apart=(
  every_image_runs_its_binary_as_the_non_root_user_and_is_what_the_chart_deploys
  every_archive_loads_as_docker_and_as_an_oci_layout
  controllers_are_back_within_seconds_after_the_api_server_restarts
  argo_cd_holds_the_next_wave_until_the_notebook_succeeds_and_fails_the_sync_when_it_fails
  the_real_argo_cd_runs_a_triggered_sync_once_after_the_running_one
  aggregates_land_on_an_application_argo_cd_manages_without_a_refresh_storm
  the_serving_hook_waits_for_the_training_nvj_under_the_real_argo_cd
  argo_cd_applies_the_next_wave_only_after_nvj_validator_ran_the_notebook
  a_notebook_syncs_its_own_application_and_the_aggregate_lands_under_argo_cds_tracking
  the_demo_plays_its_acts_with_the_real_argo_cd_and_kserve
  the_five_controllers_lose_nothing_and_repeat_nothing_under_faults
  validation_pods_behave_on_a_real_node_as_on_any_cluster
  validation_runs_report_compare_time_out_and_retry_on_a_real_node
  the_umbrella_chart_runs_its_controllers_and_the_flow_on_a_real_node
  the_standby_takes_over_from_a_killed_leader_and_every_trigger_applies_once
  restarts_roll_real_pods_on_a_real_node
  the_readme_playground_validates_a_local_notebook_and_stops_cleanly
  inference_service_restarts_on_the_real_kserve
  the_demo_plays_its_acts_without_argo_cd_and_kserve
  flux_applies_what_depends_on_a_validation_only_after_its_current_run_succeeded
  reconcile_triggers_ask_flux_once_per_run_and_wait_for_it_to_handle_them
  the_flux_example_serves_the_model_only_after_the_training_validation_succeeded
)
# `--workspace --test X` rather than `-p nbg-e2e`: the features of the dependencies are then the
# workspace's, as in the build before the groups; with `-p` cargo rebuilt nbg-core and the e2e
# crate once more (35 s, three times side by side at the start).
argocd_tests=(argocd_aggregator argocd_real argocd_validated_waves argocd_tracking argocd_triggers
  argocd_wave_marker)

main_run() {
  local skips=() t
  for t in "${apart[@]}"; do skips+=(--skip "$t"); done
  cargo test --workspace --no-fail-fast -- "${skips[@]}"
}
# argocd_cell CELL FIRST: the cell's Argo CD tests, one cargo run each, from the FIRST-th on
# (and around): in one run cargo takes them in one order, and the three cells' lanes then ran
# their real-node tests at the same time. Every test runs, whatever the others' outcomes.
argocd_cell() {
  local cell=$1 first=$2 rc=0 i n=${#argocd_tests[@]}
  for ((i = 0; i < n; i++)); do
    NBG_ARGOCD_CELL=$cell cargo test --workspace --test "${argocd_tests[(first + i) % n]}" || rc=$?
  done
  return "$rc"
}
images() { hack/images.sh && cargo test --workspace --test images; }
node_lane_a() { cargo test --workspace --test real_node --test readme_playground -- --nocapture; }
node_lane_b() { cargo test --workspace --test real_node_install --test real_node_failover -- --nocapture; }
node_lane_c() {
  cargo test --workspace --test kserve_restart --test demo -- --nocapture \
    --skip the_demo_plays_its_acts_with_the_real_argo_cd_and_kserve
}
node_lane_d() {
  cargo test --workspace --test nvj_validator -- --nocapture \
    && cargo test --workspace --test trigger_controller -- --nocapture --exact restarts_roll_real_pods_on_a_real_node
}
chaos() { cargo test --workspace --test chaos -- --nocapture; }
# argocd_then_flux CELL FIRST TEST-ARGS...: the cell's Argo CD tests (argocd_cell), then those
# Flux tests; both run, whatever the first's outcome; the lane fails when either does.
argocd_then_flux() {
  local cell=$1 first=$2 rc=0
  shift 2
  argocd_cell "$cell" "$first" || rc=$?
  cargo test --workspace "$@" -- --nocapture || rc=$?
  return "$rc"
}

# Waits for the groups named; true when each passed.
await() {
  local name ok=0
  for name in "$@"; do
    while [ ! -f "$logs/$name.rc" ]; do sleep 1; done
    [ "$(cut -d' ' -f1 "$logs/$name.rc")" = 0 ] || ok=1
  done
  return $ok
}

# await_any N NAME...: waits until N of the groups named have ended.
await_any() {
  local n=$1 name ended
  shift
  while :; do
    ended=0
    for name in "$@"; do [ -f "$logs/$name.rc" ] && ended=$((ended + 1)); done
    [ "$ended" -ge "$n" ] && return 0
    sleep 1
  done
}

# The images first, beside the Argo CD lanes (which wait on Argo CD, and need the images only for
# their fifth test): after a change to the controllers' crates their release build takes
# 150-300 CPU-seconds, and every real-node test waits for it.
group images images
# The real Flux tests (docs/flux.md) follow the cells' tests, one after each, to even the lanes:
# they mostly wait, and by then the images' build and the real node's lanes are over.
group argocd-v3-then-flux argocd_then_flux v3 0 --test flux_gate
group argocd-v3-label-then-flux argocd_then_flux v3-label 2 --test flux_example
group argocd-v2-then-flux argocd_then_flux v2 4 --test flux_triggers
await images
images_ok=$?
group main main_run
group api-server-restart cargo test --workspace --test api_server_restart
# The demo with the real Argo CD (v3.2 as installed) and KServe: a lane of its own, beside the
# cells' (it was the longest lane's last test).
group demo-argocd env NBG_ARGOCD_CELL=v3 cargo test --workspace --test demo -- --nocapture \
  --exact the_demo_plays_its_acts_with_the_real_argo_cd_and_kserve
if [ "$images_ok" = 0 ]; then
  group node-a node_lane_a
  group node-b node_lane_b
  group node-c node_lane_c
  group node-d node_lane_d
  await_any 1 node-a node-b node-c node-d
  group chaos chaos
else
  echo "the images failed: the real node's tests and the chaos run did not run" >"$logs/node.log"
  echo "1 0 0 -" >"$logs/node.rc"
  groups+=(node)
fi
wait

failed=()
for name in "${groups[@]}"; do
  read -r rc start end cpu <"$logs/$name.rc"
  echo "== $name: exit $rc, from ${start} s to ${end} s into the tests, ${cpu} CPU-seconds"
  rmdir "$cpu_root/nbg-e2e-$$-$name" 2>/dev/null
  cat "$logs/$name.log"
  [ "$rc" = 0 ] || failed+=("$name")
done
read -r busy1 all1 < <(machine_cpu)
echo "== the groups: ${#groups[@]}, $(($(date +%s) - t0)) s in all; the machine busy $((busy1 - busy0)) of $((all1 - all0)) CPU-seconds${failed[*]:+; failed: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
