//! trigger-controller's `sync` and `refresh` executed by the real Argo CD (application controller
//! and repo-server of the pinned build), on a control plane of this test's own; the controller
//! under its chart's RBAC.
//!
//! The serving Application's sync is held by a gate NVJ in its wave 1, so a user's sync is still
//! running when the training run succeeds: trigger-controller waits for it, says so, then
//! requests its own sync once that one has finished. Argo CD runs it once - also after the
//! controller is killed and started again - and consumes the refresh annotation.

use std::time::Duration;

use kube::api::{Api, DynamicObject, PostParams};
use nbg_core::nvj::{NotebookValidationJob, Phase, TriggerOutcome, TriggerRecord};
use nbg_e2e::harness::argocd::{
    RealArgoCd, applications, create_and_sync, git_repo, nvj_manifest, text,
};
use nbg_e2e::harness::cluster::eventually;
use nbg_e2e::harness::control_plane::PrivateControlPlane;
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::nvj::{annotations, mark_finished, mark_succeeded, minimal};
use serde_json::{Value, json};

/// The runs named in the Application's sync history (`info` of each operation).
fn history(app: &DynamicObject) -> Vec<Value> {
    app.data
        .pointer("/status/history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The training NVJ's `sync` record once it has `outcome` (waits up to 30 s).
async fn sync_record(nvjs: &Api<NotebookValidationJob>, outcome: TriggerOutcome) -> TriggerRecord {
    eventually(
        Duration::from_secs(30),
        &format!("the sync recorded {outcome:?}"),
        || async {
            let n = nvjs.get("train").await.ok()?;
            n.status?
                .triggers
                .into_iter()
                .find(|r| r.action == "sync" && r.outcome == outcome)
        },
    )
    .await
}

#[tokio::test]
async fn the_real_argo_cd_runs_a_triggered_sync_once_after_the_running_one() {
    let plane = PrivateControlPlane::start("argocd-triggers-cluster", &[]).expect("control plane");
    let argocd = RealArgoCd::start(&plane.cluster).expect("the real Argo CD");
    let client = plane.cluster.client().await;
    let apps = applications(&client, &argocd.namespace);
    for ns in ["ml", "serving"] {
        let (ok, _, err) = plane.cluster.kubectl(&["create", "namespace", ns], None);
        assert!(ok, "{err}");
    }

    // The serving Application: a ConfigMap in wave 0, the gate NVJ in wave 1, and one more in
    // wave 2 (Argo CD waits for a wave's health only before the next wave).
    let repo = git_repo("serving");
    let gate = nvj_manifest("gate", &[("argocd.argoproj.io/sync-wave", "1")]);
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "model-config"},
        "data": {"model": "fraud"}});
    let after = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "rollout-plan", "annotations": {"argocd.argoproj.io/sync-wave": "2"}},
        "data": {"replicas": "2"}});
    repo.commit(
        &[
            ("app/configmap.json", config.to_string()),
            ("app/gate.json", gate.to_string()),
            ("app/after-gate.json", after.to_string()),
        ],
        "serving",
    );
    // A user's sync, as `argocd app sync serving` requests it.
    create_and_sync(
        &apps,
        "serving",
        &repo.file_url(),
        "serving",
        json!({"mlops.dev/allow-triggers-from": "ml"}),
        "admin",
    )
    .await;
    eventually(
        Duration::from_secs(90),
        "the user's sync running, held by the gate",
        || async {
            let a = apps.get("serving").await.ok()?;
            (text(&a, "/status/operationState/phase") == "Running"
                && text(&a, "/status/operationState/message")
                    .contains("NotebookValidationJob/gate"))
            .then_some(())
        },
    )
    .await;

    let mut controller = ChartedController::start(
        &plane.cluster,
        ControllerSpec {
            name: "trigger-controller",
            release_namespace: "ml",
            namespaces: &["ml"],
            values: &["targetNamespaces={argocd}".to_string()],
            args: &[],
        },
    )
    .await;
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), "ml");
    let trigger = "- {apiVersion: argoproj.io/v1alpha1, kind: Application, name: serving, namespace: argocd, action: sync}\n\
                   - {apiVersion: argoproj.io/v1alpha1, kind: Application, name: serving, namespace: argocd, action: refresh}";
    let train = nvjs
        .create(
            &PostParams::default(),
            &minimal(
                "train",
                &annotations(&[("mlops.dev/on-success-trigger", trigger)]),
            ),
        )
        .await
        .expect("create the training NVJ");
    let train = mark_succeeded(&nvjs, &train)
        .await
        .expect("the run succeeds");
    let run = train.run_id().expect("a run");

    // Refresh: requested at once, and consumed by Argo CD.
    eventually(
        Duration::from_secs(30),
        "the refresh consumed by Argo CD",
        || async {
            let a = apps.get("serving").await.ok()?;
            let ann = a.metadata.annotations.unwrap_or_default();
            (ann.get("mlops.dev/refresh-requested") == Some(&run)
                && !ann.contains_key("argocd.argoproj.io/refresh"))
            .then_some(())
        },
    )
    .await;
    // The sync waits for the user's, and says so once it lasts.
    let waiting = sync_record(&nvjs, TriggerOutcome::InProgress).await;
    assert_eq!(
        waiting.message.as_deref(),
        Some("an Argo CD operation is running; syncing once it finishes")
    );
    let a = apps.get("serving").await.expect("app");
    assert!(
        history(&a).is_empty(),
        "nothing synced yet: {:?}",
        history(&a)
    );

    // The gate passes: the user's sync finishes, then ours runs.
    let gate_nvj = Api::<NotebookValidationJob>::namespaced(client.clone(), "serving")
        .get("gate")
        .await
        .expect("gate applied");
    mark_finished(
        &Api::namespaced(client.clone(), "serving"),
        &gate_nvj,
        Phase::Succeeded,
        "all cells succeeded",
    )
    .await
    .expect("the gate passes");
    let done = eventually(
        Duration::from_secs(60),
        "the triggered sync run by Argo CD",
        || async {
            let a = apps.get("serving").await.ok()?;
            let ours = history(&a)
                .into_iter()
                .any(|h| h["initiatedBy"]["username"] == "trigger-controller");
            (ours && text(&a, "/status/operationState/phase") == "Succeeded").then_some(a)
        },
    )
    .await;
    let info = done
        .data
        .pointer("/status/operationState/operation/info")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        info,
        json!([{"name": "nvj-run", "value": run}]),
        "the run in the operation"
    );
    let recorded = sync_record(&nvjs, TriggerOutcome::Succeeded).await;
    assert_eq!(
        recorded.message.as_deref(),
        Some("sync operation requested")
    );

    // Once: a crash and a restart, and time, change nothing.
    controller.kill();
    controller.restart();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = apps.get("serving").await.expect("app");
    let syncs: Vec<String> = history(&after)
        .iter()
        .map(|h| {
            h["initiatedBy"]["username"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        syncs,
        ["admin", "trigger-controller"],
        "the user's sync, then ours, once"
    );
    assert!(
        after.data.get("operation").is_none_or(Value::is_null),
        "no operation requested again"
    );
    drop(controller);
    drop(argocd);
}
