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
use nbg_core::nvj::{NotebookValidationJob, NotebookValidationJobStatus, Phase};

use super::pod::{self, LABEL_GENERATION};
use super::pod_status::{cannot_start, unschedulable};
use super::spec_check;

mod judge;
use judge::judge;

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
            parameters: nvj.spec.notebook.parameters.clone(),
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

#[cfg(test)]
mod tests;
