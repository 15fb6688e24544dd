//! What wave-marker writes on an NVJ, decided without a cluster: a pure function of the NVJ and
//! the clock. The marks are the annotation contract of docs/wave-marker.md:
//! - the current run `Succeeded`: `mlops.dev/wave-complete: "<wave>"`;
//! - the current run `Failed`: `mlops.dev/wave-failed: "<wave>"`;
//! - otherwise (running, or a spec change the validator has not picked up): no mark;
//! - beside a mark, `mlops.dev/completion-time` and `mlops.dev/wave-generation`.
//!
//! A malformed `sync-wave` or `block-wave` gets no mark, and a `WavesValid=False` condition
//! naming the annotation and its value.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use nbg_core::annotations::{
    self, BLOCK_WAVE, COMPLETION_TIME, SYNC_WAVE, WAVE_COMPLETE, WAVE_FAILED, WAVE_GENERATION,
};
use nbg_core::conditions;
use nbg_core::nvj::{NotebookValidationJob, Phase};

/// The condition wave-marker owns on the NVJ; present only while a wave annotation is malformed.
pub const CONDITION_WAVES_VALID: &str = "WavesValid";

/// The annotations wave-marker owns: everything it writes, and all it ever removes.
pub const OWNED_ANNOTATIONS: [&str; 4] =
    [WAVE_COMPLETE, WAVE_FAILED, COMPLETION_TIME, WAVE_GENERATION];

/// The result a mark records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkResult {
    Complete,
    Failed,
}

impl MarkResult {
    /// The metric label and Event reason.
    pub fn reason(self) -> &'static str {
        match self {
            MarkResult::Complete => "WaveComplete",
            MarkResult::Failed => "WaveFailed",
        }
    }
}

/// A wave annotation whose value is not an Argo CD sync wave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation}: {error}")]
pub struct InvalidWave {
    /// `argocd.argoproj.io/sync-wave` or `mlops.dev/block-wave`.
    pub annotation: &'static str,
    pub error: annotations::WaveParseError,
}

impl InvalidWave {
    /// The condition reason and Event reason.
    pub fn reason(&self) -> &'static str {
        if self.annotation == SYNC_WAVE {
            "InvalidSyncWave"
        } else {
            "InvalidBlockWave"
        }
    }
}

/// The NVJ's waves as its annotations give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waves {
    /// `argocd.argoproj.io/sync-wave`, Argo CD's default 0 when absent.
    pub sync_wave: i32,
    /// `mlops.dev/block-wave`: the wave that waits for this NVJ.
    pub block_wave: Option<i32>,
}

/// Reads the wave annotations; the first malformed one is the error.
pub fn waves(nvj: &NotebookValidationJob) -> Result<Waves, InvalidWave> {
    let read = |annotation: &'static str| -> Result<Option<i32>, InvalidWave> {
        nvj.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotation))
            .map(|v| annotations::parse_wave(v).map_err(|error| InvalidWave { annotation, error }))
            .transpose()
    };
    Ok(Waves {
        sync_wave: read(SYNC_WAVE)?.unwrap_or(0),
        block_wave: read(BLOCK_WAVE)?,
    })
}

/// The annotations wave-marker wants on the NVJ (only its own keys), and the mark among them.
pub fn desired_annotations(
    nvj: &NotebookValidationJob,
) -> (BTreeMap<String, String>, Option<MarkResult>) {
    let mut out = BTreeMap::new();
    let Ok(waves) = waves(nvj) else {
        return (out, None);
    };
    let result = match nvj.current_phase() {
        Some(Phase::Succeeded) => MarkResult::Complete,
        Some(Phase::Failed) => MarkResult::Failed,
        _ => return (out, None),
    };
    let key = match result {
        MarkResult::Complete => WAVE_COMPLETE,
        MarkResult::Failed => WAVE_FAILED,
    };
    out.insert(key.to_string(), waves.sync_wave.to_string());
    if let Some(t) = nvj.status.as_ref().and_then(|s| s.completion_time.as_ref()) {
        out.insert(COMPLETION_TIME.to_string(), t.0.to_string());
    }
    if let Some(g) = nvj.metadata.generation {
        out.insert(WAVE_GENERATION.to_string(), g.to_string());
    }
    (out, Some(result))
}

/// wave-marker's annotations as they are on the NVJ now.
pub fn current_annotations(nvj: &NotebookValidationJob) -> BTreeMap<String, String> {
    let Some(all) = nvj.metadata.annotations.as_ref() else {
        return BTreeMap::new();
    };
    OWNED_ANNOTATIONS
        .iter()
        .filter_map(|k| all.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

/// What happens to wave-marker's condition.
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionChange {
    /// Nothing to write.
    Keep,
    /// Apply this condition (a wave annotation is malformed).
    Set(Condition),
    /// Apply an empty list: the annotations are valid again, the condition goes.
    Remove,
}

/// An Event to publish about the NVJ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// Everything one reconcile writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The annotations to apply (all wave-marker owns); `None`: they are right already.
    pub annotations: Option<BTreeMap<String, String>>,
    pub condition: ConditionChange,
    pub event: Option<PlannedEvent>,
    /// The mark written by this plan, and how long after the run's completion it is written.
    pub marked: Option<(MarkResult, Option<std::time::Duration>)>,
}

impl Plan {
    /// True when the plan writes nothing.
    pub fn is_noop(&self) -> bool {
        self.annotations.is_none() && self.condition == ConditionChange::Keep
    }
}

/// Decides the writes for `nvj` at `now`.
pub fn decide(nvj: &NotebookValidationJob, now: Timestamp) -> Plan {
    let (desired, mark) = desired_annotations(nvj);
    let annotations = (desired != current_annotations(nvj)).then_some(desired);
    let existing = nvj
        .status
        .as_ref()
        .and_then(|s| s.condition(CONDITION_WAVES_VALID));
    let (condition, mut event) = match waves(nvj) {
        Ok(_) if existing.is_some() => (ConditionChange::Remove, None),
        Ok(_) => (ConditionChange::Keep, None),
        Err(invalid) => {
            let message = format!("{invalid}; no wave mark is written until it is fixed");
            let unchanged = existing.is_some_and(|c| {
                c.status == "False"
                    && c.reason == invalid.reason()
                    && c.message == message
                    && c.observed_generation == nvj.metadata.generation
            });
            if unchanged {
                (ConditionChange::Keep, None)
            } else {
                let mut c = conditions::condition(
                    CONDITION_WAVES_VALID,
                    false,
                    invalid.reason(),
                    &message,
                    nvj.metadata.generation,
                    &Time(now),
                );
                // The transition time moves only when the status does.
                if let Some(e) = existing.filter(|e| e.status == c.status) {
                    c.last_transition_time = e.last_transition_time.clone();
                }
                let event = PlannedEvent {
                    warning: true,
                    reason: invalid.reason(),
                    note: message,
                };
                (ConditionChange::Set(c), Some(event))
            }
        }
    };
    let marked = match (&annotations, mark) {
        (Some(_), Some(result)) => {
            let lag = nvj
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .and_then(|t| std::time::Duration::try_from(now.duration_since(t.0)).ok());
            Some((result, lag))
        }
        _ => None,
    };
    if let Some((result, _)) = marked
        && event.is_none()
    {
        event = Some(mark_event(nvj, result));
    }
    Plan {
        annotations,
        condition,
        event,
        marked,
    }
}

fn mark_event(nvj: &NotebookValidationJob, result: MarkResult) -> PlannedEvent {
    let wave = waves(nvj).map(|w| w.sync_wave).unwrap_or_default();
    let generation = nvj.metadata.generation.unwrap_or_default();
    let note = match result {
        MarkResult::Complete => format!("sync wave {wave} complete (generation {generation})"),
        MarkResult::Failed => {
            let why = nvj
                .status
                .as_ref()
                .and_then(|s| s.message.as_deref())
                .unwrap_or("the validation failed");
            format!("sync wave {wave} failed (generation {generation}): {why}")
        }
    };
    PlannedEvent {
        warning: result == MarkResult::Failed,
        reason: result.reason(),
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nvj(annotations: serde_json::Value, status: serde_json::Value) -> NotebookValidationJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mlops.mlops.dev/v1alpha1",
            "kind": "NotebookValidationJob",
            "metadata": {"name": "train", "namespace": "ml", "uid": "u1", "generation": 2,
                         "annotations": annotations},
            "spec": {"notebook": {"git": {"url": "https://example.com/r.git", "ref": "main"}, "path": "a.ipynb"},
                     "podConfig": {"containerImage": "img"}},
            "status": status
        }))
        .expect("nvj")
    }

    fn now() -> Timestamp {
        "2026-11-30T12:00:05Z".parse().expect("time")
    }

    fn done(phase: &str, generation: i64) -> serde_json::Value {
        serde_json::json!({"phase": phase, "observedGeneration": generation,
                           "completionTime": "2026-11-30T12:00:00Z", "message": "cell 3 failed: KeyError"})
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn success_marks_its_wave_with_time_and_generation() {
        let plan = decide(
            &nvj(serde_json::json!({SYNC_WAVE: "3"}), done("Succeeded", 2)),
            now(),
        );
        assert_eq!(
            plan.annotations,
            Some(map(&[
                (WAVE_COMPLETE, "3"),
                (COMPLETION_TIME, "2026-11-30T12:00:00Z"),
                (WAVE_GENERATION, "2")
            ]))
        );
        assert_eq!(
            plan.marked,
            Some((
                MarkResult::Complete,
                Some(std::time::Duration::from_secs(5))
            ))
        );
        let event = plan.event.expect("event");
        assert_eq!((event.reason, event.warning), ("WaveComplete", false));
        assert_eq!(plan.condition, ConditionChange::Keep);
    }

    #[test]
    fn failure_marks_failed_and_says_why() {
        let plan = decide(&nvj(serde_json::json!({}), done("Failed", 2)), now());
        assert_eq!(
            plan.annotations,
            Some(map(&[
                (WAVE_FAILED, "0"),
                (COMPLETION_TIME, "2026-11-30T12:00:00Z"),
                (WAVE_GENERATION, "2")
            ]))
        );
        let event = plan.event.expect("event");
        assert!(event.warning);
        assert!(
            event.note.contains("cell 3 failed: KeyError"),
            "{}",
            event.note
        );
    }

    #[test]
    fn no_write_when_the_marks_are_right() {
        let marked = serde_json::json!({SYNC_WAVE: "3", WAVE_COMPLETE: "3",
            COMPLETION_TIME: "2026-11-30T12:00:00Z", WAVE_GENERATION: "2", "user": "kept"});
        let plan = decide(&nvj(marked, done("Succeeded", 2)), now());
        assert!(plan.is_noop(), "{plan:?}");
        assert_eq!(plan.event, None);
    }

    #[test]
    fn a_new_generation_removes_the_mark_until_its_result() {
        let marked = serde_json::json!({WAVE_COMPLETE: "0",
            COMPLETION_TIME: "2026-11-30T12:00:00Z", WAVE_GENERATION: "1"});
        // Spec changed to generation 2; the status still describes generation 1.
        let plan = decide(&nvj(marked.clone(), done("Succeeded", 1)), now());
        assert_eq!(plan.annotations, Some(BTreeMap::new()));
        assert_eq!((plan.marked, plan.event), (None, None));
        // Running generation 2.
        let running = serde_json::json!({"phase": "Running", "observedGeneration": 2});
        assert_eq!(
            decide(&nvj(marked, running), now()).annotations,
            Some(BTreeMap::new())
        );
        // Nothing to remove any more: no write.
        let running = serde_json::json!({"phase": "Running", "observedGeneration": 2});
        assert!(decide(&nvj(serde_json::json!({}), running), now()).is_noop());
    }

    #[test]
    fn a_result_flip_replaces_the_mark_in_one_write() {
        let marked = serde_json::json!({WAVE_COMPLETE: "0",
            COMPLETION_TIME: "2026-11-30T12:00:00Z", WAVE_GENERATION: "2"});
        let plan = decide(&nvj(marked, done("Failed", 2)), now());
        let written = plan.annotations.expect("write");
        assert!(written.contains_key(WAVE_FAILED) && !written.contains_key(WAVE_COMPLETE));
    }

    #[test]
    fn malformed_waves_get_no_mark_and_a_condition_naming_the_annotation() {
        for (annotation, reason) in [
            (SYNC_WAVE, "InvalidSyncWave"),
            (BLOCK_WAVE, "InvalidBlockWave"),
        ] {
            let plan = decide(
                &nvj(
                    serde_json::json!({annotation: "three"}),
                    done("Succeeded", 2),
                ),
                now(),
            );
            assert_eq!(plan.annotations, None, "no mark, nothing to remove");
            let ConditionChange::Set(c) = &plan.condition else {
                panic!("condition expected: {plan:?}")
            };
            assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", reason));
            assert!(
                c.message.contains(annotation) && c.message.contains("three"),
                "{}",
                c.message
            );
            let event = plan.event.expect("event");
            assert!(event.warning && event.note.contains(annotation));
        }
    }

    #[test]
    fn a_malformed_wave_removes_an_earlier_mark() {
        let marked = serde_json::json!({SYNC_WAVE: "x", WAVE_COMPLETE: "0", WAVE_GENERATION: "2"});
        let plan = decide(&nvj(marked, done("Succeeded", 2)), now());
        assert_eq!(plan.annotations, Some(BTreeMap::new()));
    }

    #[test]
    fn the_condition_is_written_once_and_removed_when_fixed() {
        let first = decide(
            &nvj(serde_json::json!({SYNC_WAVE: "x"}), done("Running", 2)),
            now(),
        );
        let ConditionChange::Set(c) = first.condition else {
            panic!("condition expected")
        };
        let mut status = done("Running", 2);
        status["conditions"] = serde_json::json!([c]);
        let again = decide(
            &nvj(serde_json::json!({SYNC_WAVE: "x"}), status.clone()),
            now(),
        );
        assert!(again.is_noop() && again.event.is_none(), "{again:?}");
        let fixed = decide(&nvj(serde_json::json!({SYNC_WAVE: "1"}), status), now());
        assert_eq!(fixed.condition, ConditionChange::Remove);
    }

    #[test]
    fn waves_default_to_zero_and_parse_block_wave() {
        let w = waves(&nvj(
            serde_json::json!({BLOCK_WAVE: " 4 "}),
            done("Running", 2),
        ))
        .expect("valid");
        assert_eq!(
            w,
            Waves {
                sync_wave: 0,
                block_wave: Some(4)
            }
        );
    }
}
