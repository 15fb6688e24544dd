//! The served model's check in the records (pure): what a restart that has rolled out asks of
//! the new predictor, the record its answer makes, and `status.modelValidationResult` from the
//! run's records.
//!
//! The check starts when the rollout is first seen complete; that time is kept in the record
//! (`rolloutCompleteTime`), so a successor after a crash asks until the same deadline.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use nbg_core::annotations::{TriggerAction, TriggerTarget};
use nbg_core::model_validation::{
    ExistingEnvironmentCheck, ModelCheckResult, ModelChecks, ModelValidationError,
    ModelValidationResult,
};
use nbg_core::nvj::{NotebookValidationJob, ServedModelCheck, TriggerOutcome, TriggerRecord};

use super::act::{Observed, Step, Wake, nvj_namespace};
use super::{RecordKey, record_for};
use crate::served_model::{self, Answer, ModelRequest, Verdict};

/// How often a predictor that has not answered yet is asked again.
pub const ASK_AGAIN: Duration = Duration::from_secs(2);

/// What a record says while the new model has not answered.
const WAITING: &str = "waiting for the new model to answer";

/// A question to the new predictor, and what the record says of the restart so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub request: ModelRequest,
    pub checks: ModelChecks,
    /// When the rollout was seen complete: the timeout counts from then.
    pub since: Timestamp,
    /// What was done: `restart applied; rollout complete`.
    pub done: String,
}

/// The served-model checks of the NVJ, as its spec reads.
pub fn checks(nvj: &NotebookValidationJob) -> Result<Option<ModelChecks>, ModelValidationError> {
    nbg_core::model_validation::checks(&nvj_namespace(nvj), nvj.spec.model_validation.as_ref())
}

/// Whether the target is a restart of an InferenceService.
pub fn restarts_a_model(t: &TriggerTarget) -> bool {
    t.action == TriggerAction::Restart
        && t.group() == "serving.kserve.io"
        && t.kind == "InferenceService"
}

/// When the rollout of this run's restart of the target was first seen complete: kept in its
/// record, else now.
pub fn since(nvj: &NotebookValidationJob, run: &str, obs: &Observed, now: Timestamp) -> Timestamp {
    let key = RecordKey {
        target: obs.key.clone(),
        action: obs.target.action.as_str().to_string(),
    };
    record_for(nvj, run, &key)
        .and_then(|r| r.rollout_complete_time.as_ref())
        .map_or(now, |t| t.0)
}

fn in_words(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The step that `answer` makes for the restart asked about in `ask`, at `now`.
pub fn answered(obs: &Observed, run: &str, now: Timestamp, ask: &Ask, answer: &Answer) -> Step {
    let record = |outcome, message: String, served: Option<ServedModelCheck>| {
        let mut r = super::act::record(obs, run, now, outcome, message);
        r.rollout_complete_time = Some(Time(ask.since));
        r.served_model = served;
        r
    };
    let unanswered = || ServedModelCheck {
        available: false,
        healthy: false,
        prediction: None,
    };
    let done = &ask.done;
    match served_model::judge(&ask.checks, &ask.request, answer) {
        Verdict::Healthy { check, said } => Step::Record(
            record(
                TriggerOutcome::Succeeded,
                format!("{done}; {said}"),
                Some(check),
            ),
            Wake::Never,
        ),
        Verdict::Wrong { check, said } => Step::Record(
            record(
                TriggerOutcome::Failed,
                format!("{done}; {said}"),
                Some(check),
            ),
            Wake::Never,
        ),
        Verdict::Forbidden(why) => Step::Record(
            record(
                TriggerOutcome::Denied,
                format!("{done}; {why}"),
                Some(unanswered()),
            ),
            Wake::Never,
        ),
        Verdict::NoAnswer(why) => {
            let waited = Duration::try_from(now.duration_since(ask.since)).unwrap_or_default();
            if waited >= ask.checks.timeout {
                return Step::Record(
                    record(
                        TriggerOutcome::Failed,
                        format!(
                            "{done}; the new model did not answer within {} (spec.modelValidation.timeout): {why}",
                            in_words(ask.checks.timeout)
                        ),
                        Some(unanswered()),
                    ),
                    Wake::Never,
                );
            }
            // One write when the wait starts (keeping when it started), none while it lasts.
            Step::Record(
                record(
                    TriggerOutcome::InProgress,
                    format!("{done}; {WAITING}"),
                    None,
                ),
                Wake::After(ASK_AGAIN.min(ask.checks.timeout - waited)),
            )
        }
    }
}

/// `status.modelValidationResult` for `run` from its records: once every model checked has a
/// final record; `None` before (a result of an earlier run is dropped then).
pub fn result(
    nvj: &NotebookValidationJob,
    run: &str,
    targets: &[TriggerTarget],
    records: &[TriggerRecord],
) -> Option<ModelValidationResult> {
    let checks = match checks(nvj) {
        Ok(Some(c)) => c,
        Ok(None) => return None,
        Err(e) => {
            return Some(ModelValidationResult {
                run: run.to_string(),
                phase: nbg_core::nvj::ModelValidationPhase::Both,
                platform: nbg_core::nvj::ModelPlatform::Kserve,
                platform_detected: false,
                existing_environment_check: None,
                success: false,
                message: Some(e.to_string()),
            });
        }
    };
    let ns = nvj_namespace(nvj);
    let mut models = Vec::new();
    for (model_ns, name) in &checks.models {
        let restarted = targets.iter().any(|t| {
            restarts_a_model(t)
                && t.name == *name
                && t.namespace.as_deref().unwrap_or(&ns) == model_ns
        });
        let model_name = format!("{model_ns}/{name}");
        if !restarted {
            models.push(ModelCheckResult {
                model_name,
                available: false,
                healthy: false,
                message: Some(format!(
                    "not checked: this NVJ's mlops.dev/on-success-trigger does not restart InferenceService {model_ns}/{name}, and a model is checked after its restart; add the restart or remove it from spec.modelValidation.targetModels"
                )),
            });
            continue;
        }
        let record = records.iter().find(|r| {
            r.run == run
                && r.kind == "InferenceService"
                && r.action == "restart"
                && r.namespace == *model_ns
                && r.name == *name
        })?;
        if record.outcome == TriggerOutcome::InProgress {
            return None;
        }
        let served = record.served_model.clone().unwrap_or(ServedModelCheck {
            available: false,
            healthy: false,
            prediction: None,
        });
        models.push(ModelCheckResult {
            model_name,
            available: served.available,
            healthy: served.healthy && record.outcome == TriggerOutcome::Succeeded,
            message: record.message.clone(),
        });
    }
    let failed: Vec<&ModelCheckResult> = models.iter().filter(|m| !m.healthy).collect();
    let success = failed.is_empty();
    let predictions = || {
        records
            .iter()
            .filter(|r| r.run == run)
            .filter_map(|r| r.served_model.as_ref()?.prediction.clone())
    };
    let prediction_validation = predictions()
        .find(|p| !p.success)
        .or_else(|| predictions().next_back());
    let message = if success {
        format!(
            "{} served model{} answered as expected after the restart",
            models.len(),
            if models.len() == 1 { "" } else { "s" }
        )
    } else {
        failed
            .iter()
            .map(|m| {
                format!(
                    "{}: {}",
                    m.model_name,
                    m.message.as_deref().unwrap_or("failed")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    Some(ModelValidationResult {
        run: run.to_string(),
        phase: checks.phase,
        platform: checks.platform,
        platform_detected: false,
        existing_environment_check: Some(ExistingEnvironmentCheck {
            models_checked: models,
            prediction_validation,
            success,
            message: Some(message.clone()),
        }),
        success,
        message: Some(message),
    })
}

#[cfg(test)]
mod tests;
