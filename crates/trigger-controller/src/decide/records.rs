//! When outcomes are recorded, and the status, Events and next look that follow (pure).
//!
//! A trigger costs one status write when it goes well: a restart is recorded once it has rolled
//! out, a wait (an Argo CD operation running, a stuck rollout) only once it outlasts
//! [`GRACE`]. A rollout that outlasts the deadline is recorded `InProgress`, saying where it
//! stands; a stuck one says why.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use nbg_core::annotations::{TriggerSpecError, TriggerTarget};
use nbg_core::model_validation::ModelValidationResult;
use nbg_core::nvj::{NotebookValidationJob, TriggerOutcome, TriggerRecord};

use super::act::{Observed, Step, Wake};
use super::{
    RecordKey, condition_changed, current_condition, record_for, records_of, triggers_valid,
};

/// How long a wait before the action (an Argo CD operation running) or a stuck rollout may last
/// before the record says so: most are over sooner.
pub const GRACE: Duration = Duration::from_secs(5);
/// How often a target that is not watched (another namespace) is looked at while waiting.
pub const UNWATCHED_POLL: Duration = Duration::from_secs(5);
/// A watched target is looked at this often anyway, in case a watch event was missed.
pub const WATCHED_RESYNC: Duration = Duration::from_secs(60);

/// How the NVJ keeps waiting on one target (and on what rolls for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Done with it, or its pods are looked at on a timer: no wake-ups from its changes.
    Stop,
    /// Keep waiting as before.
    Keep,
    /// Keep waiting; whether every change wakes the NVJ (a record that says it is stuck must
    /// follow the target when it moves again), or only a settled rollout.
    Watch { every_change: bool },
}

/// Everything this controller owns in the status.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusWrite {
    pub records: Vec<TriggerRecord>,
    pub condition: Condition,
    /// The run's served-model checks, once each has a final record.
    pub model_result: Option<ModelValidationResult>,
}

/// What to write and announce for one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// To apply; `None`: nothing to write.
    pub status: Option<StatusWrite>,
    /// Records that changed (in the written status): an Event and a count for the final ones.
    pub changed: Vec<TriggerRecord>,
    /// Per observed target, in order.
    pub follow: Vec<Follow>,
    /// When to look again; `None`: on a change of the NVJ (or a target's watch).
    pub requeue: Option<Duration>,
}

/// How long since `since`, at `now` (zero if the clock went back).
fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or_default()
}

/// `10 minutes`, `90 s`.
fn in_words(d: Duration) -> String {
    match d.as_secs() {
        60 => "1 minute".into(),
        s if s >= 60 && s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} s"),
    }
}

/// Plans the records for `run` from each observed target's step, at `now`. `targets` are the
/// NVJ's trigger entries.
pub fn plan(
    nvj: &NotebookValidationJob,
    run: &str,
    targets: &[TriggerTarget],
    steps: &[(Observed, Step)],
    rollout_deadline: Duration,
    now: Timestamp,
) -> Plan {
    let mut records: Vec<TriggerRecord> = records_of(nvj).to_vec();
    let mut requeue: Option<Duration> = None;
    let mut soon = |after: Duration| requeue = Some(requeue.map_or(after, |a| a.min(after)));
    let mut changed = Vec::new();
    let mut follow = Vec::new();
    // A target is rolling out or about to be recorded: the condition waits for that write.
    let mut pending = false;
    for (obs, step) in steps {
        let key = RecordKey {
            target: obs.key.clone(),
            action: obs.target.action.as_str().to_string(),
        };
        let earlier = record_for(nvj, run, &key);
        let waited = elapsed(obs.waiting_since, now);
        let resync = if obs.watched {
            WATCHED_RESYNC
        } else {
            UNWATCHED_POLL
        };
        let (record, wake, stuck) = match step {
            Step::Rolling(record, progress) => {
                let mut record = record.as_ref().clone();
                let said_stuck = earlier.is_some_and(|r| r.outcome == TriggerOutcome::InProgress);
                if waited >= rollout_deadline {
                    let progress = progress
                        .as_ref()
                        .map(|p| format!(": {p}"))
                        .unwrap_or_default();
                    // What was done ("restart applied", "created after the run ...") stays.
                    let done = record
                        .message
                        .as_deref()
                        .and_then(|m| m.split_once("; "))
                        .map_or("restart applied", |(done, _)| done)
                        .to_string();
                    record.message = Some(format!(
                        "{done}; the rollout has not completed in {}{progress}",
                        in_words(rollout_deadline)
                    ));
                } else if !said_stuck {
                    // Recorded when it completes; looked at again when the deadline passes, if
                    // nothing wakes it sooner.
                    pending = true;
                    soon(resync.min(rollout_deadline.saturating_sub(waited)));
                    follow.push(Follow::Keep);
                    continue;
                }
                (record, Some(Wake::OnTargetChange), false)
            }
            Step::Record(record, wake) => {
                let stuck = record.outcome == TriggerOutcome::InProgress;
                (record.as_ref().clone(), Some(*wake), stuck)
            }
            Step::Missing(record) if waited >= rollout_deadline => {
                let mut record = record.as_ref().clone();
                record.outcome = TriggerOutcome::Failed;
                record.message = Some(format!(
                    "{} {}/{} not found (waited {} for it to be created)",
                    record.kind,
                    record.namespace,
                    record.name,
                    in_words(rollout_deadline)
                ));
                (record, Some(Wake::Never), false)
            }
            Step::Missing(record) => {
                // Its creation wakes the NVJ, whatever state it is created in.
                follow.push(Follow::Watch { every_change: true });
                soon(resync.min(rollout_deadline.saturating_sub(waited)));
                let recorded = earlier.is_some_and(|r| r.outcome == record.outcome);
                if !recorded && waited < GRACE {
                    pending = true;
                    soon(GRACE.saturating_sub(waited));
                    continue;
                }
                (record.as_ref().clone(), None, true)
            }
        };
        match wake {
            // Followed and looked at again as arranged above.
            None => {}
            Some(Wake::Never) => follow.push(Follow::Stop),
            // An eviction looks at the pods, not the target: its changes need not wake it.
            Some(Wake::After(after)) => {
                follow.push(Follow::Stop);
                soon(after);
            }
            Some(Wake::OnTargetChange) => {
                let recorded = earlier.is_some_and(|r| r.outcome == record.outcome);
                // Most waits are over within moments: record only one that lasts.
                if !recorded && waited < GRACE {
                    pending = true;
                    soon(GRACE.saturating_sub(waited));
                    follow.push(Follow::Keep);
                    continue;
                }
                follow.push(Follow::Watch {
                    every_change: stuck,
                });
                soon(resync);
            }
        }
        let same =
            earlier.is_some_and(|r| r.outcome == record.outcome && r.message == record.message);
        if !same {
            changed.push(record.clone());
        }
        records.retain(|r| RecordKey::of_record(r) != key);
        records.push(record);
    }
    records.sort_by(|a, b| {
        (&a.kind, &a.namespace, &a.name, &a.action).cmp(&(
            &b.kind,
            &b.namespace,
            &b.name,
            &b.action,
        ))
    });
    let condition = triggers_valid(
        nvj,
        true,
        "Valid",
        &format!("{} trigger targets", targets.len()),
        now,
    );
    let model_result = super::served::result(nvj, run, targets, &records);
    let result_changed = nvj
        .status
        .as_ref()
        .and_then(|s| s.model_validation_result.as_ref())
        != model_result.as_ref();
    // While a target is pending, a new or reworded condition is written with its record, so a
    // trigger costs one status write; a condition turning True or False is written now.
    let flipped = current_condition(nvj).is_some_and(|old| old.status != condition.status);
    let write = !changed.is_empty()
        || result_changed
        || (condition_changed(nvj, &condition) && (!pending || flipped));
    Plan {
        status: write.then_some(StatusWrite {
            records,
            condition,
            model_result,
        }),
        changed: if write { changed } else { Vec::new() },
        follow,
        requeue,
    }
}

/// An unparseable trigger annotation: the condition to write and the Warning to emit, when
/// they say something new.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub records: Vec<TriggerRecord>,
    pub condition: Condition,
    pub warning: String,
}

pub fn invalid(
    nvj: &NotebookValidationJob,
    run: &str,
    error: &TriggerSpecError,
    now: Timestamp,
) -> Option<Invalid> {
    let condition = triggers_valid(nvj, false, "InvalidTrigger", &error.to_string(), now);
    condition_changed(nvj, &condition).then(|| Invalid {
        records: records_of(nvj).to_vec(),
        condition,
        warning: format!("run {run}: {error}"),
    })
}
