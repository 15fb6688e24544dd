//! nvj-validator's validation pods on a real node (containerd, runc, the kubelet), not the
//! kubelet double: the notebook-runner image as uid 1000 with a read-only root file system, in a
//! namespace enforcing the "restricted" Pod Security Standard; a private repository; an image
//! that is not on the node or cannot be pulled; images whose user the non-root check refuses;
//! a notebook over its memory limit; a run deleted while it runs. Each
//! is something the double had hidden (docs/development.md, "The real node").
//!
//! One control plane with its node for the whole file: the scenarios run side by side on it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use nbg_core::nvj::{CellStatus, NotebookValidationJob, Phase};
use nbg_e2e::harness::cluster::{eventually, repo_root};
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::git_server::{GitRepo, GitServer, credentials_secret, notebook};
use nbg_e2e::harness::real_node::RealNode;
use nbg_e2e::{Cluster, TestNamespace};

const TOKEN: &str = "tok-real-node-7c1e";

struct Scenario<'a> {
    node: &'a RealNode,
    nvjs: Api<NotebookValidationJob>,
    pods: Api<Pod>,
    /// The git server by its Service's cluster DNS name.
    git_service: String,
    controller_log: std::path::PathBuf,
}

impl Scenario<'_> {
    /// A run of `path` in the notebook-runner image, read-only root file system.
    fn spec(&self, path: &str) -> serde_json::Value {
        serde_json::json!({
            "notebook": {"git": {"url": format!("http://{}/notebooks.git", self.git_service), "ref": "main", "credentialsSecret": "git-credentials"}, "path": path},
            "podConfig": {"containerImage": self.node.notebook_image, "imagePullPolicy": "Never",
                          "securityContext": {"readOnlyRootFilesystem": true}},
            "timeout": "3m"
        })
    }

    async fn create(&self, name: &str, spec: serde_json::Value) {
        let nvj: NotebookValidationJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
            "metadata": {"name": name}, "spec": spec
        }))
        .expect("nvj");
        self.nvjs
            .create(&PostParams::default(), &nvj)
            .await
            .expect("create nvj");
    }

    async fn until(
        &self,
        name: &str,
        within: Duration,
        what: &str,
        done: impl Fn(&NotebookValidationJob) -> bool,
    ) -> NotebookValidationJob {
        let what = format!(
            "{name}: {what} (controller log {})",
            self.controller_log.display()
        );
        eventually(within, &what, || {
            let nvjs = self.nvjs.clone();
            let name = name.to_string();
            let done = &done;
            async move { nvjs.get(&name).await.ok().filter(|n| done(n)) }
        })
        .await
    }

    async fn finished(&self, name: &str, within: Duration) -> NotebookValidationJob {
        self.until(name, within, "a terminal phase", |n| {
            n.current_phase().is_some_and(|p| p.is_terminal())
        })
        .await
    }
}

#[tokio::test]
async fn validation_pods_behave_on_a_real_node_as_on_any_cluster() {
    let node = RealNode::start("real-node-cluster").expect("a control plane with a real node");
    let cluster: &Cluster = &node.plane.cluster;
    let labels = BTreeMap::from([(
        "pod-security.kubernetes.io/enforce".to_string(),
        "restricted".to_string(),
    )]);
    let ns = TestNamespace::with_labels(cluster, "real-node", labels).await;
    let controller = ChartedController::start(
        cluster,
        ControllerSpec {
            name: "nvj-validator",
            release_namespace: &ns.name,
            namespaces: &[&ns.name],
            values: &[],
            args: &[
                node.validator_args(),
                vec!["--retry-backoff".into(), "1s".into()],
            ]
            .concat(),
        },
    )
    .await;
    let client = cluster.client().await;
    // A private repository on the host, which pods reach by a Service's DNS name (the node's
    // CoreDNS, kube-proxy) as they would an in-cluster git server.
    let git = GitServer::start_on(
        node.host_ip,
        &repo_root().join(format!("target/real-node-git/{}", ns.name)),
        Some(("ml-bot", TOKEN)),
    )
    .await;
    let git_service = node
        .service_to_host(&client, &ns.name, "git", git.addr.port())
        .await
        .expect("the git server's Service");
    let repo = GitRepo::create(&git, "notebooks");
    repo.commit(
        &[
            (
                "pass.ipynb",
                notebook(&[
                    "import os, tempfile, pathlib",
                    "print(os.getuid(), os.environ['HOME'])",
                    "pathlib.Path(tempfile.gettempdir(), 'scratch').write_text('ok'); 21 * 2",
                ]),
            ),
            (
                "oom.ipynb",
                notebook(&[
                    "x = 1",
                    "hog = bytearray(400 * 1024 * 1024); hog[::4096] = b'x' * len(hog[::4096])",
                    "print('never')",
                ]),
            ),
            ("sleep.ipynb", notebook(&["import time; time.sleep(300)"])),
        ],
        "notebooks",
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let secret = credentials_secret("git-credentials", "ml-bot", TOKEN);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("credentials secret");
    let s = Scenario {
        node: &node,
        nvjs: Api::namespaced(client.clone(), &ns.name),
        pods: Api::namespaced(client.clone(), &ns.name),
        git_service,
        controller_log: controller.process.log.clone(),
    };

    tokio::join!(
        passes_as_a_non_root_user_from_a_private_repository(&s),
        an_image_not_on_the_node_is_named_within_seconds(&s),
        an_image_that_cannot_be_pulled_is_named_while_the_run_waits(&s),
        a_notebook_over_its_memory_limit_ends_oom_killed_with_its_cells(&s),
        a_deleted_run_stops_at_once(&s),
        images_the_non_root_check_refuses_name_run_as_user(&s),
    );
}

/// Defect 2: the Secret's files must be readable by the image's user (uid 1000 here).
async fn passes_as_a_non_root_user_from_a_private_repository(s: &Scenario<'_>) {
    let started = Instant::now();
    s.create("pass", s.spec("pass.ipynb")).await;
    let done = s.finished("pass", Duration::from_secs(180)).await;
    let status = done.status.clone().expect("status");
    assert_eq!(status.phase, Some(Phase::Succeeded), "{:?}", status.message);
    assert_eq!(status.results.len(), 3);
    assert!(
        status
            .results
            .iter()
            .all(|c| c.status == CellStatus::Success)
    );
    assert_eq!(
        status.results[1].output.as_deref().map(str::trim),
        Some("1000 /nbg/work"),
        "the image's user, HOME in the work directory"
    );
    assert_eq!(status.results[2].output.as_deref(), Some("42"));
    println!(
        "passing notebook on the real node: Succeeded {:?} after creation",
        started.elapsed()
    );
}

/// Defect 1: the notebook container waits behind the finished init container.
async fn an_image_not_on_the_node_is_named_within_seconds(s: &Scenario<'_>) {
    let mut spec = s.spec("pass.ipynb");
    spec["podConfig"]["containerImage"] = "ghcr.io/notebook-gitops/no-such-image:1".into();
    let started = Instant::now();
    s.create("missing-image", spec).await;
    let done = s.finished("missing-image", Duration::from_secs(60)).await;
    let status = done.status.clone().expect("status");
    let message = status.message.clone().unwrap_or_default();
    assert_eq!(status.phase, Some(Phase::Failed), "{message}");
    assert!(message.contains("ErrImageNeverPull"), "{message}");
    assert!(message.contains("imagePullPolicy"), "{message}");
    assert_eq!(status.retry_count, Some(0), "not retried: {message}");
    println!(
        "image not on the node: Failed {:?} after creation: {message}",
        started.elapsed()
    );
}

/// Defect 1 and 5: a pull that cannot succeed here (no registry is reachable) is said at once.
async fn an_image_that_cannot_be_pulled_is_named_while_the_run_waits(s: &Scenario<'_>) {
    let mut spec = s.spec("pass.ipynb");
    spec["podConfig"]["containerImage"] = "registry.invalid/team/notebook:1".into();
    spec["podConfig"]["imagePullPolicy"] = "IfNotPresent".into();
    let started = Instant::now();
    s.create("unpullable", spec).await;
    let done = s
        .until(
            "unpullable",
            Duration::from_secs(60),
            "the pull error in the status",
            |n| {
                n.status
                    .as_ref()
                    .and_then(|st| st.message.as_deref())
                    .is_some_and(|m| m.contains("ErrImagePull") || m.contains("ImagePullBackOff"))
            },
        )
        .await;
    let status = done.status.clone().expect("status");
    assert_eq!(status.phase, Some(Phase::ValidationRunning));
    println!(
        "image that cannot be pulled: named {:?} after creation: {}",
        started.elapsed(),
        status.message.unwrap_or_default()
    );
}

/// Defect 4: the kernel is what the OOM killer takes; the cells up to it are kept.
async fn a_notebook_over_its_memory_limit_ends_oom_killed_with_its_cells(s: &Scenario<'_>) {
    let mut spec = s.spec("oom.ipynb");
    spec["podConfig"]["resources"] = serde_json::json!({"limits": {"memory": "256Mi"}});
    s.create("oom", spec).await;
    let done = s.finished("oom", Duration::from_secs(180)).await;
    let status = done.status.clone().expect("status");
    let message = status.message.clone().unwrap_or_default();
    assert_eq!(status.phase, Some(Phase::Failed), "{message}");
    assert!(message.contains("OOMKilled"), "{message}");
    assert!(message.contains("cell 2 (cellIndex 1)"), "{message}");
    let cells: Vec<CellStatus> = status.results.iter().map(|c| c.status).collect();
    assert_eq!(
        cells,
        [
            CellStatus::Success,
            CellStatus::Failure,
            CellStatus::Skipped
        ],
        "{message}"
    );
}

/// Defect 3: the runner is PID 1 and stops on the kubelet's SIGTERM.
async fn a_deleted_run_stops_at_once(s: &Scenario<'_>) {
    s.create("sleeper", s.spec("sleep.ipynb")).await;
    let running = s
        .until(
            "sleeper",
            Duration::from_secs(120),
            "a validation pod",
            |n| {
                n.status
                    .as_ref()
                    .is_some_and(|st| st.validation_pod_name.is_some())
            },
        )
        .await;
    let pod_name = running
        .status
        .and_then(|st| st.validation_pod_name)
        .expect("a pod name");
    eventually(
        Duration::from_secs(120),
        "the sleeping notebook's container running",
        || {
            let pods = s.pods.clone();
            let pod_name = pod_name.clone();
            async move {
                let p = pods.get(&pod_name).await.ok()?;
                let cs = p.status?.container_statuses?;
                cs.iter()
                    .any(|c| {
                        c.name == "notebook"
                            && c.state.as_ref().is_some_and(|st| st.running.is_some())
                    })
                    .then_some(())
            }
        },
    )
    .await;
    // Give the kernel time to start the cell.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let deleted = Instant::now();
    s.pods
        .delete(&pod_name, &DeleteParams::default())
        .await
        .expect("delete the running pod");
    eventually(Duration::from_secs(40), "the pod gone", || {
        let pods = s.pods.clone();
        let pod_name = pod_name.clone();
        async move {
            pods.get_opt(&pod_name)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        }
    })
    .await;
    let took = deleted.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the pod took {took:?} to go after its deletion (the grace period is 30 s)"
    );
    println!("a running validation pod deleted: gone in {took:?}");
}

/// Defect 1 and 5: an image that runs as root, or names its user, never starts under the
/// restricted pod; said at once with what to set.
async fn images_the_non_root_check_refuses_name_run_as_user(s: &Scenario<'_>) {
    for (name, image, kubelet_says) in [
        (
            "root-image",
            &s.node.root_user_image,
            "image will run as root",
        ),
        (
            "named-user-image",
            &s.node.named_user_image,
            "non-numeric user",
        ),
    ] {
        let mut spec = s.spec("pass.ipynb");
        spec["podConfig"]["containerImage"] = image.as_str().into();
        let started = Instant::now();
        s.create(name, spec).await;
        let done = s.finished(name, Duration::from_secs(60)).await;
        let status = done.status.clone().expect("status");
        let message = status.message.clone().unwrap_or_default();
        assert_eq!(status.phase, Some(Phase::Failed), "{message}");
        assert!(message.contains(kubelet_says), "{message}");
        assert!(
            message.contains("spec.podConfig.securityContext.runAsUser"),
            "{message}"
        );
        println!(
            "{name}: Failed {:?} after creation: {message}",
            started.elapsed()
        );
    }
}
