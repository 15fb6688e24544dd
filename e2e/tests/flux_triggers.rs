//! trigger-controller's `reconcile` on Flux objects, with the real Flux (source-controller and
//! kustomize-controller) on a control plane of this test's own and trigger-controller under its
//! chart's RBAC with `global.flux.enabled`: once per run a Kustomization in flux-system that
//! consents, the NVJ's own Kustomization (it manages the NVJ: its inventory lists it and the
//! NVJ's labels name it, no consent needed) and the GitRepository (consenting) are asked to
//! reconcile as `flux reconcile` asks,
//! each recorded Succeeded once Flux has handled the request and reports it Ready; a
//! Kustomization that neither manages the NVJ nor consents is refused. Exactly once across a
//! SIGKILL of trigger-controller.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use nbg_core::nvj::{NotebookValidationJob, Phase, TriggerOutcome, TriggerRecord};
use nbg_e2e::harness::argocd::nvj_manifest;
use nbg_e2e::harness::cluster::{dynamic_api, eventually};
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::flux::{
    FLUX_NAMESPACE, FluxPlane, git_repository, kustomization, play_helm_controller,
};
use nbg_e2e::harness::nvj::mark_finished;
use serde_json::json;

const TRIGGERS: &str = r#"
- {apiVersion: kustomize.toolkit.fluxcd.io/v1, kind: Kustomization, name: serve, namespace: flux-system, action: reconcile}
- {apiVersion: kustomize.toolkit.fluxcd.io/v1, kind: Kustomization, name: train, namespace: flux-system, action: reconcile}
- {apiVersion: source.toolkit.fluxcd.io/v1, kind: GitRepository, name: ml, namespace: flux-system, action: reconcile}
- {apiVersion: kustomize.toolkit.fluxcd.io/v1, kind: Kustomization, name: other, namespace: flux-system, action: reconcile}
- {apiVersion: helm.toolkit.fluxcd.io/v2, kind: HelmRelease, name: model-server, namespace: flux-system, action: reconcile}
"#;

/// Every distinct `reconcile.fluxcd.io/requestedAt` value each Flux object carried, in order.
type Requests = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

fn record_requests(api: Api<DynamicObject>, kind: &'static str, requests: &Requests) {
    let requests = requests.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(object)) = stream.next().await {
            let Some(value) = object
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("reconcile.fluxcd.io/requestedAt"))
            else {
                continue;
            };
            let key = format!(
                "{kind}/{}",
                object.metadata.name.clone().unwrap_or_default()
            );
            if let Ok(mut seen) = requests.lock() {
                let values = seen.entry(key).or_default();
                if values.last() != Some(value) {
                    values.push(value.clone());
                }
            }
        }
    });
}

fn requests_of(requests: &Requests, key: &str) -> Vec<String> {
    requests
        .lock()
        .map(|r| r.get(key).cloned().unwrap_or_default())
        .unwrap_or_default()
}

fn record<'a>(nvj: &'a NotebookValidationJob, kind: &str, name: &str) -> Option<&'a TriggerRecord> {
    nvj.status
        .as_ref()?
        .triggers
        .iter()
        .find(|r| r.kind == kind && r.name == name)
}

/// Waits until every trigger of the current run has its final record.
async fn recorded(api: &Api<NotebookValidationJob>) -> NotebookValidationJob {
    eventually(
        Duration::from_secs(90),
        "the five triggers recorded for the run",
        || async {
            let nvj = api.get("train").await.ok()?;
            let run = nvj.run_id()?;
            let records = &nvj.status.as_ref()?.triggers;
            (records.len() == 5
                && records
                    .iter()
                    .all(|r| r.run == run && r.outcome != TriggerOutcome::InProgress))
            .then_some(nvj)
        },
    )
    .await
}

#[tokio::test]
async fn reconcile_triggers_ask_flux_once_per_run_and_wait_for_it_to_handle_them() {
    let flux = FluxPlane::start("flux-triggers-cluster").await;
    let client = flux.plane.cluster.client().await;
    let config = |name: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
               "data": {"model": "fraud-v1"}})
        .to_string()
    };
    let mut nvj = nvj_manifest("train", &[("mlops.dev/on-success-trigger", TRIGGERS)]);
    flux.repo.commit(
        &[
            ("train/nvj.yaml", nvj.to_string()),
            ("serve/model-server.yaml", config("model-server")),
            ("other/other.yaml", config("other")),
        ],
        "training and serving",
    );
    let mut source = git_repository("ml", &flux.server.url("ml"), "10m");
    source["metadata"]["annotations"] = json!({"mlops.dev/allow-triggers-from": "ml"});
    flux.apply(&source);
    flux.apply(&kustomization(
        "train",
        "ml",
        "./train",
        "ml",
        json!({"wait": true}),
    ));
    // serve consents to triggers from ml; other neither consents nor manages the NVJ.
    let mut serve = kustomization("serve", "ml", "./serve", "ml", json!({}));
    serve["metadata"]["annotations"] = json!({"mlops.dev/allow-triggers-from": "ml"});
    flux.apply(&serve);
    flux.apply(&kustomization("other", "ml", "./other", "ml", json!({})));
    flux.apply(
        &json!({"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "model-server", "namespace": FLUX_NAMESPACE,
                     "annotations": {"mlops.dev/allow-triggers-from": "ml"}},
        "spec": {"interval": "10m",
                 "chartRef": {"kind": "OCIRepository", "name": "model-server-chart"}}}),
    );
    play_helm_controller(&client);

    let requests: Requests = Arc::default();
    for (kind, group, version) in [
        ("Kustomization", "kustomize.toolkit.fluxcd.io", "v1"),
        ("GitRepository", "source.toolkit.fluxcd.io", "v1"),
        ("HelmRelease", "helm.toolkit.fluxcd.io", "v2"),
    ] {
        record_requests(
            dynamic_api(&client, FLUX_NAMESPACE, group, version, kind),
            kind,
            &requests,
        );
    }

    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), "ml");
    let applied = flux.applied_nvj(&nvjs, "train").await;
    let mut controller = ChartedController::start(
        &flux.plane.cluster,
        ControllerSpec {
            name: "trigger-controller",
            release_namespace: "ml",
            namespaces: &["ml"],
            values: &[
                "global.flux.enabled=true".to_string(),
                "global.argocd.enabled=false".to_string(),
            ],
            args: &[],
        },
    )
    .await;

    let succeeded_at = std::time::Instant::now();
    mark_finished(&nvjs, &applied, Phase::Succeeded, "All 3 cells succeeded")
        .await
        .expect("the run succeeded");
    let first = recorded(&nvjs).await;
    println!(
        "run Succeeded -> every reconcile handled by Flux and recorded in {:.1} s",
        succeeded_at.elapsed().as_secs_f64()
    );
    for name in ["serve", "train"] {
        let r = record(&first, "Kustomization", name).expect("a record");
        assert_eq!(r.outcome, TriggerOutcome::Succeeded, "{name}: {r:?}");
        assert_eq!(
            r.message.as_deref(),
            Some("reconcile requested; Flux reconciled it and reports it Ready"),
            "{name}"
        );
    }
    let source = record(&first, "GitRepository", "ml").expect("a record");
    assert_eq!(source.outcome, TriggerOutcome::Succeeded, "{source:?}");
    let release = record(&first, "HelmRelease", "model-server").expect("a record");
    assert_eq!(release.outcome, TriggerOutcome::Succeeded, "{release:?}");
    let other = record(&first, "Kustomization", "other").expect("a record");
    assert_eq!(other.outcome, TriggerOutcome::Denied, "{other:?}");
    assert!(
        other
            .message
            .as_deref()
            .is_some_and(|m| m.contains("does not consent to triggers from namespace ml")),
        "{other:?}"
    );
    let ks = dynamic_api(
        &client,
        FLUX_NAMESPACE,
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "Kustomization",
    );
    let serve_now = ks.get("serve").await.expect("serve");
    let requested = serve_now
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("reconcile.fluxcd.io/requestedAt"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        serve_now
            .data
            .pointer("/status/lastHandledReconcileAt")
            .and_then(|v| v.as_str()),
        Some(requested.as_str()),
        "Flux handled the request trigger-controller wrote"
    );

    // A crash and a restart ask nothing again.
    controller.kill();
    controller.restart();
    tokio::time::sleep(Duration::from_secs(8)).await;
    for key in [
        "Kustomization/serve",
        "Kustomization/train",
        "GitRepository/ml",
    ] {
        assert_eq!(requests_of(&requests, key).len(), 1, "{key}: {requests:?}");
    }
    assert!(requests_of(&requests, "Kustomization/other").is_empty());

    // The next run: SIGKILLed right after it succeeded, then started again - still once.
    nvj["spec"]["timeout"] = json!("31m");
    flux.repo
        .commit(&[("train/nvj.yaml", nvj.to_string())], "a longer timeout");
    flux.fetch_now(&format!("by-the-test-{}", std::process::id()));
    let second = eventually(Duration::from_secs(60), "generation 2 applied", || async {
        nvjs.get("train")
            .await
            .ok()
            .filter(|n| n.metadata.generation == Some(2))
    })
    .await;
    mark_finished(&nvjs, &second, Phase::Succeeded, "All 3 cells succeeded")
        .await
        .expect("the second run succeeded");
    controller.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    controller.restart();
    let after = recorded(&nvjs).await;
    assert_eq!(
        record(&after, "Kustomization", "serve").map(|r| r.outcome),
        Some(TriggerOutcome::Succeeded)
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    for key in [
        "Kustomization/serve",
        "Kustomization/train",
        "HelmRelease/model-server",
    ] {
        assert_eq!(requests_of(&requests, key).len(), 2, "{key}: {requests:?}");
    }
    // The GitRepository also carries the test's own request of this run.
    assert_eq!(
        requests_of(&requests, "GitRepository/ml").len(),
        3,
        "{requests:?}"
    );
}
