//! What trigger-controller does for an NVJ, decided from the objects and the clock (pure).
//!
//! The reconcile observes - the NVJ, each open target as read ([`Observed`]), since when the NVJ
//! waits on it - and then decides in two steps:
//! - [`act`]: per target, what to do now (a patch, an eviction, nothing) and the outcome that
//!   follows once it is applied;
//! - [`records`]: when outcomes are recorded - a quick rollout once, at its end; a wait only once
//!   it outlasts a grace period; a rollout past the deadline saying where it stands - with the
//!   condition, the Events, and when to look again.
//!
//! [`crate::reconcile`] applies the result. No I/O here, and the clock is an argument.

pub mod act;
pub mod records;
pub mod served;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use nbg_core::annotations::{self, TriggerSpecError, TriggerTarget};
use nbg_core::nvj::{NotebookValidationJob, Phase, TriggerOutcome, TriggerRecord};

pub use act::{
    Act, Decision, Found, Observed, PodList, Predictor, Refusal, Step, Wake, decide_target,
    refused_eviction,
};
pub use records::{Follow, Invalid, Plan, StatusWrite, invalid, plan};

use crate::waiting::TargetKey;

/// The condition trigger-controller owns on the NVJ.
pub const CONDITION_TRIGGERS_VALID: &str = "TriggersValid";

/// What an NVJ asks of this controller now.
#[derive(Debug)]
pub enum Work {
    /// Not a succeeded run with triggers.
    Nothing,
    /// The trigger annotation does not parse: nothing is acted on.
    Invalid {
        run: String,
        error: TriggerSpecError,
    },
    Act {
        run: String,
        targets: Vec<TriggerTarget>,
    },
}

pub fn work(nvj: &NotebookValidationJob) -> Work {
    if nvj.current_phase() != Some(Phase::Succeeded) {
        return Work::Nothing;
    }
    let Some(run) = nvj.run_id() else {
        return Work::Nothing;
    };
    let Some(value) = nvj.annotations().get(annotations::ON_SUCCESS_TRIGGER) else {
        // Models to check and nothing restarting them: the result says they were not checked.
        return if nvj.spec.model_validation.is_some() && !matches!(served::checks(nvj), Ok(None)) {
            Work::Act {
                run,
                targets: Vec::new(),
            }
        } else {
            Work::Nothing
        };
    };
    match annotations::parse_on_success_trigger(value) {
        Ok(targets) => Work::Act { run, targets },
        Err(error) => Work::Invalid { run, error },
    }
}

/// A record's identity in `status.triggers`: the target and the action.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    pub target: TargetKey,
    pub action: String,
}

impl RecordKey {
    pub fn of_target(t: &TriggerTarget, nvj_namespace: &str) -> Self {
        Self {
            target: TargetKey::of(t, nvj_namespace),
            action: t.action.as_str().to_string(),
        }
    }

    pub fn of_record(r: &TriggerRecord) -> Self {
        let group = nbg_core::annotations::group_of(&r.api_version);
        Self {
            target: TargetKey {
                group: group.to_string(),
                kind: r.kind.clone(),
                namespace: r.namespace.clone(),
                name: r.name.clone(),
            },
            action: r.action.clone(),
        }
    }
}

fn records_of(nvj: &NotebookValidationJob) -> &[TriggerRecord] {
    nvj.status.as_ref().map_or(&[], |s| s.triggers.as_slice())
}

/// This run's record for `key`, if there is one.
fn record_for<'a>(
    nvj: &'a NotebookValidationJob,
    run: &str,
    key: &RecordKey,
) -> Option<&'a TriggerRecord> {
    records_of(nvj)
        .iter()
        .find(|r| r.run == run && RecordKey::of_record(r) == *key)
}

/// Whether `run` has any record for `key`.
pub fn has_record(nvj: &NotebookValidationJob, run: &str, key: &RecordKey) -> bool {
    record_for(nvj, run, key).is_some()
}

/// The targets with no final record for `run` yet: the others are done for this run.
pub fn open_targets<'a>(
    nvj: &NotebookValidationJob,
    run: &str,
    targets: &'a [TriggerTarget],
) -> Vec<&'a TriggerTarget> {
    let ns = nvj.namespace().unwrap_or_default();
    targets
        .iter()
        .filter(|t| {
            !record_for(nvj, run, &RecordKey::of_target(t, &ns))
                .is_some_and(|r| r.outcome != TriggerOutcome::InProgress)
        })
        .collect()
}

/// When the run completed: `status.completionTime`, else when it became Ready.
pub fn completion_time(nvj: &NotebookValidationJob) -> Option<Timestamp> {
    let status = nvj.status.as_ref()?;
    status
        .completion_time
        .as_ref()
        .or_else(|| status.condition("Ready").map(|c| &c.last_transition_time))
        .map(|t| t.0)
}

/// The `TriggersValid` condition as it is to be, its transition time moved only when its status
/// changes (the shared rule of `conditions::upsert`).
fn triggers_valid(
    nvj: &NotebookValidationJob,
    valid: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Condition {
    let new = nbg_core::conditions::condition(
        CONDITION_TRIGGERS_VALID,
        valid,
        reason,
        message,
        nvj.metadata.generation,
        &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
    );
    let mut current: Vec<Condition> = current_condition(nvj).cloned().into_iter().collect();
    nbg_core::conditions::upsert(&mut current, new.clone());
    current.pop().unwrap_or(new)
}

fn current_condition(nvj: &NotebookValidationJob) -> Option<&Condition> {
    nvj.status
        .as_ref()
        .and_then(|s| s.condition(CONDITION_TRIGGERS_VALID))
}

/// Whether `c` says something the NVJ's condition does not yet.
fn condition_changed(nvj: &NotebookValidationJob, c: &Condition) -> bool {
    current_condition(nvj).is_none_or(|o| {
        o.status != c.status
            || o.message != c.message
            || o.observed_generation != c.observed_generation
    })
}

#[cfg(test)]
mod tests;
