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

/// Waits up to `within` for NVJ `name`'s current generation to reach a terminal phase; a
/// timeout names the NVJ and the controller's log.
pub async fn finished(
    api: &Api<NotebookValidationJob>,
    name: &str,
    within: std::time::Duration,
    controller_log: &std::path::Path,
) -> NotebookValidationJob {
    let what = format!(
        "{}/{name} to finish (controller log: {})",
        api.namespace().unwrap_or_default(),
        controller_log.display()
    );
    crate::harness::cluster::eventually(within, &what, || async {
        let n = api.get(name).await.ok()?;
        n.current_phase().filter(|p| p.is_terminal()).map(|_| n)
    })
    .await
}

/// Executes `cells` on this machine with `nvj-validator run` (the host's notebook environment,
/// the pinned versions the runner image has) and returns the executed notebook: a golden copy.
pub fn executed_notebook(cells: &[&str]) -> String {
    use crate::harness::cluster::{notebook_python, workspace_binary};
    let dir = tempfile_dir(cells.len());
    let input = dir.join("in.ipynb");
    let output = dir.join("out.ipynb");
    std::fs::write(&input, crate::harness::git_server::notebook(cells)).expect("write");
    let status = std::process::Command::new(workspace_binary("nvj-validator"))
        .arg("run")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .arg("--python")
        .arg(notebook_python())
        .status()
        .expect("run");
    assert!(
        status.success(),
        "nvj-validator run of the golden cells failed"
    );
    std::fs::read_to_string(&output).expect("executed notebook")
}

/// A directory of this process's own for one golden notebook (scenarios run side by side).
fn tempfile_dir(cells: usize) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("nbg-golden-{}-{n}-{cells}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}
