//! The kubelet double: Deployments become Ready through the real deployment and replicaset
//! controllers, and a pod's command runs as a local process whose real exit code, termination
//! message, env from a Secret, and volume paths come back in the pod status.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};
use nbg_e2e::harness::cluster::eventually;
use nbg_e2e::harness::kubelet::{self, KubeletConfig, PodHandling};
use nbg_e2e::{Cluster, TestNamespace};

fn start_kubelet(
    client: kube::Client,
    ns: &str,
    handling: PodHandling,
) -> tokio::task::JoinHandle<()> {
    kubelet::spawn(client, KubeletConfig::for_test(&[ns], handling))
}

#[tokio::test]
async fn deployments_become_ready_through_the_real_controllers() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "ready").await;
    let client = cluster.client().await;
    let kubelet = start_kubelet(client.clone(), &ns.name, PodHandling::MakeReady);
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "model-server"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "m"}},
                 "template": {"metadata": {"labels": {"app": "m"}}, "spec": {"containers": [{"name": "c", "image": "img"}]}}}
    }))
    .expect("deployment");
    let api: Api<Deployment> = Api::namespaced(client, &ns.name);
    api.create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    eventually(Duration::from_secs(60), "2 ready replicas", || {
        let api = api.clone();
        async move {
            let d = api.get("model-server").await.ok()?;
            (d.status?.ready_replicas? == 2).then_some(())
        }
    })
    .await;
    kubelet.abort();
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
    let kubelet = start_kubelet(client.clone(), &ns.name, PodHandling::RunCommands);

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

/// A long run (`hack/just chaos`) filled the disk: every validation pod left its volumes - a
/// 100 MB copy of the runner binary among them - behind. Like a kubelet, the double removes a
/// terminated pod's volumes unless told to keep them (tests that read what a notebook wrote).
#[tokio::test]
async fn a_terminated_pods_volumes_are_removed_unless_kept() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "volumes").await;
    let client = cluster.client().await;
    let work_dir = nbg_e2e::harness::cluster::repo_root()
        .join(format!("target/e2e-kubelet-volumes/{}", std::process::id()));
    let kubelet = kubelet::spawn(
        client.clone(),
        KubeletConfig {
            work_dir: work_dir.clone(),
            keep_terminated_volumes: false,
            ..KubeletConfig::for_test(&[&ns.name], PodHandling::RunCommands)
        },
    );
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "writer"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "containers": [{"name": "main", "image": "busybox",
                "command": ["sh", "-c", "head -c 1048576 /dev/zero > /scratch/big && test -s /scratch/big"],
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}]
        }
    }))
    .expect("pod");
    let pods: Api<Pod> = Api::namespaced(client, &ns.name);
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    eventually(Duration::from_secs(60), "the pod to succeed", || {
        let pods = pods.clone();
        async move {
            let phase = pods.get("writer").await.ok()?.status?.phase?;
            (phase == "Succeeded").then_some(())
        }
    })
    .await;
    let volumes = work_dir.join(&ns.name).join("writer").join("volumes");
    eventually(Duration::from_secs(10), "the volumes to be removed", || {
        let gone = !volumes.exists();
        async move { gone.then_some(()) }
    })
    .await;

    // A pod deleted while it runs (its NVJ deleted, or its spec changed) leaves nothing either.
    let mut sleeper = pod.clone();
    sleeper.metadata.name = Some("sleeper".into());
    if let Some(c) = sleeper.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        c.command = Some(vec![
            "sh".into(),
            "-c".into(),
            "echo x > /scratch/x && sleep 60".into(),
        ]);
    }
    pods.create(&PostParams::default(), &sleeper)
        .await
        .expect("create sleeper");
    let volumes = work_dir.join(&ns.name).join("sleeper").join("volumes");
    eventually(Duration::from_secs(60), "the sleeper to write", || {
        let written = volumes.join("scratch/x").exists();
        async move { written.then_some(()) }
    })
    .await;
    pods.delete("sleeper", &Default::default())
        .await
        .expect("delete sleeper");
    eventually(
        Duration::from_secs(30),
        "the deleted pod's volumes to be removed",
        || {
            let gone = !volumes.exists();
            async move { gone.then_some(()) }
        },
    )
    .await;
    kubelet.abort();
    let _ = std::fs::remove_dir_all(&work_dir);
}
