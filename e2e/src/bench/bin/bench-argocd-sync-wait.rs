//! Benchmark of trigger-controller's syncs waiting behind a running Argo CD operation (not a
//! timed test), with the real Argo CD (`NBG_ARGOCD_CELL` picks the configuration): `--apps`
//! Applications (20 by default) each hold a user's sync in wave 1 on a gate NVJ; one training
//! NVJ per Application succeeds and triggers a sync of it, which must wait. The gates are then
//! released together, and for each Application a watch records when the user's operation ended
//! (`status.operationState` Succeeded) and when trigger-controller's operation was requested
//! (`.operation` initiated by it): p50/p99 of the difference. Applications live in Argo CD's
//! namespace, which the controller watches, so no poll interval is in it.
//! `hack/just bench-argocd-sync-wait` builds everything and runs it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use kube::api::{Api, DynamicObject, PostParams};
use nbg_core::nvj::{NotebookValidationJob, Phase};
use nbg_e2e::bench::{report, watch_first_seen};
use nbg_e2e::harness::argocd::{
    RealArgoCd, applications, create_and_sync, git_repo, nvj_manifest, text,
};
use nbg_e2e::harness::cluster::eventually;
use nbg_e2e::harness::control_plane::PrivateControlPlane;
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::nvj::{annotations, mark_finished, mark_succeeded, minimal};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "bench-argocd-sync-wait",
    about = "Measures from a running Argo CD operation's end to trigger-controller's sync requested behind it"
)]
struct Cli {
    /// Applications, each with one sync waiting behind a user's.
    #[arg(long, default_value_t = 20)]
    apps: usize,
}

fn app_name(i: usize) -> String {
    format!("serving-{i:02}")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cli = Cli::parse();
    let plane =
        PrivateControlPlane::start("bench-argocd-sync-wait-cluster", &[]).expect("control plane");
    let argocd = RealArgoCd::start(&plane.cluster).expect("the real Argo CD");
    let client = plane.cluster.client().await;
    let apps = applications(&client, &argocd.namespace);
    let (ok, _, err) = plane.cluster.kubectl(&["create", "namespace", "ml"], None);
    assert!(ok, "{err}");
    let repo = git_repo("serving");
    let gate = nvj_manifest("gate", &[("argocd.argoproj.io/sync-wave", "1")]);
    let after = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "after-gate", "annotations": {"argocd.argoproj.io/sync-wave": "2"}}, "data": {}});
    repo.commit(
        &[
            ("app/gate.json", gate.to_string()),
            ("app/after.json", after.to_string()),
        ],
        "serving",
    );
    for i in 0..cli.apps {
        create_and_sync(
            &apps,
            &app_name(i),
            &repo.file_url(),
            &app_name(i),
            json!({"mlops.dev/allow-triggers-from": "ml"}),
            "admin",
        )
        .await;
    }
    eventually(
        Duration::from_secs(300),
        "every user's sync held by its gate",
        || async {
            let list = apps.list(&Default::default()).await.ok()?;
            let held = list
                .items
                .iter()
                .filter(|a| {
                    text(a, "/status/operationState/phase") == "Running"
                        && text(a, "/status/operationState/message")
                            .contains("NotebookValidationJob/gate")
                })
                .count();
            (held == cli.apps).then_some(())
        },
    )
    .await;

    let _controller = ChartedController::start(
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
    for i in 0..cli.apps {
        let trigger = format!(
            "- {{apiVersion: argoproj.io/v1alpha1, kind: Application, name: {}, namespace: {}, action: sync}}",
            app_name(i),
            argocd.namespace
        );
        let nvj = nvjs
            .create(
                &PostParams::default(),
                &minimal(
                    &format!("train-{i:02}"),
                    &annotations(&[("mlops.dev/on-success-trigger", &trigger)]),
                ),
            )
            .await
            .expect("create a training NVJ");
        mark_succeeded(&nvjs, &nvj).await.expect("the run succeeds");
    }
    // Every sync waits (recorded InProgress after 5 s).
    eventually(
        Duration::from_secs(60),
        "every triggered sync waiting",
        || async {
            let list = nvjs.list(&Default::default()).await.ok()?;
            let waiting = list
                .items
                .iter()
                .filter(|n| {
                    n.status
                        .as_ref()
                        .is_some_and(|s| s.triggers.iter().any(|r| r.action == "sync"))
                })
                .count();
            (waiting == cli.apps).then_some(())
        },
    )
    .await;

    let (ended, end_watch) = watch_first_seen(apps.clone(), |a: &DynamicObject| {
        text(a, "/status/operationState/phase") == "Succeeded"
            && text(a, "/status/operationState/operation/initiatedBy/username") == "admin"
    });
    let (requested, request_watch) = watch_first_seen(apps.clone(), |a: &DynamicObject| {
        text(a, "/operation/initiatedBy/username") == "trigger-controller"
            || text(a, "/status/operationState/operation/initiatedBy/username")
                == "trigger-controller"
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let released = Instant::now();
    for i in 0..cli.apps {
        let gates: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &app_name(i));
        let g = gates.get("gate").await.expect("gate applied");
        mark_finished(&gates, &g, Phase::Succeeded, "all cells succeeded")
            .await
            .expect("the gate passes");
    }
    eventually(
        Duration::from_secs(300),
        "every triggered sync requested",
        || async { (requested.lock().ok()?.len() == cli.apps).then_some(()) },
    )
    .await;
    end_watch.abort();
    request_watch.abort();
    let ended: HashMap<String, Instant> = ended.lock().map(|m| m.clone()).unwrap_or_default();
    let requested: HashMap<String, Instant> =
        requested.lock().map(|m| m.clone()).unwrap_or_default();
    let delays: Vec<Duration> = (0..cli.apps)
        .filter_map(|i| {
            let name = app_name(i);
            Some(
                requested
                    .get(&name)?
                    .saturating_duration_since(*ended.get(&name)?),
            )
        })
        .collect();
    println!(
        "Argo CD configuration: {:?}; {} Applications, gates released over {:?}",
        argocd.cell,
        cli.apps,
        released.elapsed()
    );
    report(
        "from the user's operation ended to trigger-controller's sync requested",
        delays,
    );
    drop(argocd);
}
