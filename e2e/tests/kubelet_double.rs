//! The kubelet double (what is left of it: `go_operator_samples.rs`): a pod's command runs as a
//! local process whose real exit code, termination message, env from a Secret, and volume paths
//! come back in the pod status.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};
use nbg_e2e::harness::cluster::eventually;
use nbg_e2e::harness::kubelet::{self, KubeletConfig};
use nbg_e2e::{Cluster, TestNamespace};

fn start_kubelet(client: kube::Client, ns: &str) -> tokio::task::JoinHandle<()> {
    kubelet::spawn(client, KubeletConfig::for_test(&[ns]))
}

#[tokio::test]
async fn pod_commands_run_locally_with_real_exit_codes_and_termination_messages() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "run").await;
    let client = cluster.client().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("creds".into()),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(
            "token".to_string(),
            "s3cr3t".to_string(),
        )])),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let kubelet = start_kubelet(client.clone(), &ns.name);

    // An init container writes into a shared emptyDir; the main container reads it, checks the
    // env from the Secret, writes its termination message and exits 3.
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runner"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "shared", "emptyDir": {}}],
            "initContainers": [{"name": "prepare", "image": "busybox", "command": ["sh", "-c", "echo prepared > /shared/state"],
                                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}],
            "containers": [{
                "name": "main", "image": "busybox",
                "command": ["sh", "-c", "test \"$TOKEN\" = s3cr3t && printf '%s' \"$(cat /shared/state)\" > /dev/termination-log && exit 3"],
                "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]
            }]
        }
    }))
    .expect("pod");
    let pods: Api<Pod> = Api::namespaced(client, &ns.name);
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let terminated = eventually(
        Duration::from_secs(60),
        "the pod to fail with exit code 3",
        || {
            let pods = pods.clone();
            async move {
                let p = pods.get("runner").await.ok()?;
                let status = p.status?;
                if status.phase.as_deref() != Some("Failed") {
                    return None;
                }
                status
                    .container_statuses?
                    .into_iter()
                    .next()?
                    .state?
                    .terminated
            }
        },
    )
    .await;
    assert_eq!(terminated.exit_code, 3);
    assert_eq!(terminated.message.as_deref(), Some("prepared"));

    // activeDeadlineSeconds is enforced.
    let slow: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "slow"},
        "spec": {"restartPolicy": "Never", "activeDeadlineSeconds": 1,
                 "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "60"]}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &slow)
        .await
        .expect("create slow pod");
    let started = std::time::Instant::now();
    let reason = eventually(
        Duration::from_secs(30),
        "the deadline to stop the pod",
        || {
            let pods = pods.clone();
            async move {
                pods.get("slow")
                    .await
                    .ok()?
                    .status?
                    .reason
                    .filter(|r| r == "DeadlineExceeded")
            }
        },
    )
    .await;
    assert_eq!(reason, "DeadlineExceeded");
    assert!(started.elapsed() < Duration::from_secs(20));
    kubelet.abort();
}
