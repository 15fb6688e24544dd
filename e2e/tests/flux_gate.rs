//! Validation-gated deploys with the real Flux: source-controller fetching a repository over
//! smart HTTP, kustomize-controller applying a Kustomization `train` (an NVJ, `wait: true`) and
//! a Kustomization `serve` that `dependsOn` it, on a control plane of this test's own. The NVJ's
//! runs are written as nvj-validator writes them; what is proved is what Flux does with them:
//! - a new NVJ holds `train` from its first second (the CRD's default status; without it
//!   kstatus read the NVJ as Current and `serve` deployed before any validation ran);
//! - `train` turns Ready only when the current generation's run Succeeded, and `serve` is
//!   applied only then;
//! - a spec change holds `train` again, and a failed run fails its health check;
//! - `wave-marker wait --kustomization flux-system/train` (the NVJs its inventory lists) exits 0
//!   once the run is marked complete, and 1 when a run fails;
//! - event-notifier posts one event per ended run about `train`, with the run's message, to the
//!   events address (a receiver of this test's, where notification-controller listens), beside
//!   kustomize-controller's own events, whose health-check failure does not carry it;
//! - app-status-aggregator, with both engines on under its chart's RBAC, writes the aggregate on
//!   `train` (the NVJs its inventory lists) as each run ends, and on an Application (played: the
//!   plane's test CRD) for an NVJ Argo CD tracks, from one process.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::api::{Api, DynamicObject};
use nbg_core::annotations::{NOTEBOOK_STATUS, NotebookStatusSummary};
use nbg_core::nvj::{NotebookValidationJob, Phase};
use nbg_e2e::harness::argocd::{Received, application, applications, nvj_manifest};
use nbg_e2e::harness::cluster::eventually;
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::flux::{FluxPlane, git_repository, kustomization, kustomizations, ready};
use nbg_e2e::harness::nvj::mark_finished;
use nbg_e2e::harness::waiter::Waiter;
use serde_json::json;

/// `train`'s Ready condition, and the revision it last applied.
async fn train(api: &Api<DynamicObject>) -> (Option<(String, String, String)>, String) {
    let k = api.get("train").await.expect("Kustomization train");
    let applied = k
        .data
        .pointer("/status/lastAppliedRevision")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    (ready(&k), applied)
}

/// `(total, succeeded, failed, running)` of an aggregate.
type Counts = (i64, i64, i64, i64);

/// The counts of the aggregate an object carries, and its `mlops.dev/last-failed-run`.
fn aggregate(o: &DynamicObject) -> Option<(Counts, Option<String>)> {
    let annotations = o.metadata.annotations.as_ref()?;
    let s = NotebookStatusSummary::parse(annotations.get(NOTEBOOK_STATUS)?).ok()?;
    Some((
        (s.total, s.succeeded, s.failed, s.running),
        annotations.get("mlops.dev/last-failed-run").cloned(),
    ))
}

/// Waits until `name`'s aggregate counts are `want`; returns it.
async fn aggregate_becomes(
    api: &Api<DynamicObject>,
    name: &str,
    want: Counts,
) -> (Counts, Option<String>) {
    eventually(Duration::from_secs(30), "the aggregate", || async {
        let o = api.get(name).await.ok()?;
        aggregate(&o).filter(|(counts, _)| *counts == want)
    })
    .await
}

fn is_ready(condition: &Option<(String, String, String)>) -> bool {
    condition
        .as_ref()
        .is_some_and(|(status, _, _)| status == "True")
}

#[tokio::test]
async fn flux_applies_what_depends_on_a_validation_only_after_its_current_run_succeeded() {
    let flux = FluxPlane::start("flux-gate-cluster").await;
    let client = flux.plane.cluster.client().await;
    let serving = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "model-server"}, "data": {"model": "fraud-v1"}});
    let mut nvj = nvj_manifest("train", &[]);
    let first = flux.repo.commit(
        &[
            ("train/nvj.yaml", nvj.to_string()),
            ("serve/model-server.yaml", serving.to_string()),
        ],
        "training and serving",
    );
    flux.apply(&git_repository("ml", &flux.server.url("ml"), "1m"));
    flux.apply(&kustomization(
        "train",
        "ml",
        "./train",
        "ml",
        json!({"wait": true, "timeout": "5m"}),
    ));
    flux.apply(&kustomization(
        "serve",
        "ml",
        "./serve",
        "ml",
        json!({"dependsOn": [{"name": "train"}]}),
    ));

    let _notifier = ChartedController::start(
        &flux.plane.cluster,
        ControllerSpec {
            name: "event-notifier",
            release_namespace: "ml",
            namespaces: &["ml"],
            values: &[format!(
                "fluxEventsAddr=http://127.0.0.1:{}/",
                flux.events_port
            )],
            // Its state ConfigMap where its chart's release lives (in a pod: POD_NAMESPACE).
            args: &["--state-namespace".to_string(), "ml".to_string()],
        },
    )
    .await;
    let _marker = ChartedController::start(
        &flux.plane.cluster,
        ControllerSpec {
            name: "wave-marker",
            release_namespace: "ml",
            namespaces: &["ml"],
            values: &[],
            args: &[],
        },
    )
    .await;
    // Both engines, as a cluster with Argo CD and Flux runs it: Argo CD's namespace, and a team
    // namespace whose NVJ an Application tracks.
    for ns in ["argocd", "team"] {
        flux.plane
            .cluster
            .kubectl_ok(&["create", "namespace", ns], None)
            .expect("a namespace");
    }
    let _aggregator = ChartedController::start(
        &flux.plane.cluster,
        ControllerSpec {
            name: "app-status-aggregator",
            release_namespace: "ml",
            namespaces: &["ml", "team"],
            values: &["global.flux.enabled=true".to_string()],
            args: &[],
        },
    )
    .await;
    let wait_for_train = || {
        Waiter::start(
            &flux.plane.cluster.kubeconfig,
            &[
                "--kustomization",
                "flux-system/train",
                "-n",
                "ml",
                "--timeout",
                "3m",
            ],
        )
    };
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), "ml");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "ml");
    let ks = kustomizations(&client);
    let created = flux.applied_nvj(&nvjs, "train").await;
    let mut first_wait = wait_for_train();
    let appeared = Instant::now();
    assert_eq!(created.metadata.generation, Some(1));

    // Nothing has written a status: the NVJ reads with the CRD's default, and Flux waits.
    // Longer than kustomize-controller's 5-second health polling and the 2-second dependency
    // requeue, twice over.
    while appeared.elapsed() < Duration::from_secs(12) {
        let (condition, _) = train(&ks).await;
        assert!(
            !is_ready(&condition),
            "train turned Ready {:?} after its NVJ appeared, with no run: {condition:?}",
            appeared.elapsed()
        );
        assert!(
            config_maps
                .get_opt("model-server")
                .await
                .expect("read")
                .is_none(),
            "serve deployed {:?} after the NVJ appeared, before any validation ran",
            appeared.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let nvj_now = nvjs.get("train").await.expect("the NVJ");
    assert_eq!(
        nvj_now.status.as_ref().and_then(|s| s.observed_generation),
        Some(0),
        "the API server serves the CRD's default status"
    );
    let (_, reason, message) = train(&ks).await.0.unwrap_or_default();
    println!("train while no run has started: {reason}: {message}");

    assert!(
        first_wait.is_running(),
        "wave-marker wait ended before any run"
    );
    // A run in progress holds it too.
    let running = mark_finished(&nvjs, &nvj_now, Phase::Running, "Running train.ipynb")
        .await
        .expect("write a running run");
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(!is_ready(&train(&ks).await.0));
    assert!(
        config_maps
            .get_opt("model-server")
            .await
            .expect("read")
            .is_none()
    );

    // The run succeeds: train turns Ready, then serve applies.
    let succeeded_at = Instant::now();
    mark_finished(&nvjs, &running, Phase::Succeeded, "All 3 cells succeeded")
        .await
        .expect("write the succeeded run");
    let first_revision = eventually(Duration::from_secs(60), "train Ready", || async {
        let (condition, applied) = train(&ks).await;
        is_ready(&condition).then_some(applied)
    })
    .await;
    let train_ready = succeeded_at.elapsed();
    assert_eq!(first_revision, format!("main@sha1:{first}"));
    eventually(Duration::from_secs(60), "serve applied", || async {
        config_maps.get_opt("model-server").await.ok().flatten()
    })
    .await;
    let (code, output) = first_wait.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{output}");
    println!(
        "run Succeeded -> train Ready {:.1} s, serve applied {:.1} s",
        train_ready.as_secs_f64(),
        succeeded_at.elapsed().as_secs_f64()
    );
    let (_, last_failed) = aggregate_becomes(&ks, "train", (1, 1, 0, 0)).await;
    assert_eq!(last_failed, None);
    println!(
        "run Succeeded -> the aggregate on train within {:.1} s (looked at once serve applied)",
        succeeded_at.elapsed().as_secs_f64()
    );

    // A spec change is a new run: train holds until it ends, and fails with it.
    nvj["spec"]["timeout"] = json!("31m");
    let second = flux
        .repo
        .commit(&[("train/nvj.yaml", nvj.to_string())], "a longer timeout");
    flux.fetch_now(&k8s_openapi::jiff::Timestamp::now().to_string());
    let changed = eventually(Duration::from_secs(60), "generation 2 applied", || async {
        nvjs.get("train")
            .await
            .ok()
            .filter(|n| n.metadata.generation == Some(2))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (condition, applied) = train(&ks).await;
    assert!(
        !(is_ready(&condition) && applied.ends_with(&second)),
        "train Ready on the new revision while its run has not started: {condition:?}"
    );
    let second_wait = wait_for_train();
    let failed_at = Instant::now();
    mark_finished(
        &nvjs,
        &changed,
        Phase::Failed,
        "cell 3 (cellIndex 2) raised KeyError: x",
    )
    .await
    .expect("write the failed run");
    let (status, reason, message) = eventually(
        Duration::from_secs(60),
        "train's health check failed",
        || async {
            let (condition, _) = train(&ks).await;
            condition
                .filter(|(status, reason, _)| status == "False" && reason == "HealthCheckFailed")
        },
    )
    .await;
    println!(
        "run Failed -> train {status} {reason} {:.1} s: {message}",
        failed_at.elapsed().as_secs_f64()
    );
    assert!(
        message.contains("NotebookValidationJob/ml/train status: 'Failed'"),
        "{message}"
    );
    let (code, output) = second_wait.finish(Duration::from_secs(60));
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("KeyError: x"), "{output}");
    let (_, last_failed) = aggregate_becomes(&ks, "train", (1, 0, 1, 0)).await;
    let last_failed = last_failed.unwrap_or_default();
    assert!(last_failed.contains(" ml/train "), "{last_failed}");
    assert!(
        last_failed.ends_with("/2"),
        "the second generation's run: {last_failed}"
    );

    // The Argo CD engine beside it, in the same process: an NVJ an Application tracks and lists.
    let team: Api<NotebookValidationJob> = Api::namespaced(client.clone(), "team");
    let tracked = nbg_e2e::harness::nvj::minimal(
        "argo-side",
        &nbg_e2e::harness::nvj::annotations(&[(
            nbg_core::annotations::ARGOCD_TRACKING_ID,
            "team-app:mlops.mlops.dev/NotebookValidationJob:team/argo-side",
        )]),
    );
    let tracked = team
        .create(&PostParams::default(), &tracked)
        .await
        .expect("the tracked NVJ");
    let apps = applications(&client, "argocd");
    let app: DynamicObject =
        serde_json::from_value(application("team-app", &[("team", "argo-side")]))
            .expect("an Application");
    apps.create(&PostParams::default(), &app)
        .await
        .expect("the Application");
    mark_finished(&team, &tracked, Phase::Succeeded, "All cells succeeded")
        .await
        .expect("write its run");
    aggregate_becomes(&apps, "team-app", (1, 1, 0, 0)).await;
    let (counts, _) = aggregate(&ks.get("train").await.expect("train")).unwrap_or_default();
    assert_eq!(
        counts,
        (1, 0, 1, 0),
        "the Kustomization counts only its own"
    );

    // One event per ended run from event-notifier, about the Kustomization, with the message.
    let ours = |reason: &str| {
        flux_events(&flux.events)
            .into_iter()
            .filter(|e| e["reportingController"] == "event-notifier" && e["reason"] == reason)
            .collect::<Vec<_>>()
    };
    let failed = eventually(
        Duration::from_secs(30),
        "event-notifier's event",
        || async {
            let failed = ours("ValidationFailed");
            (!failed.is_empty()).then_some(failed)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(ours("ValidationFailed").len(), 1, "{failed:?}");
    assert_eq!(ours("ValidationSucceeded").len(), 1);
    let event = &failed[0];
    assert_eq!(event["involvedObject"]["kind"], "Kustomization");
    assert_eq!(event["involvedObject"]["name"], "train");
    assert_eq!(event["involvedObject"]["namespace"], "flux-system");
    assert_eq!(event["severity"], "error");
    let text = event["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("cell 3 (cellIndex 2) raised KeyError: x"),
        "{text}"
    );
    // kustomize-controller's own event for the failed health check names the NVJ, not why.
    let theirs: Vec<_> = flux_events(&flux.events)
        .into_iter()
        .filter(|e| e["reportingController"] == "kustomize-controller" && e["severity"] == "error")
        .collect();
    println!("kustomize-controller's error events: {theirs:?}");
    assert!(
        theirs.iter().all(|e| !e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("KeyError")),
        "{theirs:?}"
    );
}

/// The events posted to the events address, decoded.
fn flux_events(received: &Received) -> Vec<serde_json::Value> {
    received
        .lock()
        .map(|r| {
            r.iter()
                .filter_map(|(_, body)| serde_json::from_str(body).ok())
                .collect()
        })
        .unwrap_or_default()
}
