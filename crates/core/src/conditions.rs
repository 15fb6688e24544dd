//! Condition helpers. The NVJ carries kstatus conditions (`Ready`, `Reconciling`, `Stalled`) so
//! `kubectl wait --for=condition=Ready`, Flux and kstatus work, plus the Go operator's
//! `ValidationComplete`. [`for_phase`] derives all four from the phase so they always agree.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::nvj::Phase;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const VALIDATION_COMPLETE: &str = "ValidationComplete";

/// Inserts or replaces the condition of `new.type_`. The transition time is kept when the
/// status did not change, as the Kubernetes API conventions require.
pub fn upsert(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status == new.status {
                new.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = new;
        }
        None => conditions.push(new),
    }
}

/// A condition with the given fields.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// The four phase-derived conditions for `phase`, merged into `existing` (other condition
/// types in `existing` are kept untouched).
pub fn for_phase(
    existing: &[Condition],
    phase: Phase,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let (ready, reconciling, stalled, complete) = match phase {
        Phase::Succeeded => (true, false, false, true),
        Phase::Failed => (false, false, true, true),
        _ => (false, true, false, false),
    };
    let mut out = existing.to_vec();
    for (type_, status) in [
        (READY, ready),
        (RECONCILING, reconciling),
        (STALLED, stalled),
        (VALIDATION_COMPLETE, complete),
    ] {
        upsert(
            &mut out,
            condition(type_, status, reason, message, generation, now),
        );
    }
    out
}

/// True when the condition of `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("valid timestamp"))
    }

    #[test]
    fn conditions_agree_with_every_phase() {
        for (phase, ready, stalled, reconciling) in [
            (Phase::Initializing, false, false, true),
            (Phase::ValidationRunning, false, false, true),
            (Phase::Succeeded, true, false, false),
            (Phase::Failed, false, true, false),
        ] {
            let c = for_phase(&[], phase, "R", "m", Some(1), &t(0));
            assert_eq!(is_true(&c, READY), ready, "{phase}");
            assert_eq!(is_true(&c, STALLED), stalled, "{phase}");
            assert_eq!(is_true(&c, RECONCILING), reconciling, "{phase}");
            assert_eq!(
                is_true(&c, VALIDATION_COMPLETE),
                phase.is_terminal(),
                "{phase}"
            );
        }
    }

    #[test]
    fn transition_time_kept_when_status_unchanged() {
        let first = for_phase(
            &[],
            Phase::ValidationRunning,
            "Running",
            "a",
            Some(1),
            &t(10),
        );
        let second = for_phase(
            &first,
            Phase::ValidationRunning,
            "Running",
            "b",
            Some(1),
            &t(20),
        );
        let ready = second
            .iter()
            .find(|c| c.type_ == READY)
            .expect("ready present");
        assert_eq!(ready.last_transition_time, t(10));
        assert_eq!(ready.message, "b");
        let done = for_phase(&second, Phase::Succeeded, "Done", "c", Some(1), &t(30));
        let ready = done
            .iter()
            .find(|c| c.type_ == READY)
            .expect("ready present");
        assert_eq!(ready.last_transition_time, t(30));
    }

    #[test]
    fn foreign_conditions_are_kept() {
        let other = condition(
            "BuildConfigUnsupported",
            true,
            "NotImplemented",
            "x",
            Some(1),
            &t(0),
        );
        let out = for_phase(
            std::slice::from_ref(&other),
            Phase::Succeeded,
            "Done",
            "ok",
            Some(1),
            &t(1),
        );
        assert!(out.contains(&other));
        assert_eq!(out.len(), 5);
    }
}
