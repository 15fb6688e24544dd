//! The Flux example, `manifests/examples/flux/`, applied by the real Flux as a user applies it:
//! its GitRepository (pointed at a git server of the test's holding this repository's
//! `manifests/examples/`), `fraud-training` building the fraud-detection claim and NVJ through
//! kustomize from files outside its directory, and `fraud-serving` with `dependsOn`. The model
//! server is applied only once the NVJ's run succeeded (written as nvj-validator writes it).

use std::path::Path;
use std::time::{Duration, Instant};

use kube::api::Api;
use nbg_core::nvj::{NotebookValidationJob, Phase};
use nbg_e2e::harness::cluster::{dynamic_api, eventually, repo_root};
use nbg_e2e::harness::flux::{FluxPlane, kustomizations, ready};
use nbg_e2e::harness::nvj::mark_finished;
use serde_json::json;

/// Every file under `dir`, as `(path relative to the repository root, content)`.
fn files(root: &Path, dir: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read the example").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let (Ok(rel), Ok(text)) =
                (path.strip_prefix(root), std::fs::read_to_string(&path))
            {
                out.push((rel.display().to_string(), text));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_flux_example_serves_the_model_only_after_the_training_validation_succeeded() {
    let flux = FluxPlane::start("flux-example-cluster").await;
    let client = flux.plane.cluster.client().await;
    let root = repo_root();
    let mut example = files(&root, "manifests/examples/flux");
    example.extend(files(&root, "manifests/examples/fraud-detection"));
    let owned: Vec<(&str, String)> = example
        .iter()
        .map(|(p, t)| (p.as_str(), t.clone()))
        .collect();
    flux.repo.commit(&owned, "the examples");
    let (ok, _, err) = flux
        .plane
        .cluster
        .kubectl(&["create", "namespace", "fraud-detection"], None);
    assert!(ok, "{err}");
    // A volume for the example's claim (no provisioner here; a cluster's would bind it).
    flux.apply(&json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "fraud-models"},
        "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": "/tmp/nbg-flux-example"}, "storageClassName": ""}}));

    // The example as written, but for the repository's address.
    let manifest = std::fs::read_to_string(root.join("manifests/examples/flux/flux-system.yaml"))
        .expect("flux-system.yaml")
        .replace(
            "https://git.example.com/ml/fraud-detection-deploy.git",
            &flux.server.url("ml"),
        );
    let (ok, _, err) = flux
        .plane
        .cluster
        .kubectl(&["apply", "-f", "-"], Some(&manifest));
    assert!(ok, "{err}");

    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), "fraud-detection");
    let models = dynamic_api(
        &client,
        "fraud-detection",
        "serving.kserve.io",
        "v1beta1",
        "InferenceService",
    );
    let ks = kustomizations(&client);
    let nvj = eventually(
        Duration::from_secs(60),
        "the example's NVJ applied by kustomize-controller",
        || async { nvjs.get_opt("train-fraud-model").await.ok().flatten() },
    )
    .await;
    let trigger = nvj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("mlops.dev/on-success-trigger"))
        .cloned()
        .unwrap_or_default();
    assert!(trigger.contains("kind: InferenceService"), "{trigger}");
    let applied = Instant::now();
    while applied.elapsed() < Duration::from_secs(10) {
        assert!(
            models.get_opt("fraud-model").await.expect("read").is_none(),
            "the model server was applied before the validation ran"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    mark_finished(&nvjs, &nvj, Phase::Succeeded, "All 7 cells succeeded")
        .await
        .expect("the run succeeded");
    eventually(Duration::from_secs(60), "fraud-training Ready", || async {
        let k = ks.get("fraud-training").await.ok()?;
        ready(&k).filter(|(status, _, _)| status == "True")
    })
    .await;
    let model = eventually(
        Duration::from_secs(60),
        "the model server applied by fraud-serving",
        || async { models.get_opt("fraud-model").await.ok().flatten() },
    )
    .await;
    assert_eq!(
        model.data.pointer("/spec/predictor/model/storageUri"),
        Some(&json!("pvc://fraud-models/model"))
    );
}
