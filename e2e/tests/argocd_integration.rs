//! Argo CD integration on the real API server: the GitOps example applies, the argocd-cm patch
//! adds our keys without touching other settings, and the health check judges NVJs exactly as
//! the API server returns them, including a spec change that makes the status stale.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use nbg_argocd_health::{Sandbox, check_for};
use nbg_core::annotations::{self, TriggerAction};
use nbg_core::nvj::NotebookValidationJob;
use nbg_e2e::harness::cluster::repo_root;
use nbg_e2e::{Cluster, TestNamespace};

#[tokio::test]
async fn the_gitops_example_applies_and_its_annotations_parse() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "example").await;
    let dir = repo_root().join("manifests/examples/fraud-detection");
    let (ok, out, err) = cluster.kubectl(
        &["apply", "-n", &ns.name, "-f", &dir.to_string_lossy()],
        None,
    );
    assert!(ok, "example rejected: {err}");
    for created in [
        "persistentvolumeclaim/fraud-models",
        "notebookvalidationjob.mlops.mlops.dev/train-fraud-model",
        "inferenceservice.serving.kserve.io/fraud-model",
    ] {
        assert!(out.contains(created), "{created} missing from: {out}");
    }
    let nvj = Api::<NotebookValidationJob>::namespaced(cluster.client().await, &ns.name)
        .get("train-fraud-model")
        .await
        .expect("nvj");
    let ann = nvj.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations::parse_wave(&ann[annotations::SYNC_WAVE]), Ok(3));
    assert_eq!(
        annotations::parse_wave(&ann[annotations::BLOCK_WAVE]),
        Ok(4)
    );
    let targets = annotations::parse_on_success_trigger(&ann[annotations::ON_SUCCESS_TRIGGER])
        .expect("trigger annotation parses");
    assert_eq!(targets.len(), 2);
    assert_eq!(
        (
            targets[1].kind.as_str(),
            targets[1].namespace.as_deref(),
            targets[1].action
        ),
        ("Application", Some("argocd"), TriggerAction::Sync)
    );
    assert_eq!(
        (
            targets[0].kind.as_str(),
            targets[0].name.as_str(),
            targets[0].action
        ),
        ("InferenceService", "fraud-model", TriggerAction::Restart)
    );

    // The Application that deploys it belongs in Argo CD's namespace.
    let _ = cluster.kubectl(&["create", "namespace", "argocd"], None);
    let app = repo_root().join("manifests/examples/fraud-detection-application.yaml");
    let (ok, _, err) = cluster.kubectl(&["apply", "-f", &app.to_string_lossy()], None);
    assert!(ok, "application rejected: {err}");
    let _ = cluster.kubectl(
        &["delete", "-f", &app.to_string_lossy(), "--wait=false"],
        None,
    );
}

#[tokio::test]
async fn the_argocd_cm_patch_adds_our_keys_and_keeps_the_others() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "argocd-cm").await;
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await, &ns.name);
    let existing = BTreeMap::from([
        ("url".to_string(), "https://argocd.example.com".to_string()),
        (
            "resource.customizations.health.example.com_Widget".to_string(),
            "hs = {status = 'Healthy'}\nreturn hs\n".to_string(),
        ),
    ]);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("argocd-cm".into()),
            ..ObjectMeta::default()
        },
        data: Some(existing.clone()),
        ..ConfigMap::default()
    };
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create argocd-cm");
    let patch = repo_root().join("manifests/argocd/argocd-cm-patch.yaml");
    let (ok, _, err) = cluster.kubectl(
        &[
            "patch",
            "configmap",
            "argocd-cm",
            "-n",
            &ns.name,
            "--type",
            "merge",
            "--patch-file",
            &patch.to_string_lossy(),
        ],
        None,
    );
    assert!(ok, "kubectl patch failed: {err}");
    let data = api
        .get("argocd-cm")
        .await
        .expect("get")
        .data
        .unwrap_or_default();
    for (k, v) in &existing {
        assert_eq!(data.get(k), Some(v), "existing setting {k} was changed");
    }
    let nvj = check_for("mlops.mlops.dev", "NotebookValidationJob").expect("check");
    assert_eq!(
        data.get("resource.customizations.health.mlops.mlops.dev_NotebookValidationJob")
            .map(String::as_str),
        Some(nvj.script)
    );
    assert!(data.contains_key("resource.customizations.health.PersistentVolumeClaim"));
    assert!(data.contains_key(
        "resource.customizations.ignoreResourceUpdates.mlops.mlops.dev_NotebookValidationJob"
    ));
}

#[tokio::test]
async fn the_health_check_judges_nvjs_as_the_api_server_returns_them() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "health").await;
    let client = cluster.client().await;
    let api: Api<NotebookValidationJob> = Api::namespaced(client, &ns.name);
    let sandbox = Sandbox::new().expect("sandbox");
    let check = check_for("mlops.mlops.dev", "NotebookValidationJob").expect("check");
    let judge = |nvj: &NotebookValidationJob| {
        sandbox
            .evaluate(check.script, &serde_json::to_value(nvj).expect("json"))
            .expect("health")
    };

    let nvj: NotebookValidationJob = serde_json::from_value(serde_json::json!({
        "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob", "metadata": {"name": "judged"},
        "spec": {"notebook": {"git": {"url": "https://example.com/r.git", "ref": "main"}, "path": "a.ipynb"}, "podConfig": {"containerImage": "img"}}
    }))
    .expect("nvj");
    let created = api
        .create(&PostParams::default(), &nvj)
        .await
        .expect("create");
    assert_eq!(judge(&created).status, "Progressing");

    let status = serde_json::json!({"status": {"phase": "Failed", "observedGeneration": 1, "message": "Cell 3 failed: ValueError: empty", "retryCount": 2}});
    let failed = api
        .patch_status("judged", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status");
    let health = judge(&failed);
    assert_eq!(
        (health.status.as_str(), health.message.as_str()),
        (
            "Degraded",
            "Cell 3 failed: ValueError: empty (after 2 retries)"
        )
    );

    // A spec change: the API server bumps the generation, and the Failed status is stale.
    let spec = serde_json::json!({"spec": {"timeout": "10m"}});
    let changed = api
        .patch("judged", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .expect("spec change");
    assert_eq!(changed.metadata.generation, Some(2));
    let health = judge(&changed);
    assert_eq!(health.status, "Progressing");
    assert!(
        health.message.contains("generation 2"),
        "{}",
        health.message
    );
}
