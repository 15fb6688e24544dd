//! app-status-aggregator's annotations on an Application that the real Argo CD manages and
//! reconciles (application controller and repo-server of the pinned build, our `argocd-cm`
//! patch installed), on a control plane of this test's own; the aggregator under its chart's
//! RBAC. The Application's notebook status follows its NVJ, and neither the aggregator's
//! annotations nor status writes on the NVJ that change nothing Argo CD shows make Argo CD
//! reconcile the Application again and again: the `ignoreResourceUpdates` entries, for real.
//! Argo CD's notifications controller delivers our triggers for it to a webhook, once per run.

use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use nbg_core::nvj::{NotebookValidationJob, Phase};
use nbg_e2e::harness::argocd::{
    RealArgoCd, applications, bodies, create_and_sync, git_repo, install_notifications,
    nvj_manifest, receiver, start_notifications, text,
};
use nbg_e2e::harness::cluster::eventually;
use nbg_e2e::harness::control_plane::PrivateControlPlane;
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::nvj::mark_finished;
use serde_json::json;

fn annotation(app: &DynamicObject, key: &str) -> Option<String> {
    app.metadata.annotations.as_ref()?.get(key).cloned()
}

#[tokio::test]
async fn aggregates_land_on_an_application_argo_cd_manages_without_a_refresh_storm() {
    let plane =
        PrivateControlPlane::start("argocd-aggregator-cluster", &[]).expect("control plane");
    let argocd = RealArgoCd::start(&plane.cluster).expect("the real Argo CD");
    let client = plane.cluster.client().await;
    let apps = applications(&client, &argocd.namespace);
    let (ok, _, err) = plane.cluster.kubectl(&["create", "namespace", "ml"], None);
    assert!(ok, "{err}");

    let repo = git_repo("training");
    let nvj = nvj_manifest("train", &[]);
    repo.commit(&[("app/nvj.json", nvj.to_string())], "training");
    create_and_sync(
        &apps,
        "training",
        &repo.file_url(),
        "ml",
        json!({
            "notifications.argoproj.io/subscribe.on-notebook-validation-failed.notebook-gitops": "",
            "notifications.argoproj.io/subscribe.on-notebook-validation-succeeded.notebook-gitops": ""}),
        "admin",
    )
    .await;
    eventually(
        Duration::from_secs(90),
        "the NVJ synced by Argo CD",
        || async {
            let a = apps.get("training").await.ok()?;
            (text(&a, "/status/operationState/phase") == "Succeeded"
                && text(&a, "/status/sync/status") == "Synced")
                .then_some(())
        },
    )
    .await;

    let _aggregator = ChartedController::start(
        &plane.cluster,
        ControllerSpec {
            name: "app-status-aggregator",
            release_namespace: "ml",
            namespaces: &["ml"],
            values: &[
                format!("global.argocd.namespace={}", argocd.namespace),
                format!(
                    "global.argocd.applicationNamespaces={{{}}}",
                    argocd.namespace
                ),
            ],
            args: &[],
        },
    )
    .await;
    let (port, received) = receiver().await;
    install_notifications(&plane.cluster, &argocd.namespace, port);
    let _notifications = start_notifications(&plane.cluster, &argocd.namespace)
        .expect("the notifications controller");
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), "ml");
    let train = nvjs.get("train").await.expect("the NVJ Argo CD applied");
    let done = mark_finished(&nvjs, &train, Phase::Succeeded, "all cells succeeded")
        .await
        .expect("the run succeeds");
    let run = done.run_id().expect("a run");
    let mut landed = false;
    for _ in 0..120 {
        let a = apps.get("training").await.expect("app");
        if annotation(&a, "mlops.dev/notebook-summary").as_deref()
            == Some("1/1 notebooks succeeded")
            && annotation(&a, "mlops.dev/last-succeeded-run").is_some_and(|r| r.contains(&run))
        {
            landed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !landed {
        let a = apps.get("training").await.expect("app");
        let n = nvjs.get("train").await.expect("nvj");
        panic!(
            "no aggregate: Application annotations {:?}, resources {:?}; NVJ annotations {:?} labels {:?}",
            a.metadata.annotations,
            a.data.pointer("/status/resources"),
            n.metadata.annotations,
            n.metadata.labels
        );
    }
    // Argo CD still manages it: Synced and Healthy with our annotations on it.
    let healthy = eventually(
        Duration::from_secs(30),
        "Argo CD reporting it Healthy",
        || async {
            let a = apps.get("training").await.ok()?;
            (text(&a, "/status/health/status") == "Healthy").then_some(a)
        },
    )
    .await;
    assert_eq!(text(&healthy, "/status/sync/status"), "Synced");

    // Settled: count Argo CD's reconciles of the Application while status writes that change
    // nothing it shows land on the NVJ (as nvj-validator's bookkeeping does).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = argocd.reconciles("training");
    for i in 0..10 {
        nvjs.patch_status(
            "train",
            &PatchParams::apply("bookkeeping").force(),
            &Patch::Apply(json!({
                "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
                "status": {"validationPodName": format!("train-validation-{i}")}
            })),
        )
        .await
        .expect("status write");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = argocd.reconciles("training") - before;
    eprintln!("Argo CD reconciled the Application {during} times for 10 NVJ status writes in 10 s");
    assert!(
        during <= 1,
        "a refresh storm: {during} reconciles for 10 status writes"
    );

    // A new aggregate (the next run fails) is one change Argo CD may look at, not a storm.
    let before = argocd.reconciles("training");
    let current = nvjs.get("train").await.expect("nvj");
    let failed = mark_finished(&nvjs, &current, Phase::Failed, "Cell 2 failed: ValueError")
        .await
        .expect("the run fails");
    let failed_run = failed.run_id().expect("a run");
    eventually(Duration::from_secs(60), "the failed aggregate", || async {
        let a = apps.get("training").await.ok()?;
        annotation(&a, "mlops.dev/last-failed-run")
            .is_some_and(|r| r.contains(&failed_run))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after_failure = argocd.reconciles("training") - before;
    eprintln!("Argo CD reconciled the Application {after_failure} times for one failed run");
    assert!(
        after_failure <= 3,
        "{after_failure} reconciles for one run that failed (its health changes once)"
    );
    // Each run notified once, through the real notifications controller.
    eventually(
        Duration::from_secs(60),
        "the failed run's notification",
        || async { (bodies(&received, "failed").len() == 1).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (succeeded, failed) = (bodies(&received, "succeeded"), bodies(&received, "failed"));
    assert_eq!(
        (succeeded.len(), failed.len()),
        (1, 1),
        "once per run: {succeeded:?} {failed:?}"
    );
    assert!(
        failed[0]["run"]
            .as_str()
            .is_some_and(|r| r.contains(&failed_run)),
        "{}",
        failed[0]
    );
    assert_eq!(succeeded[0]["application"], "training");
    drop(argocd);
}
