//! The real Argo CD in the loop (application controller and repo-server of the pinned build,
//! Argo CD's own CRDs and config with our `argocd-cm` patch), on a control plane of this test's
//! own. An Application from a local git repository holds a ConfigMap in wave 0, an NVJ in
//! wave 1 and a Deployment in wave 2:
//! - while the NVJ runs, Argo CD holds wave 2, its operation message naming the NVJ, and shows
//!   our health check's status and message for the NVJ;
//! - once the run is recorded Succeeded (as nvj-validator writes it), Argo CD applies wave 2 and
//!   the sync succeeds;
//! - a run recorded Failed fails the sync, and wave 2 is never applied.

use std::time::Duration;

use kube::api::{Api, DynamicObject};
use nbg_argocd_health::{Sandbox, check_for};
use nbg_core::nvj::{NotebookValidationJob, Phase};
use nbg_e2e::harness::argocd::{
    RealArgoCd, applications, create_and_sync, git_repo, nvj_manifest, text, waves_manifests,
};
use nbg_e2e::harness::cluster::eventually;
use nbg_e2e::harness::control_plane::PrivateControlPlane;
use nbg_e2e::harness::nvj::mark_finished;
use serde_json::{Value, json};

/// The manifests of one Application: ConfigMap (wave 0), NVJ `train` (wave 1), Deployment
/// `model` (wave 2).
fn manifests() -> Vec<(&'static str, String)> {
    waves_manifests(nvj_manifest(
        "train",
        &[("argocd.argoproj.io/sync-wave", "1")],
    ))
}

fn pointer<'a>(app: &'a DynamicObject, p: &str) -> Option<&'a Value> {
    app.data.pointer(p)
}

/// The NVJ's entry in the Application's `status.resources`.
fn nvj_resource(app: &DynamicObject) -> Option<Value> {
    pointer(app, "/status/resources")?
        .as_array()?
        .iter()
        .find(|r| r["kind"] == "NotebookValidationJob")
        .cloned()
}

#[tokio::test]
async fn argo_cd_holds_the_next_wave_until_the_notebook_succeeds_and_fails_the_sync_when_it_fails()
{
    let plane = PrivateControlPlane::start("argocd-cluster", &[]).expect("control plane");
    let argocd = RealArgoCd::start(&plane.cluster).expect("the real Argo CD");
    let client = plane.cluster.client().await;
    let apps = applications(&client, &argocd.namespace);
    let repo = git_repo("training");
    repo.commit(&manifests(), "training pipeline");

    for (app, ns, phase) in [
        ("training", "ml", Phase::Succeeded),
        ("training-fails", "ml-fails", Phase::Failed),
    ] {
        create_and_sync(&apps, app, &repo.file_url(), ns, json!({}), "e2e").await;
        let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), ns);
        let deployments: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            ns,
            &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
                "apps",
                "v1",
                "Deployment",
            )),
        );
        // Wave 1 applied, the NVJ has not run: Argo CD waits on it, saying so.
        let held = eventually(
            Duration::from_secs(90),
            "Argo CD applying wave 1 and waiting for the NVJ",
            || async {
                let a = apps.get(app).await.ok()?;
                let message = text(&a, "/status/operationState/message");
                (text(&a, "/status/operationState/phase") == "Running"
                    && message.contains("NotebookValidationJob/train"))
                .then_some(message)
            },
        )
        .await;
        assert!(
            held.contains(
                "waiting for healthy state of mlops.mlops.dev/NotebookValidationJob/train"
            ),
            "{app}: {held}"
        );
        // Argo CD records a resource's health as it refreshes (where depends on the version).
        let mut shown = None;
        for _ in 0..60 {
            // Before the NVJ was applied it is Missing.
            shown = argocd
                .health(&apps, app, "NotebookValidationJob", "train")
                .await
                .filter(|h| h.status != "Missing");
            if shown.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let shown =
            shown.unwrap_or_else(|| panic!("{app}: no health for the NVJ in {:?}", argocd.cell));
        assert_eq!(
            (shown.status.as_str(), shown.message.as_str()),
            ("Progressing", "Waiting for the validation to start"),
            "{app}: {shown:?}"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            deployments.get_opt("model").await.expect("read").is_none(),
            "{app}: wave 2 applied while the NVJ runs"
        );

        let nvj = nvjs.get("train").await.expect("the NVJ Argo CD applied");
        let recorded = std::time::Instant::now();
        let message = match phase {
            Phase::Succeeded => "all cells succeeded",
            _ => "Cell 2 failed: ValueError: training data is empty",
        };
        mark_finished(&nvjs, &nvj, phase, message)
            .await
            .expect("record the run");
        let ended = eventually(
            Duration::from_secs(60),
            "Argo CD ending the sync",
            || async {
                let a = apps.get(app).await.ok()?;
                let phase = text(&a, "/status/operationState/phase");
                (phase == "Succeeded" || phase == "Failed" || phase == "Error").then_some(a)
            },
        )
        .await;
        let took = recorded.elapsed();
        // The NVJ's health in Argo CD is our check's verdict on the NVJ as stored.
        let stored = serde_json::to_value(nvjs.get("train").await.expect("the NVJ")).expect("json");
        let check = check_for(nbg_core::nvj::GROUP, nbg_core::nvj::KIND).expect("our NVJ check");
        let ours = Sandbox::new()
            .expect("sandbox")
            .evaluate(check.script, &stored)
            .expect("a verdict");
        let listed = eventually(
            Duration::from_secs(30),
            "the NVJ's final health shown",
            || async {
                let h = argocd
                    .health(&apps, app, "NotebookValidationJob", "train")
                    .await?;
                (h.status == ours.status.as_str()).then_some(h)
            },
        )
        .await;
        assert_eq!(listed.message, ours.message, "{app}: {listed:?}");
        let op_phase = text(&ended, "/status/operationState/phase");
        let op_message = text(&ended, "/status/operationState/message");
        let model = deployments.get_opt("model").await.expect("read");
        match phase {
            Phase::Succeeded => {
                assert_eq!(op_phase, "Succeeded", "{app}: {op_message}");
                assert!(
                    model.is_some(),
                    "{app}: wave 2 applied once the NVJ succeeded"
                );
                assert!(nvj_resource(&ended).is_some(), "{app}: the NVJ listed");
                let h = argocd
                    .health(&apps, app, "NotebookValidationJob", "train")
                    .await;
                assert_eq!(h.map(|h| h.status).as_deref(), Some("Healthy"), "{app}");
            }
            _ => {
                assert_eq!(op_phase, "Failed", "{app}: {op_message}");
                assert!(
                    model.is_none(),
                    "{app}: wave 2 never applied after a failed run"
                );
            }
        }
        eprintln!(
            "{app}: run recorded {phase:?} -> Argo CD's operation {op_phase} in {took:?}: {op_message}"
        );
    }
    drop(argocd);
}
