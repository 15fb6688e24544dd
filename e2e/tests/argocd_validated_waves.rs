//! The real Argo CD's waves held by a validation that really runs: on a control plane of this
//! test's own, Argo CD (the pinned build, our `argocd-cm` patch) syncs an Application whose wave
//! 1 is an NVJ and wave 2 a Deployment; nvj-validator (under its chart's RBAC) runs the notebook
//! from git in a validation pod on the plane's real node (the notebook-runner image: real git,
//! papermill and a Jupyter kernel; the repository reached by a Service's name). A passing notebook: Argo CD applies wave 2 only after nvj-validator recorded the run
//! Succeeded. A failing notebook: the sync fails and wave 2 is never applied.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use nbg_core::nvj::{NotebookValidationJob, Phase};
use nbg_e2e::harness::argocd::{
    RealArgoCd, applications, create_and_sync, git_repo, text, waves_manifests,
};
use nbg_e2e::harness::cluster::{eventually, repo_root};
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::git_server::{GitRepo, GitServer, notebook};
use nbg_e2e::harness::real_node::RealNode;
use serde_json::json;

/// ConfigMap (wave 0), NVJ `train` running `notebook_path` of `notebooks` (wave 1), Deployment
/// `model` (wave 2).
fn manifests(notebooks: &str, notebook_path: &str, image: &str) -> Vec<(&'static str, String)> {
    waves_manifests(
        json!({"apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
        "metadata": {"name": "train", "annotations": {"argocd.argoproj.io/sync-wave": "1"}},
        "spec": {"notebook": {"git": {"url": notebooks, "ref": "main"}, "path": notebook_path},
                 "podConfig": {"containerImage": image, "imagePullPolicy": "Never"},
                 "timeout": "2m"}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_applies_the_next_wave_only_after_nvj_validator_ran_the_notebook() {
    let node = RealNode::start("argocd-validated").expect("a control plane with a real node");
    let argocd = RealArgoCd::start(&node.plane.cluster).expect("the real Argo CD");
    let cluster = &node.plane.cluster;
    let client = cluster.client().await;
    let apps = applications(&client, &argocd.namespace);
    let (passes, fails) = ("ml", "ml-fails");
    for ns in [passes, fails] {
        let (ok, _, err) = cluster.kubectl(&["create", "namespace", ns], None);
        assert!(ok, "{err}");
    }

    let git = GitServer::start_on(
        node.host_ip,
        &repo_root().join(format!(
            "target/e2e-git/argocd-validated-{}",
            std::process::id()
        )),
        None,
    )
    .await;
    let notebooks = GitRepo::create(&git, "notebooks");
    notebooks.commit(
        &[
            (
                "train.ipynb",
                notebook(&["accuracy = 0.93", "assert accuracy > 0.9"]),
            ),
            (
                "broken.ipynb",
                notebook(&["rows = []", "raise ValueError('training data is empty')"]),
            ),
        ],
        "notebooks",
    );
    let mut args = node.validator_args();
    args.extend(["--max-retries".to_string(), "0".to_string()]);
    let validator = ChartedController::start(
        cluster,
        ControllerSpec {
            name: "nvj-validator",
            release_namespace: passes,
            namespaces: &[passes, fails],
            values: &[],
            args: &args,
        },
    )
    .await;
    // Pods of both namespaces reach the git server by this Service's name.
    let git_service = node
        .service_to_host(&client, passes, "git", git.addr.port())
        .await
        .expect("the git server's Service");

    for (app, ns, path, want) in [
        ("validated", passes, "train.ipynb", Phase::Succeeded),
        ("validated-fails", fails, "broken.ipynb", Phase::Failed),
    ] {
        let repo = git_repo(app);
        let notebooks_url = format!("http://{git_service}/notebooks.git");
        repo.commit(
            &manifests(&notebooks_url, path, &node.notebook_image),
            "pipeline",
        );
        create_and_sync(&apps, app, &repo.file_url(), ns, json!({}), "e2e").await;
        let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), ns);
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);

        // nvj-validator's result, and when Argo CD's operation ended.
        let (nvj, finished) = eventually(
            Duration::from_secs(120),
            &format!(
                "{app}: the run and the sync to end (validator log: {})",
                validator.process.log.display()
            ),
            || async {
                let a = apps.get(app).await.ok()?;
                let phase = text(&a, "/status/operationState/phase");
                if !["Succeeded", "Failed", "Error"].contains(&phase.as_str()) {
                    // While the sync runs, wave 2 waits for the validation.
                    let run = nvjs.get_opt("train").await.ok().flatten();
                    let done =
                        run.as_ref().and_then(|n| n.current_phase()) == Some(Phase::Succeeded);
                    let applied = deployments.get_opt("model").await.ok().flatten().is_some();
                    assert!(
                        done || !applied,
                        "{app}: wave 2 applied before the run succeeded"
                    );
                    return None;
                }
                Some((nvjs.get("train").await.ok()?, a))
            },
        )
        .await;
        let status = nvj.status.clone().expect("nvj-validator's status");
        assert_eq!(status.phase, Some(want), "{app}: {:?}", status.message);
        let op_phase = text(&finished, "/status/operationState/phase");
        let op_message = text(&finished, "/status/operationState/message");
        let model = deployments.get_opt("model").await.expect("read");
        match want {
            Phase::Succeeded => {
                assert_eq!(status.results.len(), 2, "every cell reported");
                assert_eq!(op_phase, "Succeeded", "{app}: {op_message}");
                assert!(
                    model.is_some(),
                    "{app}: wave 2 applied after the run succeeded"
                );
                let completed = status.completion_time.clone().expect("completion time").0;
                let synced: k8s_openapi::jiff::Timestamp =
                    text(&finished, "/status/operationState/finishedAt")
                        .parse()
                        .expect("finishedAt");
                // finishedAt has whole seconds.
                assert!(
                    synced.as_second() >= completed.as_second(),
                    "{app}: the sync ended ({synced}) before the run did ({completed})"
                );
            }
            _ => {
                assert!(
                    status
                        .message
                        .as_deref()
                        .is_some_and(|m| m.contains("training data is empty")),
                    "{app}: {:?}",
                    status.message
                );
                assert_eq!(op_phase, "Failed", "{app}: {op_message}");
                assert!(
                    model.is_none(),
                    "{app}: wave 2 never applied after a failed run"
                );
            }
        }
        eprintln!(
            "{app}: nvj-validator recorded {want:?}; Argo CD's operation {op_phase}: {op_message}"
        );
    }
    drop(argocd);
}
