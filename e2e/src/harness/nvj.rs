//! NVJs as tests need them: a minimal valid one, and a run marked Succeeded exactly as
//! nvj-validator writes it (its field manager, phase, observedGeneration, completion time, and
//! conditions from the same `nbg_core::conditions::for_phase`), for tests of the controllers
//! that act on results.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use nbg_core::conditions;
use nbg_core::nvj::{NotebookValidationJob, Phase, TriggerOutcome};

/// Annotations from `(key, value)` pairs.
pub fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A minimal valid NVJ with these annotations.
pub fn minimal(name: &str, annotations: &BTreeMap<String, String>) -> NotebookValidationJob {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"notebook": {"git": {"url": "https://git.example/r.git", "ref": "main"}, "path": "a.ipynb"},
                 "podConfig": {"containerImage": "quay.io/example/notebook:1"}}
    }))
    .expect("a valid NVJ")
}

/// How many of these NVJs have a trigger recorded Succeeded.
pub fn with_trigger_succeeded(nvjs: &[NotebookValidationJob]) -> usize {
    nvjs.iter()
        .filter(|j| {
            j.status.as_ref().is_some_and(|s| {
                s.triggers
                    .iter()
                    .any(|r| r.outcome == TriggerOutcome::Succeeded)
            })
        })
        .count()
}

/// Writes what nvj-validator writes when the current generation's run succeeds.
pub async fn mark_succeeded(
    api: &Api<NotebookValidationJob>,
    nvj: &NotebookValidationJob,
) -> kube::Result<NotebookValidationJob> {
    mark_finished(api, nvj, Phase::Succeeded, "all cells succeeded").await
}

/// Writes what nvj-validator writes when the current generation's run ends in `phase`
/// (`Running` writes a run in progress, without a completion time).
pub async fn mark_finished(
    api: &Api<NotebookValidationJob>,
    nvj: &NotebookValidationJob,
    phase: Phase,
    message: &str,
) -> kube::Result<NotebookValidationJob> {
    let name = nvj.metadata.name.clone().unwrap_or_default();
    let now =
        Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH));
    let generation = nvj.metadata.generation;
    let reason = match phase {
        Phase::Succeeded => "Succeeded",
        Phase::Failed => "CellFailed",
        _ => "Running",
    };
    let conditions = conditions::for_phase(&[], phase, reason, message, generation, &now);
    let mut status = serde_json::json!({"phase": phase, "observedGeneration": generation,
        "message": message, "startTime": now, "conditions": conditions});
    if phase.is_terminal() {
        status["completionTime"] = serde_json::json!(now);
    }
    let body = serde_json::json!({
        "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
        "status": status
    });
    api.patch_status(
        &name,
        &PatchParams::apply("nvj-validator").force(),
        &Patch::Apply(&body),
    )
    .await
}

/// Creates `minimal(name, annotations)` and marks its run Succeeded.
pub async fn create_succeeded(
    api: &Api<NotebookValidationJob>,
    name: &str,
    annotations: &BTreeMap<String, String>,
) -> NotebookValidationJob {
    let nvj = api
        .create(&PostParams::default(), &minimal(name, annotations))
        .await
        .expect("create the NVJ");
    mark_succeeded(api, &nvj)
        .await
        .expect("mark the run Succeeded")
}

/// `<uid>/<generation>`, the run's identity.
pub fn run_id(nvj: &NotebookValidationJob) -> String {
    nvj.run_id().unwrap_or_default()
}
