//! trigger-controller against the real KServe manager (v0.16, Standard mode: the predictor is a
//! Deployment), on a control plane of this test's own, under the controller's chart RBAC. The
//! kubelet double plays the node: predictor pods become Ready, or are held unready (a model
//! server that does not come up) while a test says so.
//!
//! - a restart rolls the predictor once (a new ReplicaSet, the old one scaled to 0) and is
//!   recorded Succeeded only once the new pod is Ready;
//! - while the new pod is not Ready, the record is never Succeeded; past the rollout deadline it
//!   is InProgress, saying where the predictor's rollout stands;
//! - SIGKILL of the controller during the rollout still ends with one restart and a true record;
//! - two NVJs naming the same InferenceService in the same second: each run's record turns
//!   Succeeded only once a rollout carrying its own (or a later) restart has completed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};
use nbg_core::nvj::{NotebookValidationJob, TriggerOutcome, TriggerRecord};
use nbg_e2e::harness::cluster::eventually;
use nbg_e2e::harness::control_plane::PrivateControlPlane;
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::kserve::{self, KServe};
use nbg_e2e::harness::kubelet::{self, KubeletConfig, PodHandling};
use nbg_e2e::harness::nvj::{mark_succeeded, minimal};
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
    held: Arc<Mutex<Vec<String>>>,
    controller: ChartedController,
    _kubelet: tokio::task::JoinHandle<()>,
}

impl Serving {
    /// A namespace with the InferenceService `fraud` (sklearn from a PVC) served and Ready, the
    /// kubelet double for its pods, and trigger-controller (with these more arguments).
    async fn start(plane: &PrivateControlPlane, ns: &str, args: &[String]) -> Self {
        let client = plane.cluster.client().await;
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace");
        let held: Arc<Mutex<Vec<String>>> = Arc::default();
        let kubelet = kubelet::spawn(
            client.clone(),
            KubeletConfig {
                held_unready: held.clone(),
                ..KubeletConfig::for_test(&[ns], PodHandling::MakeReady)
            },
        );
        let isvcs = kserve::inference_services(&client, ns);
        let isvc: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "fraud"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://models/fraud"}}}
        }))
        .expect("isvc");
        isvcs
            .create(&PostParams::default(), &isvc)
            .await
            .expect("create the InferenceService");
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        eventually(
            Duration::from_secs(60),
            "KServe's predictor Deployment available and the InferenceService Ready",
            || async {
                let d = deployments.get("fraud-predictor").await.ok()?;
                let available = d.status?.available_replicas? == 1;
                let i = isvcs.get("fraud").await.ok()?;
                let ready = i
                    .data
                    .pointer("/status/conditions")?
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                (available && ready).then_some(())
            },
        )
        .await;
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
            held,
            controller,
            _kubelet: kubelet,
        }
    }

    async fn nvj(&self, name: &str) -> NotebookValidationJob {
        let trigger = BTreeMap::from([(
            "mlops.dev/on-success-trigger".to_string(),
            "- {apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, name: fraud, action: restart}\n"
                .to_string(),
        )]);
        self.nvjs
            .create(&PostParams::default(), &minimal(name, &trigger))
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

    fn hold(&self, marker: &str) {
        if let Ok(mut h) = self.held.lock() {
            h.push(marker.to_string());
        }
    }

    fn release(&self) {
        if let Ok(mut h) = self.held.lock() {
            h.clear();
        }
    }
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
    eventually(
        Duration::from_secs(60),
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
async fn one_restart_recorded_when_ready(plane: &PrivateControlPlane) {
    let mut s = Serving::start(plane, "kserve-one", &[]).await;
    let before = s.predictor().await;
    let generation = before.metadata.generation;
    let nvj = s.nvj("train").await;
    let run = run_of(&nvj);
    // The new predictor pod carries the run in its template annotations: held unready.
    s.hold(&run);
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
    s.release();
    let released = Instant::now();
    let record = succeeded(&s, "train").await;
    println!(
        "one restart: Succeeded {:.1} s after the new pod may turn Ready: {:?}",
        released.elapsed().as_secs_f64(),
        record.message
    );
    assert_eq!(record.run, run);
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
async fn two_runs_in_the_same_second(plane: &PrivateControlPlane) {
    let s = Serving::start(plane, "kserve-two", &[]).await;
    let a = s.nvj("train-a").await;
    let b = s.nvj("train-b").await;
    let (run_a, run_b) = (run_of(&a), run_of(&b));
    s.hold(&run_a);
    s.hold(&run_b);
    let (ra, rb) = tokio::join!(mark_succeeded(&s.nvjs, &a), mark_succeeded(&s.nvjs, &b));
    ra.expect("a");
    rb.expect("b");
    never_succeeded(&s, "train-a", Duration::from_secs(6)).await;
    assert!(
        s.record("train-b")
            .await
            .is_none_or(|r| r.outcome != TriggerOutcome::Succeeded)
    );
    s.release();
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
async fn a_predictor_that_never_turns_ready(plane: &PrivateControlPlane) {
    let args = ["--rollout-deadline".to_string(), "15s".to_string()];
    let s = Serving::start(plane, "kserve-stuck", &args).await;
    let nvj = s.nvj("train").await;
    s.hold(&run_of(&nvj));
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
    let plane = PrivateControlPlane::start("kserve-cluster", &[])
        .expect("a control plane of this test's own");
    let kserve = KServe::start(&plane.cluster).expect("the KServe manager");
    one_restart_recorded_when_ready(&plane).await;
    two_runs_in_the_same_second(&plane).await;
    a_predictor_that_never_turns_ready(&plane).await;
    drop(kserve);
}
