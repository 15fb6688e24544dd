//! trigger-controller against the real KServe manager (v0.16, Standard mode: the predictor is a
//! Deployment), on a control plane of this test's own with a real node, under the controller's
//! chart RBAC. The predictor is KServe's own sklearn server (`kserve/sklearnserver`, built by
//! hack/node-images.sh) serving a scikit-learn model that a Job trained onto a `local`
//! PersistentVolume as uid 1000 (the pod's fsGroup makes the volume writable). A model server
//! that does not come up is a real one: while a test says so the model file is not a model, the
//! new predictor pod's server fails to load it and never turns Ready; put back, it does.
//!
//! - a restart rolls the predictor once (a new ReplicaSet, the old one scaled to 0) and is
//!   recorded Succeeded only once the new pod is Ready;
//! - while the new pod is not Ready, the record is never Succeeded; past the rollout deadline it
//!   is InProgress, saying where the predictor's rollout stands;
//! - SIGKILL of the controller during the rollout still ends with one restart and a true record;
//! - two NVJs naming the same InferenceService in the same second: each run's record turns
//!   Succeeded only once a rollout carrying its own (or a later) restart has completed;
//! - the served model's check (`spec.modelValidation`, `served_model.rs`).

mod served_model;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};
use nbg_core::nvj::{NotebookValidationJob, TriggerOutcome, TriggerRecord};
use nbg_e2e::harness::cluster::eventually;
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::kserve::{self, KServe};
use nbg_e2e::harness::nvj::{mark_succeeded, minimal};
use nbg_e2e::harness::real_node::RealNode;
use serde_json::json;

const RESTARTED_AT: &str = "mlops.dev/restarted-at";

/// The run the NVJ's current generation will be, once it has a status: `<uid>/<generation>`.
fn run_of(nvj: &NotebookValidationJob) -> String {
    format!(
        "{}/{}",
        nvj.metadata.uid.as_deref().unwrap_or_default(),
        nvj.metadata.generation.unwrap_or_default()
    )
}

struct Serving {
    client: Client,
    ns: String,
    nvjs: Api<NotebookValidationJob>,
    deployments: Api<Deployment>,
    /// model.joblib on the volume, and what the Job trained into it.
    model: PathBuf,
    /// The `models` volume's directory on this machine.
    volume: PathBuf,
    trained: Vec<u8>,
    controller: ChartedController,
    cluster: nbg_e2e::Cluster,
}

/// Trains a small scikit-learn model and saves it where KServe's sklearn server loads it:
/// `model.joblib` under the storage URI's path.
const TRAIN: &str = "import os, joblib\n\
from sklearn.linear_model import LogisticRegression\n\
model = LogisticRegression().fit([[0, 0], [1, 1], [0, 1], [1, 0], [2, 2], [0, 2]], [0, 1, 0, 1, 1, 0])\n\
os.makedirs('/mnt/models/fraud', exist_ok=True)\n\
joblib.dump(model, '/mnt/models/fraud/model.joblib')\n\
print('saved as uid', os.getuid(), 'groups', os.getgroups())\n";

impl Serving {
    /// A namespace with a model trained onto the PVC `models`, the InferenceService `fraud`
    /// (sklearn from that PVC) served and Ready, and trigger-controller (with these more
    /// arguments).
    async fn start(node: &RealNode, ns: &str, args: &[String]) -> Self {
        let predictor = json!({"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://models/fraud",
            "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}}});
        Self::start_with(node, ns, args, predictor, TRAIN).await
    }

    /// [`Serving::start`] with this predictor spec, the model trained by `training`.
    async fn start_with(
        node: &RealNode,
        ns: &str,
        args: &[String],
        predictor: serde_json::Value,
        training: &str,
    ) -> Self {
        let plane = &node.plane;
        let client = plane.cluster.client().await;
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace");
        let volume = node
            .local_volume(&client, ns, "models")
            .await
            .expect("the models volume");
        let model = train(
            &plane.cluster,
            &client,
            ns,
            &volume,
            "train-model",
            training,
        )
        .await;
        let trained = std::fs::read(&model).expect("the trained model");
        let isvcs = kserve::inference_services(&client, ns);
        let isvc: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "fraud"},
            "spec": {"predictor": predictor}
        }))
        .expect("isvc");
        isvcs
            .create(&PostParams::default(), &isvc)
            .await
            .expect("create the InferenceService");
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let available = deployments
                .get("fraud-predictor")
                .await
                .ok()
                .and_then(|d| d.status?.available_replicas)
                == Some(1);
            let ready = isvcs.get("fraud").await.is_ok_and(|i| kserve::is_ready(&i));
            if available && ready {
                break;
            }
            if Instant::now() > deadline {
                let (_, pods, _) = plane.cluster.kubectl(
                    &["describe", "pods", "-n", ns, "-l", "component=predictor"],
                    None,
                );
                let (_, isvc, _) = plane
                    .cluster
                    .kubectl(&["get", "isvc", "fraud", "-n", ns, "-o", "yaml"], None);
                panic!("KServe's predictor not available and Ready within 120 s:\n{pods}\n{isvc}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let controller = ChartedController::start(
            &plane.cluster,
            ControllerSpec {
                name: "trigger-controller",
                release_namespace: ns,
                namespaces: &[ns],
                // No Argo CD on this plane, as a user without one installs it.
                values: &["global.argocd.enabled=false".to_string()],
                args,
            },
        )
        .await;
        Self {
            nvjs: Api::namespaced(client.clone(), ns),
            client,
            ns: ns.to_string(),
            deployments,
            model,
            volume,
            trained,
            controller,
            cluster: plane.cluster.clone(),
        }
    }

    async fn nvj(&self, name: &str) -> NotebookValidationJob {
        self.nvj_checking(name, None).await
    }

    /// An NVJ restarting `fraud`, with this `spec.modelValidation`.
    async fn nvj_checking(
        &self,
        name: &str,
        model_validation: Option<serde_json::Value>,
    ) -> NotebookValidationJob {
        let trigger = BTreeMap::from([(
            "mlops.dev/on-success-trigger".to_string(),
            "- {apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, name: fraud, action: restart}\n"
                .to_string(),
        )]);
        let mut nvj = minimal(name, &trigger);
        if let Some(m) = model_validation {
            nvj.spec.model_validation = Some(serde_json::from_value(m).expect("a modelValidation"));
        }
        self.nvjs
            .create(&PostParams::default(), &nvj)
            .await
            .expect("create the NVJ")
    }

    async fn record(&self, nvj: &str) -> Option<TriggerRecord> {
        self.nvjs
            .get(nvj)
            .await
            .ok()?
            .status?
            .triggers
            .into_iter()
            .find(|r| r.kind == "InferenceService" && r.name == "fraud")
    }

    async fn predictor(&self) -> Deployment {
        self.deployments
            .get("fraud-predictor")
            .await
            .expect("the predictor Deployment")
    }

    /// The predictor's ReplicaSets: (replicas wanted, the restart marker its template carries).
    async fn replica_sets(&self) -> Vec<(i32, Option<String>)> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &self.ns);
        let mut sets: Vec<(i32, Option<String>)> = api
            .list(&ListParams::default())
            .await
            .expect("replica sets")
            .items
            .into_iter()
            .filter(|r| r.name_any().starts_with("fraud-predictor-"))
            .map(|r| {
                let spec = r.spec.unwrap_or_default();
                let marker = spec
                    .template
                    .and_then(|t| t.metadata)
                    .and_then(|m| m.annotations)
                    .and_then(|a| a.get(RESTARTED_AT).cloned());
                (spec.replicas.unwrap_or(1), marker)
            })
            .collect();
        sets.sort();
        sets
    }

    /// What the served model predicts for two rows, through KServe's V1 protocol on a Ready
    /// predictor pod that is not going away (reached through the API server's pod proxy).
    async fn predict(&self) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        eventually(
            Duration::from_secs(30),
            "a prediction from a Ready predictor pod",
            || {
                let pods = pods.clone();
                async move {
                    let serving = pods
                        .list(&ListParams::default().labels("component=predictor"))
                        .await
                        .ok()?
                        .items
                        .into_iter()
                        .find(|p| {
                            p.metadata.deletion_timestamp.is_none()
                                && p.status
                                    .as_ref()
                                    .and_then(|s| s.conditions.as_ref())
                                    .is_some_and(|cs| {
                                        cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                    })
                        })?;
                    let path = format!(
                        "/api/v1/namespaces/{}/pods/{}:8080/proxy/v1/models/fraud:predict",
                        self.ns,
                        serving.name_any()
                    );
                    let request = http::Request::post(path)
                        .header("Content-Type", "application/json")
                        .body(br#"{"instances": [[2, 2], [0, 2]]}"#.to_vec())
                        .ok()?;
                    self.client.request_text(request).await.ok()
                }
            },
        )
        .await
    }

    /// The model file stops being a model: a predictor pod that starts now fails to load it
    /// and never turns Ready (those serving loaded it before).
    fn break_model(&self) {
        std::fs::write(&self.model, b"not a model").expect("overwrite the model");
    }

    /// The trained model back: the failing server's next restart loads it and turns Ready.
    fn restore_model(&self) {
        std::fs::write(&self.model, &self.trained).expect("restore the model");
    }
}

/// Runs the training Job on the node as uid 1000 with fsGroup 1000 onto the `models` volume;
/// returns the model file's path on this machine.
async fn train(
    cluster: &nbg_e2e::Cluster,
    client: &Client,
    ns: &str,
    volume: &std::path::Path,
    job: &str,
    training: &str,
) -> PathBuf {
    let image = kserve::sklearn_runtime_image().expect("the runtime image");
    let name = job;
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
            "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}],
            "containers": [{"name": "train", "image": image, "imagePullPolicy": "IfNotPresent",
                            "command": ["python", "-c", training],
                            "volumeMounts": [{"name": "models", "mountPath": "/mnt/models"}]}]
        }}}
    }))
    .expect("a Job");
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create the training Job");
    // Six trainings start side by side, beside the test command's other lanes on 2 cores: the
    // pod's start (a Node authorizer race took 30 s once) and importing scikit-learn took a Job
    // past 90 s under a load of 25-30. The Job's time is not what this test measures.
    let outcome = eventually(
        Duration::from_secs(240),
        "the training Job ends",
        || async {
            let status = jobs.get(name).await.ok()?.status?;
            (status.succeeded.unwrap_or(0) + status.failed.unwrap_or(0) > 0)
                .then(|| status.succeeded.unwrap_or(0) > 0)
        },
    )
    .await;
    let (_, log, _) = cluster.kubectl(&["logs", "-n", ns, &format!("job/{name}")], None);
    assert!(outcome, "the training Job failed: {log}");
    let model = volume.join("fraud/model.joblib");
    let meta = std::fs::metadata(&model).expect("model.joblib on the volume");
    println!(
        "training Job: {} ({} bytes, uid {} gid {})",
        log.trim(),
        meta.len(),
        meta.uid(),
        meta.gid()
    );
    assert_eq!(meta.uid(), 1000, "written by the pod's user");
    assert_eq!(
        std::fs::metadata(volume).expect("the volume").gid(),
        1000,
        "the kubelet gave the volume the pod's fsGroup"
    );
    model
}

fn marker_of(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(RESTARTED_AT)
        .cloned()
}

/// Holds for `window` and fails if the NVJ's record turns Succeeded meanwhile.
async fn never_succeeded(s: &Serving, nvj: &str, window: Duration) {
    let until = Instant::now() + window;
    while Instant::now() < until {
        let r = s.record(nvj).await;
        assert!(
            r.as_ref()
                .is_none_or(|r| r.outcome != TriggerOutcome::Succeeded),
            "{nvj}: recorded Succeeded while the new predictor pod is not Ready: {r:?} (log {})",
            s.controller.process.log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn succeeded(s: &Serving, nvj: &str) -> TriggerRecord {
    let log = s.controller.process.log.display().to_string();
    // The failing server restarts with the kubelet's back-off (10 s, 20 s, 40 s, ...).
    eventually(
        Duration::from_secs(120),
        &format!("{nvj} recorded Succeeded (log {log})"),
        || async {
            s.record(nvj)
                .await
                .filter(|r| r.outcome == TriggerOutcome::Succeeded)
        },
    )
    .await
}

/// One run restarts the predictor once; its record turns Succeeded only once the new pod is
/// Ready, never while it is not; a SIGKILL of the controller mid-rollout changes nothing.
async fn one_restart_recorded_when_ready(node: &RealNode) {
    let mut s = Serving::start(node, "kserve-one", &[]).await;
    let answer = s.predict().await;
    println!("the served model predicts {answer}");
    assert_eq!(
        answer, r#"{"predictions":[1,0]}"#,
        "the trained model answers"
    );
    let before = s.predictor().await;
    let generation = before.metadata.generation;
    let nvj = s.nvj("train").await;
    let run = run_of(&nvj);
    // The new predictor pod cannot load the model.
    s.break_model();
    mark_succeeded(&s.nvjs, &nvj).await.expect("succeed");
    let rolled = eventually(
        Duration::from_secs(30),
        "KServe rolls the predictor with the run's restart",
        || async {
            let d = s.predictor().await;
            marker_of(&d)
                .filter(|m| m.starts_with(&format!("{run} ")))
                .map(|_| d)
        },
    )
    .await;
    assert_eq!(
        rolled.metadata.generation,
        generation.map(|g| g + 1),
        "one change of the pod template"
    );
    never_succeeded(&s, "train", Duration::from_secs(8)).await;
    // SIGKILL mid-rollout, as a crash would; the restarted controller must not restart again.
    s.controller.restart();
    never_succeeded(&s, "train", Duration::from_secs(5)).await;
    s.restore_model();
    let released = Instant::now();
    let record = succeeded(&s, "train").await;
    println!(
        "one restart: Succeeded {:.1} s after the model was put back (the server's next restart, then its readiness probe): {:?}",
        released.elapsed().as_secs_f64(),
        record.message
    );
    assert_eq!(record.run, run);
    let answer = s.predict().await;
    assert_eq!(
        answer, r#"{"predictions":[1,0]}"#,
        "the new pod serves the trained model"
    );
    let after = s.predictor().await;
    assert_eq!(
        after.metadata.generation,
        generation.map(|g| g + 1),
        "restarted exactly once"
    );
    let sets = s.replica_sets().await;
    assert_eq!(
        sets.len(),
        2,
        "the old ReplicaSet and the new one: {sets:?}"
    );
    assert_eq!(sets[0], (0, None), "the old one scaled to 0: {sets:?}");
    assert!(
        sets[1].0 == 1 && sets[1].1.as_deref().is_some_and(|m| m.starts_with(&run)),
        "{sets:?}"
    );
}

/// Two NVJs succeed in the same second: each record turns Succeeded only once a rollout that
/// carries its own restart or a later one has completed.
async fn two_runs_in_the_same_second(node: &RealNode) {
    let s = Serving::start(node, "kserve-two", &[]).await;
    let a = s.nvj("train-a").await;
    let b = s.nvj("train-b").await;
    let (run_a, run_b) = (run_of(&a), run_of(&b));
    s.break_model();
    let (ra, rb) = tokio::join!(mark_succeeded(&s.nvjs, &a), mark_succeeded(&s.nvjs, &b));
    ra.expect("a");
    rb.expect("b");
    never_succeeded(&s, "train-a", Duration::from_secs(6)).await;
    assert!(
        s.record("train-b")
            .await
            .is_none_or(|r| r.outcome != TriggerOutcome::Succeeded)
    );
    s.restore_model();
    let (record_a, record_b) = (
        succeeded(&s, "train-a").await,
        succeeded(&s, "train-b").await,
    );
    // What rolled last carries one of the two runs; both records were written after a
    // completed rollout that carried a run at least as new as theirs.
    let last = marker_of(&s.predictor().await).unwrap_or_default();
    assert!(
        last.starts_with(&format!("{run_a} ")) || last.starts_with(&format!("{run_b} ")),
        "{last}"
    );
    let sets = s.replica_sets().await;
    println!(
        "two runs in one second: {} ReplicaSets, last restart {last}; records {:?} / {:?}",
        sets.len(),
        record_a.message,
        record_b.message
    );
    assert_eq!(
        sets.iter().filter(|(n, _)| *n > 0).count(),
        1,
        "one ReplicaSet serves: {sets:?}"
    );
}

/// The new predictor pod never turns Ready: past the rollout deadline (15 s here, 10 minutes by
/// default) the record is InProgress saying where the rollout stands - never Succeeded.
async fn a_predictor_that_never_turns_ready(node: &RealNode) {
    let args = ["--rollout-deadline".to_string(), "15s".to_string()];
    let s = Serving::start(node, "kserve-stuck", &args).await;
    let nvj = s.nvj("train").await;
    s.break_model();
    mark_succeeded(&s.nvjs, &nvj).await.expect("succeed");
    let log = s.controller.process.log.display().to_string();
    let started = Instant::now();
    let mut stuck = None;
    while started.elapsed() < Duration::from_secs(40) {
        let r = s.record("train").await;
        assert!(
            r.as_ref()
                .is_none_or(|r| r.outcome != TriggerOutcome::Succeeded),
            "Succeeded while the new predictor pod is not Ready: {r:?} (log {log})"
        );
        if let Some(r) = r.filter(|r| r.outcome == TriggerOutcome::InProgress) {
            stuck = Some((r, started.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (record, after) =
        stuck.unwrap_or_else(|| panic!("no InProgress record within 40 s (log {log})"));
    println!(
        "never Ready: InProgress after {:.1} s: {:?}",
        after.as_secs_f64(),
        record.message
    );
    let message = record.message.unwrap_or_default();
    assert!(
        message.starts_with("restart applied; the rollout has not completed in 15 s: predictor Deployment fraud-predictor: 1 of 1 replicas updated, 1 unavailable, 1 old still serving; KServe reports Ready "),
        "{message}"
    );
    never_succeeded(&s, "train", Duration::from_secs(5)).await;
}

#[tokio::test]
async fn inference_service_restarts_on_the_real_kserve() {
    let node = RealNode::start("kserve-cluster").expect("a control plane with a real node");
    let kserve = KServe::start(&node.plane.cluster).expect("the KServe manager");
    // Each in a namespace of its own, side by side.
    tokio::join!(
        one_restart_recorded_when_ready(&node),
        two_runs_in_the_same_second(&node),
        a_predictor_that_never_turns_ready(&node),
        served_model::a_wrong_model_is_caught_before_its_restart_counts(&node),
        served_model::an_unanswering_model_times_out_and_a_successor_checks_once(&node),
        served_model::a_v2_model_is_asked_in_the_v2_protocol(&node),
    );
    drop(kserve);
}

/// The benchmark of docs/benchmarks.md: from the new predictor Ready to the restart recorded,
/// the prediction check included, over 20 restarts (`cargo test --test kserve_restart --
/// --ignored --nocapture served_model_check_latency`).
#[tokio::test]
#[ignore = "a benchmark: run it by name"]
async fn served_model_check_latency() {
    let node = RealNode::start("kserve-bench").expect("a control plane with a real node");
    let kserve = KServe::start(&node.plane.cluster).expect("the KServe manager");
    let took = served_model::check_latency(&node, 20).await;
    let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "from the new predictor Ready to the restart recorded (prediction check included), {} restarts: p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        took.len(),
        at(0.5).as_secs_f64(),
        at(0.99).as_secs_f64(),
        took.last().copied().unwrap_or_default().as_secs_f64()
    );
    drop(kserve);
}
