//! The train -> validate -> reload scenario of `just demo`, also run as e2e tests
//! (`tests/demo.rs`) so it cannot rot.
//!
//! On the local control plane: a git repository with the example's notebooks
//! (`manifests/examples/notebooks/fraud-detection/`), nvj-validator and trigger-controller as
//! local processes under their charts' RBAC, a real node (containerd, the kubelet: the
//! control plane must have one, `NBG_NODE=real`) running the validation pods in the
//! notebook-runner image and the model server, the real Argo CD ([`argocd`]) syncing
//! `manifests/examples/fraud-detection/` from a second repository, and the real KServe manager
//! (Standard mode) serving the model with KServe's own sklearn server and rolling its predictor
//! Deployment on a restart. Without
//! them (`--no-argocd`, `--no-kserve`) the demo plays their part and says so.
//!
//! Act 1: Argo CD deploys the example; the training notebook runs and matches its golden
//! notebook; only then does Argo CD apply the model server (wave 4), which starts with the new
//! model, so it is not restarted; trigger-controller requests a sync of the Application, once.
//! Act 2: a commit changes the training; the new run succeeds; the model server is restarted,
//! once, and rolls, and its new predictor answers the example's prediction check as expected.
//! Act 3: a commit breaks a cell; the run fails, turns Degraded, Argo CD's sync fails, and nothing
//! is restarted. Act 4 (with the real KServe, [`served_model`]): a commit trains on the features
//! in another order; the run passes, but the served model answers wrongly: the restart is
//! reported Failed and the NVJ turns Degraded.

pub mod argocd;
pub mod served_model;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use nbg_core::nvj::{NotebookValidationJob, TriggerOutcome, TriggerRecord};
use serde_json::{Value, json};

use crate::Cluster;
use crate::harness::cluster::repo_root;
use crate::harness::controller::{ChartedController, ControllerSpec};
use crate::harness::git_server::{GitRepo, GitServer};
use crate::harness::real_node::{
    host_ip_of, local_persistent_volume, project_image, service_to_host,
};
use argocd::{ArgoCd, Site};
use k8s_openapi::api::apps::v1::Deployment;

/// Whether a Deployment has rolled out its current template (observed, every replica updated
/// and available), as `kubectl rollout status` says.
fn rollout_done(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    status.observed_generation >= d.metadata.generation
        && status.updated_replicas.unwrap_or_default() == want
        && status.available_replicas.unwrap_or_default() == want
        && status.replicas.unwrap_or_default() == want
}

/// The example's names (manifests/examples/fraud-detection/).
pub(crate) const NVJ: &str = "train-fraud-model";
pub(crate) const ISVC: &str = "fraud-model";
pub(crate) const APP: &str = "fraud-detection";
const REPO_URL: &str = "https://git.example.com/ml/fraud-detection.git";

pub struct DemoConfig {
    /// Where the example is applied (the example's own: `fraud-detection`).
    pub namespace: String,
    /// Argo CD's namespace, where the Application lives (`argocd`).
    pub argocd_namespace: String,
    /// Run the real KServe manager (Standard mode); without it the demo plays KServe's part
    /// and says so.
    pub real_kserve: bool,
    /// Run the real Argo CD (its namespace must then be `argocd`); without it the demo plays
    /// Argo CD's part and says so.
    pub real_argocd: bool,
}

/// What the acts came to.
#[derive(Debug, Clone, Default)]
pub struct DemoSummary {
    /// Whether the real Argo CD ran (else the demo played it).
    pub real_argocd: bool,
    pub act1_run: String,
    pub act1_phase: String,
    pub act1_cells: String,
    pub act1_comparison: String,
    pub act1_health: String,
    /// trigger-controller's record of the restart for the first run.
    pub act1_restart: String,
    /// Whether the model server first appeared once the first run had succeeded (wave 4 held).
    pub act1_server_after_run: bool,
    pub act2_run: String,
    pub act2_phase: String,
    pub act2_health: String,
    /// The run named on the InferenceService's restart annotation after act 2.
    pub restarted_by_run: Option<String>,
    pub act2_restart: String,
    /// Runs whose sync trigger-controller requested and Argo CD carried out, in order.
    pub synced_runs: Vec<String>,
    pub act3_phase: String,
    pub act3_message: String,
    pub act3_health: String,
    /// Argo CD's last operation after act 3: phase and message.
    pub act3_sync: String,
    /// Whether anything was restarted or synced for the failed run.
    pub act3_acted: bool,
    /// Whether the real KServe served the model (its predictions checked).
    pub real_kserve: bool,
    /// With the real KServe: the served model answering wrongly.
    pub act4: Option<served_model::Act4>,
}

/// Prints the timeline: seconds since the start, who, what.
pub struct Timeline {
    start: Instant,
}

impl Timeline {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    pub fn say(&self, who: &str, what: impl Display) {
        println!(
            "[{:>6.1}s] {who:<19} {what}",
            self.start.elapsed().as_secs_f64()
        );
    }

    pub fn heading(&self, text: &str) {
        println!("\n=== {text}\n");
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

/// The health Argo CD gives the NVJ by our check, evaluated in Argo CD's Lua sandbox (the
/// demo playing Argo CD; the real one reports its own).
pub fn sandbox_health(nvj: &NotebookValidationJob) -> String {
    let Some(check) = nbg_argocd_health::check_for(nbg_core::nvj::GROUP, "NotebookValidationJob")
    else {
        return "unknown (no health check)".into();
    };
    let value = serde_json::to_value(nvj).unwrap_or_default();
    match nbg_argocd_health::Sandbox::new().and_then(|s| s.evaluate(check.script, &value)) {
        Ok(h) if h.message.is_empty() => h.status,
        Ok(h) => format!("{}: {}", h.status, h.message),
        Err(e) => format!("unknown ({e})"),
    }
}

async fn ensure_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_none() {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        api.create(&PostParams::default(), &ns).await?;
    }
    Ok(())
}

fn notebooks_dir() -> PathBuf {
    repo_root().join("manifests/examples/notebooks/fraud-detection")
}

/// Replaces `from` by `to` in code cell `cell` of notebook `text`.
fn edit_cell(text: &str, cell: usize, from: &str, to: &str) -> anyhow::Result<String> {
    let mut nb: Value = serde_json::from_str(text)?;
    let source = nb
        .pointer_mut(&format!("/cells/{cell}/source"))
        .with_context(|| format!("the training notebook has no cell {cell}"))?;
    let text = source.as_str().unwrap_or_default().to_string();
    anyhow::ensure!(
        text.contains(from),
        "cell {cell} no longer contains {from:?}"
    );
    *source = Value::String(text.replace(from, to));
    Ok(serde_json::to_string_pretty(&nb)?)
}

/// The example's training notebook saving the model compressed: a change to what the model
/// server loads, with the same outputs, so it still matches its golden notebook.
fn retrained_notebook() -> anyhow::Result<String> {
    edit_cell(
        &std::fs::read_to_string(notebooks_dir().join("train.ipynb"))?,
        5,
        "\"model.joblib\"))",
        "\"model.joblib\"), compress=3)",
    )
}

/// The retrained notebook with the feature cell reading a column that the data does not have:
/// the kind of change that breaks a training run.
fn broken_notebook() -> anyhow::Result<String> {
    edit_cell(
        &retrained_notebook()?,
        2,
        "1.0 if r[\"foreign\"] else 0.0]",
        "1.0 if r[\"foreign\"] else 0.0, r[\"merchant_category\"]]",
    )
}

/// Watches the NVJ, the InferenceService and the Application and tells what changes.
struct Observer {
    last_phase: Option<String>,
    last_health: Option<String>,
    cells_told: usize,
    comparison_told: bool,
    triggers_told: BTreeMap<String, String>,
    /// The run told already: its phase and cells are not told again.
    told_run: Option<String>,
    /// Who tells Argo CD's view: "Argo CD", or "Argo CD (demo)" when the demo plays it.
    argocd_label: &'static str,
}

impl Observer {
    fn new(real_argocd: bool) -> Self {
        Self {
            argocd_label: if real_argocd {
                "Argo CD"
            } else {
                "Argo CD (demo)"
            },
            told_run: None,
            last_phase: None,
            last_health: None,
            cells_told: 0,
            comparison_told: false,
            triggers_told: BTreeMap::new(),
        }
    }

    fn tell(&mut self, t: &Timeline, nvj: &NotebookValidationJob, health: &str) {
        let status = nvj.status.clone().unwrap_or_default();
        let phase = status
            .phase
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "(none yet)".into());
        let observed = status.observed_generation == nvj.metadata.generation
            && (self.told_run.is_none() || nvj.run_id() != self.told_run);
        if observed && self.last_phase.as_deref() != Some(phase.as_str()) {
            let message = status.message.clone().unwrap_or_default();
            t.say(
                "NVJ",
                format!(
                    "phase {phase}{}",
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(" - {message}")
                    }
                ),
            );
            self.last_phase = Some(phase);
        }
        if observed && status.results.len() > self.cells_told {
            for r in &status.results[self.cells_told..] {
                let detail = r
                    .error_message
                    .clone()
                    .or_else(|| r.output.clone())
                    .unwrap_or_default();
                let detail = detail.lines().next().unwrap_or_default().to_string();
                t.say(
                    "  notebook",
                    format!(
                        "cell {:>2} (cellIndex {}) {:<8} {detail}",
                        r.cell_index + 1,
                        r.cell_index,
                        format!("{:?}", r.status)
                    ),
                );
            }
            self.cells_told = status.results.len();
        }
        if observed
            && !self.comparison_told
            && let Some(c) = &status.comparison_result
        {
            t.say(
                "  golden",
                format!(
                    "{:?}: {} of {} cells match ({:?}, tolerance per the spec)",
                    c.result, c.matched_cells, c.total_cells, c.strategy
                ),
            );
            self.comparison_told = true;
        }
        if self.last_health.as_deref() != Some(health) {
            t.say(self.argocd_label, format!("NVJ health {health}"));
            self.last_health = Some(health.to_string());
        }
        for r in &status.triggers {
            let key = format!("{} {} {}/{}", r.action, r.kind, r.namespace, r.name);
            let state = format!("{:?} {}", r.outcome, r.message.clone().unwrap_or_default());
            if self.triggers_told.get(&key) != Some(&state) {
                t.say("trigger-controller", format!("{key}: {state}"));
                self.triggers_told.insert(key, state);
            }
        }
    }

    fn new_run(&mut self, told: Option<String>) {
        self.told_run = told;
        self.last_phase = None;
        self.cells_told = 0;
        self.comparison_told = false;
    }
}

/// Polls until `done` says the act is over, telling what happens meanwhile: the NVJ, Argo CD,
/// the model server and KServe's rollout.
struct Stage<'a> {
    cluster: &'a Cluster,
    t: &'a Timeline,
    nvjs: Api<NotebookValidationJob>,
    isvcs: Api<DynamicObject>,
    deployments: Api<Deployment>,
    argocd: ArgoCd,
    observer: Observer,
    real_kserve: bool,
    /// The restart marker last told, and the one whose rollout is being followed.
    marker_told: Option<String>,
    rolling: Option<String>,
    copy_told: bool,
    isvc_told: bool,
    /// Whether the model server first appeared once the run had succeeded.
    isvc_after_success: bool,
    logs: String,
}

/// What one look found.
struct Look {
    nvj: Option<NotebookValidationJob>,
    isvc: Option<DynamicObject>,
}

impl Stage<'_> {
    async fn look(&mut self) -> anyhow::Result<Look> {
        let t = self.t;
        // Until Argo CD applies wave 3 there is no NVJ.
        let nvj = self.nvjs.get_opt(NVJ).await?;
        if let Some(nvj) = &nvj {
            let health = self.argocd.nvj_health(nvj).await?;
            self.observer.tell(t, nvj, &health);
        }
        self.argocd.tick(self.cluster, nvj.as_ref(), t).await?;
        let isvc = self.isvcs.get_opt(ISVC).await?;
        let predictor = format!("{ISVC}-predictor");
        if let Some(isvc) = &isvc {
            if !self.isvc_told {
                let created = isvc
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|c| c.0.to_string())
                    .unwrap_or_default();
                t.say(
                    "model server",
                    format!("InferenceService {ISVC} created at {created}"),
                );
                self.isvc_told = true;
                self.isvc_after_success = nvj
                    .as_ref()
                    .is_some_and(|n| n.current_phase() == Some(nbg_core::nvj::Phase::Succeeded));
                if !self.real_kserve {
                    play_kserve(&self.isvcs, "fraud-model-predictor-00001").await?;
                    t.say(
                        "KServe (demo)",
                        "fraud-model serves revision fraud-model-predictor-00001",
                    );
                }
            }
            let marker = isvc.annotations().get("mlops.dev/restarted-at").cloned();
            if marker.is_some() && marker != self.marker_told {
                let m = marker.clone().unwrap_or_default();
                t.say(
                    "model server",
                    format!("InferenceService {ISVC} annotated mlops.dev/restarted-at={m:?}"),
                );
                self.marker_told = marker.clone();
                if self.real_kserve {
                    self.rolling = marker;
                    self.copy_told = false;
                } else {
                    play_kserve(&self.isvcs, "fraud-model-predictor-00002").await?;
                    t.say("KServe (demo)", "copies the annotation into the predictor's pod template: a new revision rolled out and Ready");
                }
            }
        }
        // The real KServe: its own rollout of the predictor Deployment, as it happens.
        if let Some(marker) = self.rolling.clone()
            && let Some(d) = self.deployments.get_opt(&predictor).await?
        {
            let carries = d
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get("mlops.dev/restarted-at"))
                == Some(&marker);
            let status = d.status.clone().unwrap_or_default();
            if carries && !self.copy_told {
                t.say("KServe", format!("copies the restart into Deployment {predictor}'s pod template (generation {}): rolling out a new ReplicaSet", d.metadata.generation.unwrap_or_default()));
                self.copy_told = true;
            }
            if carries
                && rollout_done(&d)
                && isvc.as_ref().is_some_and(crate::harness::kserve::is_ready)
            {
                t.say("KServe", format!("Deployment {predictor} rolled out: {} of {} replicas updated and available, the old ReplicaSet scaled to 0; {ISVC} Ready", status.updated_replicas.unwrap_or_default(), status.replicas.unwrap_or_default()));
                self.rolling = None;
            }
        }
        Ok(Look { nvj, isvc })
    }

    /// Looks every 250 ms until `done` returns a value, for at most 5 minutes.
    async fn until<T>(
        &mut self,
        act: &str,
        mut done: impl FnMut(&Self, &NotebookValidationJob, &Look) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let look = self.look().await?;
            if let Some(nvj) = &look.nvj
                && let Some(v) = done(self, nvj, &look)
            {
                return Ok(v);
            }
            if Instant::now() > deadline {
                let status = look.nvj.and_then(|n| n.status).unwrap_or_default();
                bail!(
                    "{act} did not finish within 5 minutes: the NVJ is {:?} ({:?}), Argo CD's last operation {:?} (logs: {})",
                    status.phase,
                    status.message,
                    self.argocd.last_operation,
                    self.logs
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// KServe, played without it: the model server serves `revision`, Ready.
async fn play_kserve(isvcs: &Api<DynamicObject>, revision: &str) -> kube::Result<DynamicObject> {
    let status = json!({"status": {"observedGeneration": 1, "url": format!("http://{ISVC}.example.com"),
        "conditions": [{"type": "Ready", "status": "True"}],
        "components": {"predictor": {"latestCreatedRevision": revision, "latestReadyRevision": revision}}}});
    isvcs
        .patch_status(ISVC, &PatchParams::default(), &Patch::Merge(status))
        .await
}

/// This run's record of `action`, if final (not `InProgress`).
fn final_record(nvj: &NotebookValidationJob, run: &str, action: &str) -> Option<TriggerRecord> {
    nvj.status
        .as_ref()?
        .triggers
        .iter()
        .find(|r| r.run == run && r.action == action && r.outcome != TriggerOutcome::InProgress)
        .cloned()
}

/// `Succeeded: message` of a record.
fn said(r: &TriggerRecord) -> String {
    format!("{:?}: {}", r.outcome, r.message.clone().unwrap_or_default())
}

/// Whether the NVJ's status is of its current generation and its run ended.
fn ended(nvj: &NotebookValidationJob) -> bool {
    nvj.status.as_ref().and_then(|s| s.observed_generation) == nvj.metadata.generation
        && nvj.current_phase().is_some_and(|p| p.is_terminal())
}

/// Runs the acts; every process it starts stops when the returned future is dropped.
pub async fn run(
    cluster: &Cluster,
    config: &DemoConfig,
    t: &Timeline,
) -> anyhow::Result<DemoSummary> {
    let client = cluster.client().await;
    let ns = config.namespace.as_str();
    let argo_ns = config.argocd_namespace.as_str();
    let mut summary = DemoSummary {
        real_argocd: config.real_argocd,
        real_kserve: config.real_kserve,
        ..DemoSummary::default()
    };

    t.heading("Setting the stage");
    ensure_namespace(&client, ns).await?;
    ensure_namespace(&client, argo_ns).await?;
    // An Application an earlier demo left would sync as soon as Argo CD starts.
    let _ = cluster.kubectl(
        &[
            "delete",
            "applications.argoproj.io",
            APP,
            "-n",
            argo_ns,
            "--ignore-not-found",
        ],
        None,
    );
    let host_ip = host_ip_of(cluster)?;
    t.say(
        "node",
        format!(
            "{} runs the pods in containers (containerd, runc, the kubelet; images built here)",
            crate::harness::real_node::NODE_NAME
        ),
    );
    // The team's git server: on this machine, found by pods as the Service `git`.
    let git =
        GitServer::start_on(host_ip, &cluster.dir().join(format!("demo-git/{ns}")), None).await;
    let repo = GitRepo::create(&git, "fraud-detection");
    let read = |f: &str| std::fs::read_to_string(notebooks_dir().join(f));
    let first = repo.commit(
        &[
            ("notebooks/train.ipynb", read("train.ipynb")?),
            ("notebooks/train-golden.ipynb", read("train-golden.ipynb")?),
        ],
        "Train the fraud model",
    );
    let git_host = service_to_host(&client, host_ip, ns, "git", git.addr.port()).await?;
    let site = Site {
        notebook_repo: format!("http://{git_host}/fraud-detection.git"),
        notebook_image: project_image("notebook-runner"),
        check_served_model: config.real_kserve,
    };
    t.say("git", format!("{REPO_URL} served in the cluster at {}; commit {} adds notebooks/train.ipynb and its golden notebook", site.notebook_repo, &first[..8]));
    let _kserve = if config.real_kserve {
        let kserve = crate::harness::kserve::KServe::start(cluster)
            .context("starting the KServe manager (hack/build-binaries.sh kserve builds it; --no-kserve plays its part instead)")?;
        t.say(
            "KServe",
            format!(
                "manager running in Standard mode: the predictor is a Deployment (log {})",
                kserve.process.log.display()
            ),
        );
        Some(kserve)
    } else {
        t.say(
            "KServe (demo)",
            "not running (--no-kserve): the demo plays its part; with no model server to ask, the example's spec.modelValidation is left out",
        );
        None
    };
    let argocd = ArgoCd::start(cluster, &client, config, &git, site, t)?;
    provide_volume(cluster, &client, ns, t).await?;
    let validator = ChartedController::start(
        cluster,
        ControllerSpec {
            name: "nvj-validator",
            release_namespace: ns,
            namespaces: &[ns],
            values: &[],
            args: &[
                "--runner-image".into(),
                project_image("nvj-validator"),
                "--runner-path".into(),
                "/usr/local/bin/nvj-validator".into(),
                "--retry-backoff".into(),
                "1s".into(),
            ],
        },
    )
    .await;
    t.say(
        "nvj-validator",
        format!(
            "started under its chart's RBAC (log {})",
            validator.process.log.display()
        ),
    );
    let triggers = ChartedController::start(
        cluster,
        ControllerSpec {
            name: "trigger-controller",
            release_namespace: ns,
            namespaces: &[ns],
            // The Applications live in the demo's Argo CD namespace (played or real).
            values: &[
                format!("targetNamespaces={{{argo_ns}}}"),
                format!("global.argocd.namespace={argo_ns}"),
            ],
            args: &[],
        },
    )
    .await;
    t.say(
        "trigger-controller",
        format!(
            "started under its chart's RBAC (log {})",
            triggers.process.log.display()
        ),
    );
    let mut logs = format!(
        "{}, {}",
        validator.process.log.display(),
        triggers.process.log.display()
    );
    if let argocd::Mode::Real { argocd, .. } = &argocd.mode {
        logs.push_str(&format!(", {}", argocd.controller.log.display()));
    }
    let mut stage = Stage {
        cluster,
        t,
        nvjs: Api::namespaced(client.clone(), ns),
        isvcs: crate::harness::kserve::inference_services(&client, ns),
        deployments: Api::namespaced(client.clone(), ns),
        argocd,
        observer: Observer::new(config.real_argocd),
        real_kserve: config.real_kserve,
        marker_told: None,
        rolling: None,
        copy_told: false,
        isvc_told: false,
        isvc_after_success: false,
        logs,
    };

    // Act 1.
    t.heading("Act 1: Argo CD deploys the example; the notebook trains a model; only once its validation succeeds does the model server start");
    stage.argocd.deploy(cluster, t).await?;
    let nvj = stage
        .until("act 1", |s, nvj, look| {
            if nvj.current_phase() == Some(nbg_core::nvj::Phase::Failed) {
                return Some(nvj.clone());
            }
            let run = nvj.run_id()?;
            let restart = final_record(nvj, &run, "restart")?;
            final_record(nvj, &run, "sync")?;
            let served = look
                .isvc
                .as_ref()
                .is_some_and(crate::harness::kserve::is_ready);
            (ended(nvj)
                && restart.outcome == TriggerOutcome::Succeeded
                && s.argocd.synced_runs.contains(&run)
                && served
                && s.rolling.is_none())
            .then(|| nvj.clone())
        })
        .await?;
    let status = nvj.status.clone().unwrap_or_default();
    if nvj.current_phase() == Some(nbg_core::nvj::Phase::Failed) {
        bail!(
            "act 1: the validation failed: {:?} (logs: {})",
            status.message,
            stage.logs
        );
    }
    let run1 = nvj.run_id().unwrap_or_default();
    summary.act1_run = run1.clone();
    summary.act1_phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_default();
    let ok_cells = status
        .results
        .iter()
        .filter(|r| format!("{:?}", r.status) == "Success")
        .count();
    summary.act1_cells = format!(
        "{ok_cells} of {} code cells succeeded",
        status.results.len()
    );
    summary.act1_comparison = status
        .comparison_result
        .map(|c| {
            format!(
                "{:?}, {} of {} cells",
                c.result, c.matched_cells, c.total_cells
            )
        })
        .unwrap_or_else(|| "none".into());
    summary.act1_health = stage.argocd.nvj_health(&nvj).await?;
    summary.act1_restart = final_record(&nvj, &run1, "restart")
        .map(|r| said(&r))
        .unwrap_or_default();
    summary.act1_server_after_run = stage.isvc_after_success;

    // Act 2.
    t.heading("Act 2: a commit changes the training; the new run succeeds; the model server reloads, once");
    let second = repo.commit(
        &[("notebooks/train.ipynb", retrained_notebook()?)],
        "Save the model compressed",
    );
    t.say(
        "git",
        format!(
            "commit {} of fraud-detection: notebooks/train.ipynb saves the model compressed",
            &second[..8]
        ),
    );
    stage.observer.new_run(Some(run1.clone()));
    stage
        .argocd
        .pin_notebook(&stage.nvjs.clone(), &second, t)
        .await?;
    let nvj = stage
        .until("act 2", |s, nvj, _| {
            let run = nvj.run_id()?;
            if run == run1 || !ended(nvj) {
                return None;
            }
            if nvj.current_phase() == Some(nbg_core::nvj::Phase::Failed) {
                return Some(nvj.clone());
            }
            let restart = final_record(nvj, &run, "restart")?;
            final_record(nvj, &run, "sync")?;
            (restart.outcome != TriggerOutcome::InProgress
                && s.argocd.synced_runs.contains(&run)
                && s.rolling.is_none())
            .then(|| nvj.clone())
        })
        .await?;
    let status = nvj.status.clone().unwrap_or_default();
    let run2 = nvj.run_id().unwrap_or_default();
    summary.act2_run = run2.clone();
    summary.act2_phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_default();
    if nvj.current_phase() == Some(nbg_core::nvj::Phase::Failed) {
        bail!(
            "act 2: the validation failed: {:?} (logs: {})",
            status.message,
            stage.logs
        );
    }
    summary.act2_health = stage.argocd.nvj_health(&nvj).await?;
    summary.act2_restart = final_record(&nvj, &run2, "restart")
        .map(|r| said(&r))
        .unwrap_or_default();
    let restarted_by = |isvc: &DynamicObject| {
        isvc.annotations()
            .get("mlops.dev/restarted-at")
            .and_then(|m| m.split(' ').next().map(str::to_string))
    };
    summary.restarted_by_run = restarted_by(&stage.isvcs.get(ISVC).await?);

    // Act 3.
    t.heading(
        "Act 3: a commit breaks a cell; the run fails, turns Degraded, and nothing is restarted",
    );
    let third = repo.commit(
        &[("notebooks/train.ipynb", broken_notebook()?)],
        "Use the merchant category as a feature",
    );
    t.say(
        "git",
        format!(
            "commit {} of fraud-detection: notebooks/train.ipynb now reads r[\"merchant_category\"]",
            &third[..8]
        ),
    );
    stage.observer.new_run(Some(run2.clone()));
    stage
        .argocd
        .pin_notebook(&stage.nvjs.clone(), &third, t)
        .await?;
    let real = stage.argocd.is_real();
    let failed = stage
        .until("act 3", |s, nvj, _| {
            let run = nvj.run_id()?;
            if run == run2 || !ended(nvj) {
                return None;
            }
            // The real Argo CD's sync, which waited for the NVJ's health, failed (it retries
            // with back-off, as its default retry policy says).
            let sync_failed = !real
                || s.argocd
                    .last_operation
                    .as_ref()
                    .is_some_and(|(phase, message)| {
                        ["Failed", "Error"].contains(&phase.as_str())
                            || message.contains("completed unsuccessfully")
                    });
            sync_failed.then(|| nvj.clone())
        })
        .await?;
    // Give trigger-controller every chance to (wrongly) act on the failed run.
    let quiet = Instant::now() + Duration::from_secs(6);
    while Instant::now() < quiet {
        stage.look().await?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let failed = stage.nvjs.get(&failed.name_any()).await?;
    let status = failed.status.clone().unwrap_or_default();
    summary.act3_phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_default();
    summary.act3_message = status.message.clone().unwrap_or_default();
    summary.act3_health = stage.argocd.nvj_health(&failed).await?;
    summary.act3_sync = match (&stage.argocd.last_operation, real) {
        (Some((phase, message)), true) => format!("{phase}: {message}"),
        _ => "(played: the demo does not hold waves)".into(),
    };
    let failed_run = failed.run_id().unwrap_or_default();
    let records_for_failed = status.triggers.iter().any(|r| r.run == failed_run);
    summary.synced_runs = stage.argocd.synced_runs.clone();
    summary.act3_acted = restarted_by(&stage.isvcs.get(ISVC).await?) != summary.restarted_by_run
        || summary.synced_runs.contains(&failed_run)
        || records_for_failed;
    t.say(
        "model server",
        if summary.act3_acted {
            "was acted on for the failed run".to_string()
        } else {
            format!("untouched: still restarted by run {run2} only; no sync requested")
        },
    );
    if config.real_kserve {
        summary.act4 = Some(served_model::act4(&mut stage, &repo, &failed_run).await?);
    }
    drop(triggers);
    drop(validator);
    Ok(summary)
}

/// The real Argo CD waits for the example's claim to be Bound (its health); the local control
/// plane has no storage provisioner, so the demo provides the volume one would.
async fn provide_volume(
    cluster: &Cluster,
    client: &Client,
    ns: &str,
    t: &Timeline,
) -> anyhow::Result<()> {
    let name = format!("{ns}-fraud-models");
    // In the plane's directory: the played demo and the one with the real Argo CD run side by
    // side in the tests, each on a plane of its own, in namespaces of the same name.
    let dir = cluster.dir().join(format!("demo-volumes/{name}"));
    // One an earlier demo bound keeps that claim's uid: replaced, with what the model it held.
    let _ = cluster.kubectl(&["delete", "pv", &name, "--ignore-not-found"], None);
    let _ = std::fs::remove_dir_all(&dir);
    // As much as the example's claim asks for.
    local_persistent_volume(client, &name, "5Gi", &dir, ns, "fraud-models").await?;
    t.say(
        "storage",
        format!("PersistentVolume {name} (local, on the node) for claim {ns}/fraud-models (what a cluster's provisioner would make)"),
    );
    Ok(())
}

impl DemoSummary {
    /// Whether the acts played out as the demo promises.
    pub fn as_promised(&self) -> bool {
        let runs_synced = self.synced_runs == [self.act1_run.clone(), self.act2_run.clone()];
        self.act1_phase == "Succeeded"
            && self.act1_health.starts_with("Healthy")
            && self.act1_restart.starts_with("Succeeded")
            // With the real Argo CD wave 4 waits for the run: the model server starts with
            // its model and is not restarted.
            && (!self.real_argocd
                || (self.act1_server_after_run && self.act1_restart.contains("not restarted")))
            && self.act2_phase == "Succeeded"
            && self.act2_health.starts_with("Healthy")
            && (if self.real_kserve {
                self.act2_restart.starts_with("Succeeded: restart applied; rollout complete; the new model answered as expected: predicted [0,0,1], expected [0,0,1]")
            } else {
                self.act2_restart == "Succeeded: restart applied; rollout complete"
            })
            && self.restarted_by_run.as_deref() == Some(self.act2_run.as_str())
            && runs_synced
            && self.act3_phase == "Failed"
            && self.act3_health.starts_with("Degraded")
            && (!self.real_argocd
                || self.act3_sync.starts_with("Failed")
                || self.act3_sync.contains("completed unsuccessfully"))
            && !self.act3_acted
            && self.act4.as_ref().map_or(!self.real_kserve, served_model::Act4::as_promised)
    }

    pub fn print(&self) {
        let argo = if self.real_argocd {
            "Argo CD"
        } else {
            "Argo CD (demo)"
        };
        println!("\n=== Summary\n");
        println!(
            "Act 1  validation        {} ({}; golden comparison {})",
            self.act1_phase, self.act1_cells, self.act1_comparison
        );
        println!("       {argo:<17} NVJ {}", self.act1_health);
        println!(
            "       model server      appeared {} the run succeeded; {}",
            if self.act1_server_after_run {
                "after"
            } else {
                "before"
            },
            self.act1_restart
        );
        println!(
            "Act 2  validation        {} (run {})",
            self.act2_phase, self.act2_run
        );
        println!("       {argo:<17} NVJ {}", self.act2_health);
        println!(
            "       model server      restarted once, by run {}; {}",
            self.restarted_by_run.as_deref().unwrap_or("(none)"),
            self.act2_restart
        );
        println!(
            "       Application       synced by trigger-controller for runs {}",
            self.synced_runs.join(", ")
        );
        println!(
            "Act 3  validation        {} - {}",
            self.act3_phase, self.act3_message
        );
        println!(
            "       {argo:<17} NVJ {}; sync {}",
            self.act3_health, self.act3_sync
        );
        println!(
            "       model server      {}",
            if self.act3_acted {
                "ACTED ON (unexpected)"
            } else {
                "not restarted, no sync"
            }
        );
        match &self.act4 {
            Some(a) => {
                println!("Act 4  validation        {} (run {})", a.phase, a.run);
                println!("       model server      {}", a.restart);
                println!("       modelValidation   success {}", a.model_result);
                println!("       {argo:<17} NVJ {}", a.health);
            }
            None => println!("Act 4  (needs the real KServe: a served model answering wrongly)"),
        }
    }
}
