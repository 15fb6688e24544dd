//! The harness's control plane starts a component again when it exits after a restart, as the
//! kubelet starts a static pod again: kube-controller-manager exits when the API server is not
//! healthy within 10 s of its start ("failed to wait for apiserver being healthy", seen on a
//! loaded machine after an API server restart), and then no Deployment's status moved - a chaos
//! run's restarts stayed pending for good. Here it exits the way a process does (SIGKILL of the
//! restarted one), is started again by `revive_exited`, and a Deployment rolls on.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use nbg_e2e::harness::cluster::eventually;
use nbg_e2e::harness::control_plane::PrivateControlPlane;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exited_controller_manager_is_started_again_and_deployments_roll_on() {
    let plane = PrivateControlPlane::start("kcm-revival-cluster", &[]).expect("a control plane");
    let client = plane.cluster.client().await;
    plane
        .restart_apiserver(Duration::from_millis(200))
        .expect("restart the API server (and the controller-manager)");
    assert!(plane.revive_exited().is_empty(), "nothing exited yet");

    let pid_file = plane.dir().join("pids/kube-controller-manager.pid");
    let pid = std::fs::read_to_string(&pid_file).expect("its pid");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let revived = eventually(Duration::from_secs(10), "the revival", || async {
        let r = plane.revive_exited();
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(revived, ["kube-controller-manager"]);
    let new_pid = std::fs::read_to_string(&pid_file).expect("its new pid");
    assert_ne!(new_pid.trim(), pid.trim());

    // The deployment controller works again: a new generation is observed.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "model"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "model"}},
                 "template": {"metadata": {"labels": {"app": "model"}},
                              "spec": {"containers": [{"name": "c", "image": "model-server"}]}}}
    }))
    .expect("a Deployment");
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create it");
    deployments
        .patch(
            "model",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"template": {"metadata": {"annotations": {"restarted": "1"}}}}}),
            ),
        )
        .await
        .expect("a new generation");
    eventually(Duration::from_secs(60), "generation 2 observed", || async {
        let d = deployments.get("model").await.ok()?;
        (d.status.and_then(|s| s.observed_generation) == Some(2)).then_some(())
    })
    .await;
}
