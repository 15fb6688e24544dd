//! What to do for one NVJ, decided from the objects alone (no I/O), so every transition is
//! unit-tested without a cluster. The reconciler fetches, calls [`decide`], applies the plan.
//!
//! A run is `<uid>/<generation>`. A new generation starts a new run: pods of older generations
//! are deleted, the status is reset, and attempt 0's pod is created. Infrastructure failures
//! (pod deleted or evicted, no report, image not pulled, the runner's own infrastructure
//! outcome) are retried with exponential backoff up to `max_retries`; a failing cell, a golden
//! mismatch, invalid input and a timeout are final. Pod names are deterministic per attempt, so
//! a crash between creating a pod and recording it cannot create a second one.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use nbg_core::conditions;
use nbg_core::nvj::{CellStatus, NotebookValidationJob, NotebookValidationJobStatus, Phase};

use super::pod::{self, LABEL_GENERATION, RUNNER_CONTAINER};
use super::pod_status::{cannot_start, never_ran, unschedulable};
use super::spec_check;
use crate::protocol::report::{self, Outcome};

/// The Reconciling condition's reason doubles as the sub-state of a run in progress.
pub const REASON_POD_CREATED: &str = "PodCreated";
pub const REASON_RETRY_SCHEDULED: &str = "RetryScheduled";
pub const CONDITION_UNSUPPORTED: &str = "UnsupportedFeatures";
/// A container of the pod cannot start yet (image pull, configuration); retried after the grace.
pub const REASON_CONTAINER_WAITING: &str = "ContainerWaiting";
/// The scheduler cannot place the pod yet; the run waits (up to its timeout).
pub const REASON_POD_UNSCHEDULABLE: &str = "PodUnschedulable";
/// A container of the pod can never start with this spec (no image under `Never`, a user the
/// pod's security context refuses).
pub const REASON_CONTAINER_CANNOT_START: &str = "ContainerCannotStart";

#[derive(Debug, Clone)]
pub struct Settings {
    pub max_retries: i32,
    /// First retry delay; doubles per retry.
    pub retry_backoff: Duration,
    /// How long a container may wait (image pull, config errors) before it counts as an
    /// infrastructure failure.
    pub waiting_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_retries: 3,
            retry_backoff: Duration::from_secs(10),
            waiting_grace: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// The plan for one reconcile.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The complete status of the fields this controller owns, when it changes.
    pub status: Option<NotebookValidationJobStatus>,
    pub delete_pods: Vec<String>,
    /// Create the pod of this attempt.
    pub create_attempt: Option<i32>,
    pub events: Vec<PlannedEvent>,
    pub requeue: Option<Duration>,
    /// The run's timeout (`spec.timeout`), for the pod's deadline.
    pub timeout: Duration,
}

/// `spec.timeout`'s default (the Go operator's), used where the spec does not check.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

fn pod_phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn is_terminal(p: &Pod) -> bool {
    matches!(pod_phase(p), "Succeeded" | "Failed")
}

fn elapsed(since: Option<&Time>, now: Timestamp) -> Duration {
    since
        .map(|t| now.duration_since(t.0))
        .and_then(|d: SignedDuration| Duration::try_from(d).ok())
        .unwrap_or_default()
}

struct Ctx<'a> {
    nvj: &'a NotebookValidationJob,
    now: Timestamp,
    generation: i64,
    settings: &'a Settings,
}

impl Ctx<'_> {
    fn time(&self) -> Time {
        Time(self.now)
    }

    /// `status` moved to `phase`, with the conditions that agree with it.
    fn at(
        &self,
        mut status: NotebookValidationJobStatus,
        phase: Phase,
        reason: &str,
        message: impl Into<String>,
    ) -> NotebookValidationJobStatus {
        let message = message.into();
        status.phase = Some(phase);
        status.observed_generation = Some(self.generation);
        status.conditions = conditions::for_phase(
            &status.conditions,
            phase,
            reason,
            &message,
            Some(self.generation),
            &self.time(),
        );
        if phase.is_terminal() && status.completion_time.is_none() {
            status.completion_time = Some(self.time());
        }
        status.message = Some(message);
        status
    }

    fn fail(
        &self,
        status: NotebookValidationJobStatus,
        reason: &'static str,
        message: String,
        plan: &mut Plan,
    ) {
        plan.events.push(PlannedEvent {
            warning: true,
            reason,
            note: message.clone(),
        });
        plan.status = Some(self.at(status, Phase::Failed, reason, message));
    }

    /// The pod waits for `reason`: said once in the status and a Warning Event (again only
    /// when the message changes), looked at again in 5 s.
    fn say_waiting(
        &self,
        current: NotebookValidationJobStatus,
        reason: &'static str,
        message: String,
        plan: &mut Plan,
    ) {
        if current.message.as_deref() != Some(message.as_str()) {
            plan.events.push(PlannedEvent {
                warning: true,
                reason,
                note: message.clone(),
            });
            plan.status = Some(self.at(current, Phase::ValidationRunning, reason, message));
        }
        plan.requeue = Some(Duration::from_secs(5));
    }

    /// An infrastructure failure: retry with backoff, or fail once retries are exhausted.
    fn retry_or_fail(
        &self,
        mut status: NotebookValidationJobStatus,
        why: String,
        old_pod: Option<&Pod>,
        plan: &mut Plan,
    ) {
        let retries = status.retry_count.unwrap_or(0);
        if let Some(p) = old_pod.filter(|p| !is_terminal(p)) {
            plan.delete_pods.extend(p.metadata.name.clone());
        }
        if retries >= self.settings.max_retries {
            let message = format!("failed after {retries} retries: {why}");
            return self.fail(status, "RetriesExhausted", message, plan);
        }
        let next = retries + 1;
        let name = self.nvj.metadata.name.clone().unwrap_or_default();
        status.retry_count = Some(next);
        status.last_retry_time = Some(self.time());
        status.validation_pod_name = Some(pod::pod_name(&name, self.generation, next));
        let message = format!(
            "retry {next} of {} after an infrastructure failure: {why}",
            self.settings.max_retries
        );
        plan.events.push(PlannedEvent {
            warning: true,
            reason: "Retrying",
            note: message.clone(),
        });
        plan.status = Some(self.at(
            status,
            Phase::ValidationRunning,
            REASON_RETRY_SCHEDULED,
            message,
        ));
        plan.requeue = Some(self.backoff(next));
    }

    fn backoff(&self, retry: i32) -> Duration {
        let factor = 2u32.saturating_pow(u32::try_from(retry.saturating_sub(1)).unwrap_or(0));
        self.settings
            .retry_backoff
            .saturating_mul(factor)
            .min(Duration::from_secs(600))
    }
}

/// Decides what to do for `nvj`, given the pods labelled with its uid, at `now`.
pub fn decide(
    nvj: &NotebookValidationJob,
    pods: &[Pod],
    now: Timestamp,
    settings: &Settings,
) -> Plan {
    let generation = nvj.metadata.generation.unwrap_or(0);
    let cx = Ctx {
        nvj,
        now,
        generation,
        settings,
    };
    let current = nvj.status.clone().unwrap_or_default();
    // The spec is checked once per reconcile.
    let checked = spec_check::check(&nvj.spec);
    let mut plan = Plan {
        timeout: checked.as_ref().map_or(DEFAULT_TIMEOUT, |c| c.timeout),
        ..Plan::default()
    };
    let name = nvj.metadata.name.clone().unwrap_or_default();

    // A new run: the spec generation changed (or the job is new).
    if current.observed_generation != Some(generation) || current.phase.is_none() {
        let this_generation = generation.to_string();
        for p in pods {
            let generation_label = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_GENERATION));
            if generation_label != Some(&this_generation) && p.metadata.deletion_timestamp.is_none()
            {
                plan.delete_pods.extend(p.metadata.name.clone());
            }
        }
        let mut status = NotebookValidationJobStatus {
            start_time: Some(cx.time()),
            retry_count: Some(0),
            // Conditions of other writers are kept; ours are recomputed below.
            conditions: current
                .conditions
                .iter()
                .filter(|c| c.type_ != CONDITION_UNSUPPORTED)
                .cloned()
                .collect(),
            ..NotebookValidationJobStatus::default()
        };
        match checked {
            Err(e) => cx.fail(status, "InvalidSpec", e.to_string(), &mut plan),
            Ok(checked) => {
                if !checked.unsupported.is_empty() {
                    let message = format!(
                        "not implemented by nvj-validator and ignored: {}; the notebook runs in podConfig.containerImage",
                        checked.unsupported.join(", ")
                    );
                    conditions::upsert(
                        &mut status.conditions,
                        conditions::condition(
                            CONDITION_UNSUPPORTED,
                            true,
                            "NotImplemented",
                            &message,
                            Some(generation),
                            &cx.time(),
                        ),
                    );
                    plan.events.push(PlannedEvent {
                        warning: true,
                        reason: "UnsupportedFeature",
                        note: message,
                    });
                }
                let pod_name = pod::pod_name(&name, generation, 0);
                status.validation_pod_name = Some(pod_name.clone());
                // A pod of this run may exist already (created before a crash): adopt it.
                if !pods
                    .iter()
                    .any(|p| p.metadata.name.as_deref() == Some(pod_name.as_str()))
                {
                    plan.create_attempt = Some(0);
                }
                plan.status = Some(cx.at(
                    status,
                    Phase::Initializing,
                    REASON_POD_CREATED,
                    format!("creating validation pod {pod_name}"),
                ));
            }
        }
        return plan;
    }

    let Some(phase) = current.phase else {
        return plan;
    };
    if phase.is_terminal() {
        return plan;
    }
    let Some(pod_name) = current.validation_pod_name.clone() else {
        cx.retry_or_fail(
            current,
            "the status names no validation pod".into(),
            None,
            &mut plan,
        );
        return plan;
    };
    let pod = pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(pod_name.as_str()));
    let timeout = plan.timeout;
    // The controller's own backstop beyond the runner's deadline and the kubelet's.
    let hard_deadline = timeout
        + Duration::from_secs(u64::try_from(pod::DEADLINE_GRACE_SECONDS).unwrap_or(60) + 30);
    let running_for = elapsed(current.start_time.as_ref(), now);
    let reconciling_reason = current
        .condition(conditions::RECONCILING)
        .map(|c| c.reason.clone())
        .unwrap_or_default();

    match pod {
        None => {
            if reconciling_reason == REASON_RETRY_SCHEDULED {
                let wait = cx
                    .backoff(current.retry_count.unwrap_or(1))
                    .saturating_sub(elapsed(current.last_retry_time.as_ref(), now));
                if !wait.is_zero() {
                    plan.requeue = Some(wait);
                    return plan;
                }
                plan.create_attempt = current.retry_count;
                let message = format!("creating validation pod {pod_name}");
                plan.status = Some(cx.at(
                    current,
                    Phase::ValidationRunning,
                    REASON_POD_CREATED,
                    message,
                ));
            } else if phase == Phase::Initializing && running_for < Duration::from_secs(30) {
                // Created a moment ago; the watch has not shown it yet, or the create failed.
                plan.create_attempt = current.retry_count;
                plan.requeue = Some(Duration::from_secs(5));
            } else {
                cx.retry_or_fail(
                    current,
                    format!("the validation pod {pod_name} was deleted before it finished"),
                    None,
                    &mut plan,
                );
            }
        }
        Some(p) if p.metadata.deletion_timestamp.is_some() => {
            plan.requeue = Some(Duration::from_secs(2))
        }
        Some(p) if is_terminal(p) => judge(&cx, current, p, &mut plan),
        Some(p) => {
            if running_for > hard_deadline {
                plan.delete_pods.extend(p.metadata.name.clone());
                let message = format!(
                    "the notebook ran longer than the timeout {} and was stopped",
                    nvj.spec.timeout
                );
                cx.fail(current, "Timeout", message, &mut plan);
                return plan;
            }
            if let Some(stuck) = cannot_start(p) {
                let why = stuck.describe();
                if stuck.permanent {
                    // A new pod of this spec would wait for the same reason.
                    plan.delete_pods.extend(p.metadata.name.clone());
                    cx.fail(current, REASON_CONTAINER_CANNOT_START, why, &mut plan);
                } else if elapsed(p.metadata.creation_timestamp.as_ref(), now)
                    > settings.waiting_grace
                {
                    cx.retry_or_fail(current, why, Some(p), &mut plan);
                } else {
                    // Said at once, where the operator looks; retried after the grace period.
                    let message = format!(
                        "{why} (a new pod is tried if it still cannot start {}s after creation)",
                        settings.waiting_grace.as_secs()
                    );
                    cx.say_waiting(current, REASON_CONTAINER_WAITING, message, &mut plan);
                }
                return plan;
            }
            if let Some(why) = unschedulable(p) {
                // A new pod would wait the same way: said at once, the run's timeout ends it.
                cx.say_waiting(current, REASON_POD_UNSCHEDULABLE, why, &mut plan);
                return plan;
            }
            if phase == Phase::Initializing || reconciling_reason != "ValidationRunning" {
                let message = format!("running {} in pod {pod_name}", nvj.spec.notebook.path);
                plan.status = Some(cx.at(
                    current,
                    Phase::ValidationRunning,
                    "ValidationRunning",
                    message,
                ));
            }
            plan.requeue = Some(
                hard_deadline
                    .saturating_sub(running_for)
                    .min(settings.waiting_grace),
            );
        }
    }
    plan
}

/// Reads a finished pod's report and decides the run's outcome.
fn judge(cx: &Ctx<'_>, mut status: NotebookValidationJobStatus, p: &Pod, plan: &mut Plan) {
    let pod_status = p.status.clone().unwrap_or_default();
    let pod_reason = pod_status.reason.clone().unwrap_or_default();
    let terminated = pod_status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == RUNNER_CONTAINER)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone());
    if pod_reason == "DeadlineExceeded" {
        let message = format!(
            "the notebook ran longer than the timeout {} and was stopped",
            cx.nvj.spec.timeout
        );
        return cx.fail(status, "Timeout", message, plan);
    }
    let Some(t) = terminated else {
        let why = match pod_reason.as_str() {
            "Evicted" => format!(
                "the validation pod was evicted: {}",
                pod_status.message.unwrap_or_default()
            ),
            "" => never_ran(&pod_status).unwrap_or_else(|| {
                "the validation pod ended before the notebook container ran".to_string()
            }),
            other => format!(
                "the validation pod ended: {other}: {}",
                pod_status.message.unwrap_or_default()
            ),
        };
        return cx.retry_or_fail(status, why, Some(p), plan);
    };
    if t.reason.as_deref() == Some("OOMKilled") {
        let mut message =
            "the notebook container exceeded its memory limit and was killed (OOMKilled)"
                .to_string();
        // The kernel is usually what the kernel's OOM killer picks; the runner then reports
        // the cells up to the one the kernel died in.
        if let Ok(r) = report::decode(t.message.as_deref().unwrap_or_default()) {
            if let Some(cell) = r.cells.iter().find(|c| c.status == CellStatus::Failure) {
                message.push_str(&format!(
                    " while running cell {} (cellIndex {})",
                    cell.cell_index + 1,
                    cell.cell_index
                ));
            }
            status.results = r.cells;
        }
        return cx.fail(status, "OOMKilled", message, plan);
    }
    match report::decode(t.message.as_deref().unwrap_or_default()) {
        Ok(r) => {
            status.results = r.cells.clone();
            status.comparison_result = r.comparison.clone();
            match r.outcome {
                Outcome::Succeeded if t.exit_code == 0 => {
                    status = cx.at(
                        status,
                        Phase::Succeeded,
                        r.outcome.reason(),
                        r.message.clone(),
                    );
                    plan.status = Some(status);
                }
                Outcome::Succeeded => {
                    let why = format!(
                        "the runner reported success but exited with {}",
                        t.exit_code
                    );
                    cx.retry_or_fail(status, why, Some(p), plan);
                }
                Outcome::Infrastructure => cx.retry_or_fail(status, r.message, Some(p), plan),
                other => cx.fail(status, other.reason(), r.message, plan),
            }
        }
        // Without a report there is no verdict: never a success.
        Err(e) => {
            let why = format!(
                "the notebook container exited with {} without a report ({e})",
                t.exit_code
            );
            cx.retry_or_fail(status, why, Some(p), plan);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::report::{RunReport, encode};
    use nbg_core::nvj::CellResult;
    use serde_json::json;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("valid")
    }

    fn nvj(
        generation: i64,
        status: Option<NotebookValidationJobStatus>,
        extra_spec: serde_json::Value,
    ) -> NotebookValidationJob {
        let mut spec = json!({"notebook": {"git": {"url": "https://x/r.git", "ref": "main"}, "path": "train.ipynb"},
                              "podConfig": {"containerImage": "img"}, "timeout": "10m"});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        let mut n: NotebookValidationJob = serde_json::from_value(json!({
            "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
            "metadata": {"name": "train", "namespace": "team", "uid": "u1", "generation": generation}, "spec": spec
        }))
        .expect("nvj");
        n.status = status;
        n
    }

    fn pod(name: &str, generation: i64, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"mlops.dev/generation": generation.to_string()},
                                      "creationTimestamp": "2027-01-15T08:00:00Z"}, "status": status}))
        .expect("pod")
    }

    fn finished(name: &str, exit: i32, message: &str) -> Pod {
        pod(
            name,
            1,
            json!({"phase": if exit == 0 {"Succeeded"} else {"Failed"},
            "containerStatuses": [{"name": "notebook", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
                                   "state": {"terminated": {"exitCode": exit, "message": message}}}]}),
        )
    }

    /// Runs one decision and applies its status, as the reconciler would.
    fn step(n: &mut NotebookValidationJob, pods: &[Pod], now: Timestamp) -> Plan {
        let plan = decide(n, pods, now, &Settings::default());
        if let Some(s) = &plan.status {
            n.status = Some(s.clone());
        }
        plan
    }

    fn phase(n: &NotebookValidationJob) -> Option<Phase> {
        n.status.as_ref().and_then(|s| s.phase)
    }

    #[test]
    fn a_new_job_initializes_and_creates_attempt_zero() {
        let mut n = nvj(1, None, json!({}));
        let plan = step(&mut n, &[], at(0));
        assert_eq!(plan.create_attempt, Some(0));
        let s = n.status.clone().expect("status");
        assert_eq!(
            (s.phase, s.observed_generation, s.retry_count),
            (Some(Phase::Initializing), Some(1), Some(0))
        );
        assert_eq!(s.validation_pod_name.as_deref(), Some("train-v1-0"));
        assert!(conditions::is_true(&s.conditions, conditions::RECONCILING));
        assert!(!conditions::is_true(&s.conditions, conditions::READY));
    }

    #[test]
    fn a_running_pod_moves_to_validation_running_then_success_is_recorded_with_every_cell() {
        let mut n = nvj(1, None, json!({}));
        step(&mut n, &[], at(0));
        step(
            &mut n,
            &[pod("train-v1-0", 1, json!({"phase": "Running"}))],
            at(5),
        );
        assert_eq!(phase(&n), Some(Phase::ValidationRunning));
        let cells = (0..3)
            .map(|i| CellResult {
                cell_index: i,
                status: CellStatus::Success,
                execution_time: None,
                output: None,
                error_message: None,
            })
            .collect();
        let report =
            RunReport::new(Outcome::Succeeded, "all 3 code cells succeeded").with_cells(cells);
        let plan = step(
            &mut n,
            &[finished("train-v1-0", 0, &encode(&report))],
            at(60),
        );
        assert!(plan.create_attempt.is_none() && plan.delete_pods.is_empty());
        let s = n.status.clone().expect("status");
        assert_eq!(s.phase, Some(Phase::Succeeded));
        assert_eq!(s.results.len(), 3);
        assert!(s.completion_time.is_some());
        assert!(
            conditions::is_true(&s.conditions, conditions::READY)
                && conditions::is_true(&s.conditions, conditions::VALIDATION_COMPLETE)
        );
        // Terminal: nothing more happens.
        let plan = step(
            &mut n,
            &[finished("train-v1-0", 0, &encode(&report))],
            at(120),
        );
        assert!(plan.status.is_none() && plan.create_attempt.is_none());
    }

    #[test]
    fn a_failing_cell_is_final_and_not_retried() {
        let mut n = nvj(1, None, json!({}));
        step(&mut n, &[], at(0));
        let report = RunReport::new(
            Outcome::CellFailed,
            "cell 3 (cellIndex 2) raised ValueError: empty",
        );
        let plan = step(
            &mut n,
            &[finished("train-v1-0", 1, &encode(&report))],
            at(30),
        );
        let s = n.status.clone().expect("status");
        assert_eq!((s.phase, s.retry_count), (Some(Phase::Failed), Some(0)));
        assert!(plan.create_attempt.is_none());
        assert_eq!(
            s.condition(conditions::STALLED).map(|c| c.reason.as_str()),
            Some("CellFailed")
        );
        assert!(s.message.unwrap_or_default().contains("cell 3"));
    }

    #[test]
    fn infrastructure_failures_retry_with_backoff_until_exhausted() {
        let mut n = nvj(1, None, json!({}));
        step(&mut n, &[], at(0));
        let mut now = 10;
        for attempt in 0..3 {
            let name = format!("train-v1-{attempt}");
            // The pod dies without a report (e.g. node lost).
            let plan = step(&mut n, &[finished(&name, 137, "")], at(now));
            let s = n.status.clone().expect("status");
            assert_eq!(s.retry_count, Some(attempt + 1));
            assert_eq!(
                s.phase,
                Some(Phase::ValidationRunning),
                "retries never flap through other phases"
            );
            let next = format!("train-v1-{}", attempt + 1);
            assert_eq!(s.validation_pod_name.as_deref(), Some(next.as_str()));
            assert!(plan.requeue.is_some() && plan.create_attempt.is_none());
            // Before the backoff: wait. After: create the next attempt.
            let early = step(&mut n, &[], at(now + 1));
            assert!(early.create_attempt.is_none() && early.requeue.is_some());
            now += 700;
            let plan = step(&mut n, &[], at(now));
            assert_eq!(plan.create_attempt, Some(attempt + 1));
        }
        let plan = step(&mut n, &[finished("train-v1-3", 137, "")], at(now + 10));
        let s = n.status.clone().expect("status");
        assert_eq!(s.phase, Some(Phase::Failed));
        assert!(
            s.message
                .unwrap_or_default()
                .starts_with("failed after 3 retries"),
            "retry count in the message"
        );
        assert!(plan.create_attempt.is_none());
    }

    #[test]
    fn a_pod_deleted_mid_run_is_retried() {
        let mut n = nvj(1, None, json!({}));
        step(&mut n, &[], at(0));
        step(
            &mut n,
            &[pod("train-v1-0", 1, json!({"phase": "Running"}))],
            at(5),
        );
        step(&mut n, &[], at(50));
        let s = n.status.clone().expect("status");
        assert_eq!(s.retry_count, Some(1));
        assert!(s.message.unwrap_or_default().contains("was deleted"));
    }

    #[test]
    fn the_kubelet_deadline_is_a_timeout() {
        let mut n = nvj(1, None, json!({}));
        step(&mut n, &[], at(0));
        step(
            &mut n,
            &[pod(
                "train-v1-0",
                1,
                json!({"phase": "Failed", "reason": "DeadlineExceeded"}),
            )],
            at(700),
        );
        let s = n.status.clone().expect("status");
        assert_eq!(s.phase, Some(Phase::Failed));
        assert_eq!(
            s.condition(conditions::STALLED).map(|c| c.reason.as_str()),
            Some("Timeout")
        );
    }

    #[test]
    fn the_controller_stops_a_pod_that_overruns_every_deadline() {
        let mut n = nvj(1, None, json!({}));
        step(&mut n, &[], at(0));
        let plan = step(
            &mut n,
            &[pod("train-v1-0", 1, json!({"phase": "Running"}))],
            at(10 * 60 + 120),
        );
        assert_eq!(plan.delete_pods, vec!["train-v1-0".to_string()]);
        assert_eq!(phase(&n), Some(Phase::Failed));
    }

    #[test]
    fn a_spec_change_starts_a_new_run_and_removes_the_old_pod() {
        let mut n = nvj(1, None, json!({}));
        step(&mut n, &[], at(0));
        step(
            &mut n,
            &[finished(
                "train-v1-0",
                1,
                &encode(&RunReport::new(Outcome::CellFailed, "boom")),
            )],
            at(20),
        );
        assert_eq!(phase(&n), Some(Phase::Failed));
        n.metadata.generation = Some(2);
        let old = finished("train-v1-0", 1, "");
        let plan = step(&mut n, &[old], at(100));
        assert_eq!(plan.delete_pods, vec!["train-v1-0".to_string()]);
        assert_eq!(plan.create_attempt, Some(0));
        let s = n.status.clone().expect("status");
        assert_eq!(
            (s.phase, s.observed_generation, s.retry_count),
            (Some(Phase::Initializing), Some(2), Some(0))
        );
        assert!(s.results.is_empty() && s.completion_time.is_none());
        assert_eq!(s.validation_pod_name.as_deref(), Some("train-v2-0"));
    }

    #[test]
    fn a_pod_created_before_a_crash_is_adopted() {
        let mut n = nvj(1, None, json!({}));
        let plan = step(
            &mut n,
            &[pod("train-v1-0", 1, json!({"phase": "Pending"}))],
            at(0),
        );
        assert_eq!(plan.create_attempt, None);
        assert!(plan.delete_pods.is_empty());
    }

    #[test]
    fn invalid_specs_and_unsupported_features() {
        let mut bad = nvj(
            1,
            None,
            json!({"comparisonConfig": {"customTimestampPatterns": ["(oops"]}}),
        );
        let plan = step(&mut bad, &[], at(0));
        assert!(plan.create_attempt.is_none());
        assert_eq!(phase(&bad), Some(Phase::Failed));
        assert_eq!(plan.events[0].reason, "InvalidSpec");
        assert!(plan.events[0].note.contains("customTimestampPatterns[0]"));

        let mut legacy = nvj(1, None, json!({"modelValidation": {"platform": "kserve"}}));
        let plan = step(&mut legacy, &[], at(0));
        assert_eq!(plan.create_attempt, Some(0), "the notebook still runs");
        assert!(plan.events.iter().any(|e| e.warning
            && e.reason == "UnsupportedFeature"
            && e.note.contains("spec.modelValidation")));
        let s = legacy.status.expect("status");
        assert!(conditions::is_true(&s.conditions, CONDITION_UNSUPPORTED));
    }

    #[test]
    fn an_image_that_cannot_be_pulled_is_retried_after_the_grace_period() {
        let mut n = nvj(1, None, json!({}));
        step(&mut n, &[], at(0));
        let pulling = |created: &str| {
            serde_json::from_value::<Pod>(json!({
                "metadata": {"name": "train-v1-0", "labels": {"mlops.dev/generation": "1"}, "creationTimestamp": created},
                "status": {"phase": "Pending", "containerStatuses": [{"name": "notebook", "image": "img", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"img\""}}}]}
            }))
            .expect("pod")
        };
        // Within the grace period: keep waiting, and say why at once.
        let plan = step(&mut n, &[pulling("2027-01-15T08:00:00Z")], at(60));
        assert_eq!(n.status.as_ref().and_then(|s| s.retry_count), Some(0));
        assert!(plan.delete_pods.is_empty());
        let message = n
            .status
            .as_ref()
            .and_then(|s| s.message.clone())
            .unwrap_or_default();
        assert!(
            message.starts_with("container notebook cannot start: ImagePullBackOff"),
            "{message}"
        );
        assert!(
            plan.events
                .iter()
                .any(|e| e.reason == REASON_CONTAINER_WAITING)
        );
        // The same wait again: no second Event.
        let plan = step(&mut n, &[pulling("2027-01-15T08:00:00Z")], at(65));
        assert!(plan.events.is_empty() && plan.status.is_none());
        // Past it: an infrastructure failure, retried with a new pod.
        let plan = step(&mut n, &[pulling("2027-01-15T08:00:00Z")], at(400));
        let s = n.status.clone().expect("status");
        assert_eq!(s.retry_count, Some(1));
        assert!(s.message.unwrap_or_default().contains("ImagePullBackOff"));
        assert_eq!(plan.delete_pods, vec!["train-v1-0".to_string()]);
    }

    #[test]
    fn a_pod_the_scheduler_cannot_place_is_named_at_once_and_waits() {
        let mut n = nvj(1, None, json!({}));
        step(&mut n, &[], at(0));
        // As kube-scheduler reports a claim that does not bind (the demo's first try on a real
        // node: the claim asked for more than the volume had).
        let pending: Pod = serde_json::from_value(json!({
            "metadata": {"name": "train-v1-0", "labels": {"mlops.dev/generation": "1"}, "creationTimestamp": "2027-01-15T08:00:00Z"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."}]}
        }))
        .expect("pod");
        let plan = step(&mut n, std::slice::from_ref(&pending), at(5));
        let s = n.status.clone().expect("status");
        assert_eq!(s.phase, Some(Phase::ValidationRunning));
        assert_eq!(
            s.message.as_deref(),
            Some(
                "the validation pod cannot be scheduled: 0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. - check spec.podConfig.resources against the nodes' capacity, that the PersistentVolumeClaims of spec.podConfig.volumes can bind, and the pod's node selection"
            )
        );
        assert!(
            plan.delete_pods.is_empty(),
            "a new pod would wait the same way"
        );
        assert!(
            plan.events
                .iter()
                .any(|e| e.warning && e.reason == REASON_POD_UNSCHEDULABLE)
        );
        // Still so a minute later: nothing new to say, no retry.
        let plan = step(&mut n, &[pending], at(65));
        assert!(plan.events.is_empty() && plan.status.is_none() && plan.delete_pods.is_empty());
        assert_eq!(n.status.as_ref().and_then(|s| s.retry_count), Some(0));
    }

    #[test]
    fn a_notebook_image_that_is_not_on_the_node_fails_the_run_at_once() {
        let mut n = nvj(1, None, json!({}));
        step(&mut n, &[], at(0));
        // As a real kubelet reports it: the init container finished, the notebook container waits.
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "train-v1-0", "labels": {"mlops.dev/generation": "1"}, "creationTimestamp": "2027-01-15T08:00:00Z"},
            "status": {"phase": "Pending",
                "initContainerStatuses": [{"name": "install-runner", "image": "runner", "imageID": "", "ready": true, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
                "containerStatuses": [{"name": "notebook", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "Container image \"img\" is not present with pull policy of Never"}}}]}
        }))
        .expect("pod");
        let plan = step(&mut n, &[p], at(3));
        let s = n.status.clone().expect("status");
        assert_eq!(s.phase, Some(Phase::Failed));
        assert_eq!(
            s.retry_count,
            Some(0),
            "a new pod would wait for the same reason"
        );
        assert!(s.message.unwrap_or_default().contains("ErrImageNeverPull"));
        assert!(
            s.conditions
                .iter()
                .any(|c| c.reason == REASON_CONTAINER_CANNOT_START)
        );
        assert_eq!(plan.delete_pods, vec!["train-v1-0".to_string()]);
    }

    #[test]
    fn an_oom_killed_notebook_keeps_its_cells_and_names_the_cell() {
        let mut n = nvj(1, None, json!({}));
        step(&mut n, &[], at(0));
        let mut report = RunReport::new(
            Outcome::CellFailed,
            "cell 2 (cellIndex 1) raised DeadKernel: the kernel died",
        );
        report.cells = vec![
            CellResult {
                cell_index: 0,
                status: CellStatus::Success,
                execution_time: None,
                output: None,
                error_message: None,
            },
            CellResult {
                cell_index: 1,
                status: CellStatus::Failure,
                execution_time: None,
                output: None,
                error_message: Some("DeadKernel".into()),
            },
        ];
        let p = pod(
            "train-v1-0",
            1,
            json!({"phase": "Failed",
            "containerStatuses": [{"name": "notebook", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
                                   "state": {"terminated": {"exitCode": 1, "reason": "OOMKilled", "message": encode(&report)}}}]}),
        );
        step(&mut n, &[p], at(30));
        let s = n.status.expect("status");
        assert_eq!(s.phase, Some(Phase::Failed));
        assert_eq!(s.results.len(), 2);
        let message = s.message.unwrap_or_default();
        assert!(
            message.contains("(OOMKilled) while running cell 2 (cellIndex 1)"),
            "{message}"
        );
    }

    #[test]
    fn a_report_that_cannot_be_read_is_never_a_success() {
        let mut n = nvj(1, None, json!({}));
        step(&mut n, &[], at(0));
        step(&mut n, &[finished("train-v1-0", 0, "Succeeded!")], at(30));
        let s = n.status.expect("status");
        assert_ne!(s.phase, Some(Phase::Succeeded));
        assert_eq!(s.retry_count, Some(1));
    }
}
