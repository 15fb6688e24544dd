//! The Argo CD configurations users run (`NBG_ARGOCD_CELL`: v3.2 with its defaults, v3.2 with
//! label tracking under the Helm chart's key, v2.14 with its defaults), with trigger-controller
//! and app-status-aggregator installed with their chart defaults - no per-configuration
//! values: both read Argo CD's tracking from argocd-cm. An NVJ the Application manages
//! (synced from git by the real Argo CD) succeeds; the aggregate lands on the Application, and
//! the NVJ's `sync` of that Application - no consent annotation: it manages the NVJ - runs,
//! carrying the Application's syncOptions and retry as Argo CD's controller logs the operation.

use std::time::Duration;

use kube::api::{Api, DynamicObject, PostParams};
use nbg_core::nvj::{NotebookValidationJob, TriggerOutcome};
use nbg_e2e::harness::argocd::{RealArgoCd, applications, git_repo, nvj_manifest, text};
use nbg_e2e::harness::cluster::eventually;
use nbg_e2e::harness::control_plane::PrivateControlPlane;
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::nvj::mark_succeeded;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notebook_syncs_its_own_application_and_the_aggregate_lands_under_argo_cds_tracking() {
    let plane = PrivateControlPlane::start("argocd-tracking-cluster", &[]).expect("control plane");
    let argocd = RealArgoCd::start(&plane.cluster).expect("the real Argo CD");
    let cell = argocd.cell;
    let client = plane.cluster.client().await;
    let apps = applications(&client, &argocd.namespace);
    let (ok, _, err) = plane.cluster.kubectl(&["create", "namespace", "ml"], None);
    assert!(ok, "{err}");

    let trigger = format!(
        "- {{apiVersion: argoproj.io/v1alpha1, kind: Application, name: training, namespace: {}, action: sync}}",
        argocd.namespace
    );
    let repo = git_repo("tracking");
    let nvj = nvj_manifest("train", &[("mlops.dev/on-success-trigger", &trigger)]);
    repo.commit(&[("app/nvj.json", nvj.to_string())], "training");
    let options = json!(["CreateNamespace=true", "ServerSideApply=true"]);
    let app: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "training"},
        "spec": {"project": "default",
                 "source": {"repoURL": repo.file_url(), "path": "app", "targetRevision": "HEAD"},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": "ml"},
                 "syncPolicy": {"syncOptions": options, "retry": {"limit": 3}}},
        "operation": {"sync": {"revision": "HEAD", "syncOptions": options},
                      "initiatedBy": {"username": "admin"}}
    }))
    .expect("an Application");
    apps.create(&PostParams::default(), &app)
        .await
        .expect("create the Application");
    eventually(
        Duration::from_secs(90),
        "the NVJ synced by Argo CD and listed",
        || async {
            let a = apps.get("training").await.ok()?;
            let listed = a
                .data
                .pointer("/status/resources")?
                .as_array()?
                .iter()
                .any(|r| r["kind"] == "NotebookValidationJob");
            (text(&a, "/status/operationState/phase") == "Succeeded" && listed).then_some(())
        },
    )
    .await;
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), "ml");
    let synced = nvjs.get("train").await.expect("the NVJ Argo CD applied");
    eprintln!(
        "{cell:?}: Argo CD tracks the NVJ by labels {:?}, annotations {:?}",
        synced.metadata.labels,
        synced
            .metadata
            .annotations
            .as_ref()
            .map(|a| a.keys().cloned().collect::<Vec<_>>())
    );

    // Chart defaults: no tracking values, no consent.
    let spec = |name| ControllerSpec {
        name,
        release_namespace: "ml",
        namespaces: &["ml"],
        values: &[],
        args: &[],
    };
    let _trigger = ChartedController::start(&plane.cluster, spec("trigger-controller")).await;
    let _aggregator = ChartedController::start(&plane.cluster, spec("app-status-aggregator")).await;
    let train = mark_succeeded(&nvjs, &synced)
        .await
        .expect("the run succeeds");
    let run = train.run_id().expect("a run");

    // The aggregate appears on the Application.
    let status = eventually(
        Duration::from_secs(30),
        "the aggregate on the Application",
        || async {
            let a = apps.get("training").await.ok()?;
            let s = a
                .metadata
                .annotations?
                .get("mlops.dev/notebook-status")?
                .clone();
            serde_json::from_str::<Value>(&s)
                .ok()
                .filter(|v| v["succeeded"] == 1)
        },
    )
    .await;
    assert_eq!(status["total"], 1, "{cell:?}: {status}");

    // The NVJ's sync of its own Application runs, as `argocd app sync` would have asked it.
    let done = eventually(
        Duration::from_secs(60),
        "the triggered sync run by Argo CD",
        || async {
            let a = apps.get("training").await.ok()?;
            let ours = text(&a, "/status/operationState/operation/initiatedBy/username")
                == "trigger-controller";
            (ours && text(&a, "/status/operationState/phase") == "Succeeded").then_some(a)
        },
    )
    .await;
    let operation = done
        .data
        .pointer("/status/operationState/operation")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        operation["sync"]["syncOptions"], options,
        "{cell:?}: {operation}"
    );
    assert_eq!(operation["retry"]["limit"], 3, "{cell:?}: {operation}");
    assert_eq!(
        operation["info"],
        json!([{"name": "nvj-run", "value": run}])
    );
    // Argo CD's controller initialised it with them (not `SyncOptions:[]`, retry `{0 nil}`).
    let log = argocd.controller.output();
    let initialised = log
        .lines()
        .find(|l| l.contains("Initialized new operation") && l.contains("trigger-controller"))
        .unwrap_or_else(|| {
            panic!("{cell:?}: no operation initialised for trigger-controller:\n{log}")
        });
    assert!(
        initialised.contains("SyncOptions:[CreateNamespace=true ServerSideApply=true]")
            && initialised.contains("{3 nil"),
        "{cell:?}: {initialised}"
    );
    let record = nvjs
        .get("train")
        .await
        .expect("nvj")
        .status
        .expect("status")
        .triggers;
    assert!(
        record
            .iter()
            .any(|r| r.action == "sync" && r.outcome == TriggerOutcome::Succeeded),
        "{cell:?}: {record:?}"
    );
    eprintln!("{cell:?}: {initialised}");
    drop(argocd);
}
