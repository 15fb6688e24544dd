//! trigger-controller end to end, under its chart's RBAC: a succeeded run restarts a Deployment
//! once through the real deployment controller (the kubelet double making pods Ready), records
//! it in status.triggers with an Event, and a killed and restarted controller does not restart
//! it again; a target in another namespace without consent is denied and left unchanged.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use nbg_core::nvj::{NotebookValidationJob, TriggerOutcome};
use nbg_e2e::cluster::{eventually, repo_root, workspace_binary};
use nbg_e2e::kubelet::{self, KubeletConfig, PodHandling};
use nbg_e2e::process::{LocalProcess, chart_rbac, free_port, service_account_kubeconfig};
use nbg_e2e::{Cluster, TestNamespace};

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "model-server"}]}}}
    }))
    .expect("deployment")
}

async fn succeeded_nvj(
    api: &Api<NotebookValidationJob>,
    name: &str,
    trigger: &str,
) -> NotebookValidationJob {
    let mut nvj: NotebookValidationJob = serde_json::from_value(serde_json::json!({
        "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
        "metadata": {"name": name, "annotations": {"mlops.dev/on-success-trigger": trigger}},
        "spec": {"notebook": {"git": {"url": "https://x/r.git", "ref": "main"}, "path": "a.ipynb"}, "podConfig": {"containerImage": "i"}}
    }))
    .expect("nvj");
    nvj = api
        .create(&PostParams::default(), &nvj)
        .await
        .expect("create nvj");
    // What nvj-validator writes when a run succeeds.
    let status = serde_json::json!({"apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
        "status": {"phase": "Succeeded", "observedGeneration": nvj.metadata.generation, "message": "all cells succeeded"}});
    api.patch_status(
        name,
        &PatchParams::apply("nvj-validator").force(),
        &Patch::Apply(&status),
    )
    .await
    .expect("status")
}

fn start_controller(kubeconfig: &std::path::Path, ns: &str) -> LocalProcess {
    let port = free_port();
    let mut cmd = Command::new(workspace_binary("trigger-controller"));
    cmd.arg("--kubeconfig").arg(kubeconfig).args([
        "--namespaces",
        ns,
        "--http-addr",
        &format!("127.0.0.1:{port}"),
    ]);
    LocalProcess::spawn("trigger-controller", cmd)
}

#[tokio::test]
async fn a_succeeded_run_restarts_a_deployment_once_and_denies_without_consent() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "trig").await;
    let other = TestNamespace::new(&cluster, "trig-other").await;
    let client = cluster.client().await;
    let _kubelet = kubelet::spawn(
        client.clone(),
        KubeletConfig::for_test(&[&ns.name, &other.name], PodHandling::MakeReady),
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let elsewhere: Api<Deployment> = Api::namespaced(client.clone(), &other.name);
    deployments
        .create(&PostParams::default(), &deployment("model-server"))
        .await
        .expect("deployment");
    elsewhere
        .create(&PostParams::default(), &deployment("shared-server"))
        .await
        .expect("deployment");
    let ready = |api: Api<Deployment>, name: &'static str| async move {
        let d = api.get(name).await.ok()?;
        let s = d.status?;
        (s.observed_generation >= d.metadata.generation
            && s.updated_replicas == Some(2)
            && s.ready_replicas == Some(2)
            && s.replicas == Some(2))
        .then_some(d.metadata.generation)
    };
    let first_generation = eventually(
        Duration::from_secs(60),
        "the model server to be ready",
        || ready(deployments.clone(), "model-server"),
    )
    .await;

    let release = format!("trig-{}", ns.name);
    let rbac = chart_rbac(
        &cluster,
        &repo_root().join("charts/trigger-controller"),
        &release,
        &ns.name,
        &[
            &format!("watchNamespaces={{{}}}", ns.name),
            "leaderElection=false",
        ],
    );
    let kubeconfig = service_account_kubeconfig(&cluster, &ns.name, &release, &rbac).await;
    let mut controller = start_controller(&kubeconfig, &ns.name);

    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &ns.name);
    let trigger = format!(
        "- {{apiVersion: apps/v1, kind: Deployment, name: model-server, action: restart}}\n- {{apiVersion: apps/v1, kind: Deployment, name: shared-server, namespace: {}, action: restart}}\n",
        other.name
    );
    let nvj = succeeded_nvj(&nvjs, "train", &trigger).await;
    let run = format!(
        "{}/{}",
        nvj.metadata.uid.clone().unwrap_or_default(),
        nvj.metadata.generation.unwrap_or(0)
    );

    // The restart is recorded Succeeded once the real rollout completed.
    let log = controller.log.clone();
    let records = eventually(
        Duration::from_secs(90),
        &format!("the triggers to be recorded (log {})", log.display()),
        || {
            let nvjs = nvjs.clone();
            async move {
                let t = nvjs.get("train").await.ok()?.status?.triggers;
                (t.len() == 2 && t.iter().all(|r| r.outcome != TriggerOutcome::InProgress))
                    .then_some(t)
            }
        },
    )
    .await;
    let by_name: BTreeMap<String, _> = records.into_iter().map(|r| (r.name.clone(), r)).collect();
    let restart = &by_name["model-server"];
    assert_eq!(
        (restart.outcome, restart.run.as_str()),
        (TriggerOutcome::Succeeded, run.as_str()),
        "{restart:?}"
    );
    let denied = &by_name["shared-server"];
    assert_eq!(denied.outcome, TriggerOutcome::Denied, "{denied:?}");
    let d = deployments.get("model-server").await.expect("deployment");
    let annotations = d
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    assert_eq!(annotations.get("mlops.dev/restarted-by-run"), Some(&run));
    assert!(annotations.contains_key("kubectl.kubernetes.io/restartedAt"));
    let restarted_generation = d.metadata.generation;
    assert_eq!(
        restarted_generation,
        first_generation.map(|g| g + 1),
        "exactly one template change"
    );
    // Nothing changed in the other namespace.
    let untouched = elsewhere.get("shared-server").await.expect("deployment");
    assert_eq!(untouched.metadata.generation, Some(1));

    // Killed and restarted: the run is not acted on again.
    controller.kill();
    let restarted = start_controller(&kubeconfig, &ns.name);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        deployments
            .get("model-server")
            .await
            .expect("deployment")
            .metadata
            .generation,
        restarted_generation,
        "{}",
        restarted.output()
    );
    let (ok, events, _) = cluster.kubectl(
        &[
            "get",
            "events",
            "-n",
            &ns.name,
            "--field-selector",
            "reason=TriggerSucceeded",
            "-o",
            "name",
        ],
        None,
    );
    assert!(
        ok && events.lines().count() >= 1,
        "a TriggerSucceeded Event"
    );
    let valid = nvjs
        .get("train")
        .await
        .expect("nvj")
        .status
        .and_then(|s| s.condition("TriggersValid").cloned())
        .expect("condition");
    assert_eq!(valid.status, "True");

    // A malformed annotation: reported in a condition naming entry and field, never acted on.
    let bad = "- {apiVersion: apps/v1, kind: Deployment, name: model-server, action: restrat}\n";
    succeeded_nvj(&nvjs, "typo", bad).await;
    let condition = eventually(
        Duration::from_secs(30),
        "the TriggersValid condition",
        || {
            let nvjs = nvjs.clone();
            async move {
                nvjs.get("typo")
                    .await
                    .ok()?
                    .status?
                    .condition("TriggersValid")
                    .cloned()
                    .filter(|c| c.status == "False")
            }
        },
    )
    .await;
    assert!(
        condition.message.contains("entry 0") && condition.message.contains("field `action`"),
        "{}",
        condition.message
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        deployments
            .get("model-server")
            .await
            .expect("deployment")
            .metadata
            .generation,
        restarted_generation,
        "nothing acted on"
    );
    drop(restarted);
}
