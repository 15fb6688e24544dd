//! wave-marker's cross-Application example (`manifests/examples/wave-marker/`) under the real
//! Argo CD, on a control plane of this test's own. The serving Application is the example's
//! own manifest (its repository the example's files in a local git repository); wave-marker is
//! installed with helm from its chart and the example's `waiter-values.yaml`; a real node runs
//! wave-marker's pod and the hook Job's pod from the wave-marker image (its entrypoint, the
//! `nvj-waiter` ServiceAccount's projected token, in-cluster configuration through the
//! `kubernetes` Service).
//!
//! Argo CD starts the serving sync with the Sync hook, whose `wave-marker wait` holds it while
//! the training NVJ (the fraud-detection example's, blocking wave 4) has not succeeded: wave 1
//! is not applied. Once its run is recorded Succeeded (as nvj-validator writes it), wave-marker
//! marks the wave, the hook exits 0, Argo CD applies wave 1 and the sync succeeds. A new
//! generation of the NVJ that fails makes the next sync's hook fail, and the sync with it.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use nbg_core::nvj::{NotebookValidationJob, Phase};
use nbg_e2e::harness::argocd::{RealArgoCd, applications, git_repo, text};
use nbg_e2e::harness::cluster::{eventually, repo_root};
use nbg_e2e::harness::nvj::mark_finished;
use nbg_e2e::harness::real_node::RealNode;
use serde_json::{Value, json};

const EXAMPLE: &str = "manifests/examples/wave-marker";
const TRAINING: &str = "fraud-detection";
const SERVING: &str = "fraud-serving";

fn read(path: &str) -> String {
    let file = repo_root().join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

async fn operation(apps: &Api<DynamicObject>) -> Option<(String, String)> {
    let app = apps.get(SERVING).await.ok()?;
    Some((
        text(&app, "/status/operationState/phase"),
        text(&app, "/status/operationState/message"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serving_hook_waits_for_the_training_nvj_under_the_real_argo_cd() {
    let node = RealNode::start("argocd-hook").expect("a control plane with a real node");
    let argocd = RealArgoCd::start(&node.plane.cluster).expect("the real Argo CD");
    let cluster = &node.plane.cluster;
    let client = cluster.client().await;
    for ns in [TRAINING, SERVING, "notebook-gitops"] {
        let (ok, _, err) = cluster.kubectl(&["create", "namespace", ns], None);
        assert!(ok, "{err}");
    }

    // The training NVJ as the training Application applies it (the example's file).
    let (ok, _, err) = cluster.kubectl(
        &["apply", "-n", TRAINING, "-f", "-"],
        Some(&read(
            "manifests/examples/fraud-detection/30-train-fraud-model.yaml",
        )),
    );
    assert!(ok, "{err}");
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), TRAINING);

    // wave-marker from its chart with the example's waiter values.
    let chart = repo_root().join("charts/wave-marker");
    let waiters = repo_root()
        .join(EXAMPLE)
        .join("serving-hook/waiter-values.yaml");
    let (ok, out) = cluster.helm_run(&[
        "install",
        "wave-marker",
        &chart.to_string_lossy(),
        "-n",
        "notebook-gitops",
        "--wait",
        "--timeout",
        "2m",
        "-f",
        &waiters.to_string_lossy(),
        "--set",
        &format!("watchNamespaces={{{TRAINING}}}"),
    ]);
    assert!(ok, "helm install wave-marker: {out}");

    // The serving Application, as the example writes it, from a local copy of its repository.
    let repo = git_repo("serving");
    let files: Vec<(String, String)> = [
        "fraud-model-server.yaml",
        "wait-for-training.yaml",
        "waiter-values.yaml",
    ]
    .iter()
    .map(|f| {
        (
            format!("{EXAMPLE}/serving-hook/{f}"),
            read(&format!("{EXAMPLE}/serving-hook/{f}")),
        )
    })
    .collect();
    let files: Vec<(&str, String)> = files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
    repo.commit(&files, "serving");
    let mut app: Value =
        serde_saphyr::from_str(&read(&format!("{EXAMPLE}/serving-application.yaml")))
            .expect("the serving Application");
    app["metadata"]["namespace"] = json!(argocd.namespace);
    app["spec"]["source"]["repoURL"] = json!(repo.file_url());
    app["spec"]["source"]["targetRevision"] = json!("HEAD");
    let apps = applications(&client, &argocd.namespace);
    let app: DynamicObject = serde_json::from_value(app).expect("an Application");
    apps.create(&Default::default(), &app)
        .await
        .expect("create the Application");

    // The hook runs and holds the sync: wave 1 not applied.
    let jobs: Api<Job> = Api::namespaced(client.clone(), SERVING);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), SERVING);
    eventually(
        Duration::from_secs(90),
        "the hook's pod running wave-marker wait",
        || {
            let pods: Api<k8s_openapi::api::core::v1::Pod> =
                Api::namespaced(client.clone(), SERVING);
            async move {
                let list = pods.list(&ListParams::default()).await.ok()?;
                list.items
                    .iter()
                    .any(|p| {
                        p.metadata
                            .name
                            .as_deref()
                            .is_some_and(|n| n.starts_with("wait-for-training-"))
                            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .then_some(())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The hook's container: wave-marker from its image, waiting, on the node.
    let (_, hook, _) = cluster.kubectl(
        &["get", "pods", "-n", SERVING, "-o", "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.spec.containers[0].image}{\"\\n\"}{end}"],
        None,
    );
    assert!(
        hook.lines().any(|l| l.starts_with("wait-for-training-")
            && l.contains(" nbg-node ghcr.io/notebook-gitops/wave-marker:")),
        "the hook's pod runs the wave-marker image on the node: {hook}"
    );
    let (phase, message) = operation(&apps).await.expect("the serving Application");
    assert_eq!(phase, "Running", "the hook holds the sync: {message}");
    assert!(
        config_maps
            .get_opt("fraud-serving-config")
            .await
            .expect("read")
            .is_none(),
        "wave 1 applied while the training NVJ has not succeeded"
    );

    // The training run succeeds: wave-marker marks it, the hook passes, wave 1 is applied.
    let nvj = nvjs.get("train-fraud-model").await.expect("the NVJ");
    let recorded = std::time::Instant::now();
    mark_finished(&nvjs, &nvj, Phase::Succeeded, "all cells succeeded")
        .await
        .expect("record the run");
    let (phase, message) = eventually(
        Duration::from_secs(60),
        "the serving sync to end",
        || async {
            operation(&apps)
                .await
                .filter(|(p, _)| p == "Succeeded" || p == "Failed" || p == "Error")
        },
    )
    .await;
    assert_eq!(phase, "Succeeded", "{message}");
    println!(
        "the serving sync succeeded {:.1} s after the training run was recorded Succeeded",
        recorded.elapsed().as_secs_f64()
    );
    assert!(
        config_maps
            .get_opt("fraud-serving-config")
            .await
            .expect("read")
            .is_some()
    );
    // A new generation that fails: the next sync's hook fails, and the sync with it.
    nvjs.patch(
        "train-fraud-model",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"timeout": "31m"}})),
    )
    .await
    .expect("a new generation");
    let nvj = nvjs.get("train-fraud-model").await.expect("the NVJ");
    mark_finished(
        &nvjs,
        &nvj,
        Phase::Failed,
        "Cell 2 failed: ValueError: training data is empty",
    )
    .await
    .expect("record the failed run");
    // A manual sync (no retries): the whole `operation` set, as `argocd app sync` does.
    let operation = json!([{
        "op": "add", "path": "/operation",
        "value": {"sync": {"revision": "HEAD"}, "initiatedBy": {"username": "e2e"}}
    }]);
    let (ok, _, err) = cluster.kubectl(
        &[
            "patch",
            "application",
            SERVING,
            "-n",
            &argocd.namespace,
            "--type",
            "json",
            "-p",
            &operation.to_string(),
        ],
        None,
    );
    assert!(ok, "request a sync: {err}");
    // The hook fails, and the sync with it (Argo CD retries it as its retry policy says; each
    // retry's hook fails the same way).
    let mut last = Value::Null;
    let mut failed = None;
    for _ in 0..180 {
        let app = apps.get(SERVING).await.expect("the serving Application");
        let state = app
            .data
            .pointer("/status/operationState")
            .cloned()
            .unwrap_or_default();
        let hook_failed = state["syncResult"]["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["kind"] == "Job" && r["hookPhase"] == "Failed");
        let message = state["message"].as_str().unwrap_or_default().to_string();
        if hook_failed
            && state["phase"] != "Succeeded"
            && message.contains("completed unsuccessfully")
        {
            failed = Some(message);
            break;
        }
        last = state;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let message = failed
        .unwrap_or_else(|| panic!("the second serving sync did not fail within 90 s: {last}"));
    println!("the serving sync with the failed validation: {message}");
    // The passed hook's Job was deleted (HookSucceeded); the failed ones stay for their logs.
    let left = jobs.list(&ListParams::default()).await.expect("Jobs").items;
    assert!(!left.is_empty(), "the failed hook's Job stays");
    assert!(
        left.iter()
            .all(|j| j.status.as_ref().and_then(|s| s.failed) == Some(1)),
        "only failed hooks are left: {left:?}"
    );
}
