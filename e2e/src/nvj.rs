//! NVJs as tests need them: a minimal valid one, and a run marked Succeeded exactly as
//! nvj-validator writes it (its field manager, phase, observedGeneration, completion time and
//! conditions), for tests of the controllers that act on results.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use nbg_core::nvj::NotebookValidationJob;

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

/// Writes what nvj-validator writes when the current generation's run succeeds.
pub async fn mark_succeeded(
    api: &Api<NotebookValidationJob>,
    nvj: &NotebookValidationJob,
) -> kube::Result<NotebookValidationJob> {
    let name = nvj.metadata.name.clone().unwrap_or_default();
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH);
    let generation = nvj.metadata.generation;
    let condition = |type_: &str, status: &str, reason: &str| {
        serde_json::json!({"type": type_, "status": status, "reason": reason, "message": "all cells succeeded",
                           "lastTransitionTime": now.to_string(), "observedGeneration": generation})
    };
    let status = serde_json::json!({
        "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
        "status": {"phase": "Succeeded", "observedGeneration": generation,
                   "message": "all cells succeeded", "completionTime": now.to_string(),
                   "conditions": [condition("Ready", "True", "Succeeded"),
                                  condition("Reconciling", "False", "Succeeded"),
                                  condition("Stalled", "False", "Succeeded")]}
    });
    api.patch_status(
        &name,
        &PatchParams::apply("nvj-validator").force(),
        &Patch::Apply(&status),
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
