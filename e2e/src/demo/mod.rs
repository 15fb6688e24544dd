//! The train -> validate -> reload scenario of `just demo`, also run as an e2e test
//! (`tests/demo.rs`) so it cannot rot.
//!
//! On the local control plane: a git repository with the example's notebooks
//! (`manifests/examples/notebooks/fraud-detection/`), nvj-validator and trigger-controller as
//! local processes under their charts' RBAC, the kubelet double running validation pods (real
//! git, papermill and kernel), and `manifests/examples/fraud-detection/` applied as Argo CD
//! would. The real KServe manager (Standard mode) serves the model and rolls its predictor
//! Deployment on the restart; the demo plays Argo CD, and KServe when asked to run without it
//! (`--no-kserve`), and says so.
//!
//! Act 1: the training notebook runs and matches its golden notebook; Argo CD's health (our
//! Lua check in Argo CD's sandbox) turns Healthy; trigger-controller restarts the model server
//! and requests a sync of the Application, once. Act 2: a commit breaks a cell; the NVJ runs
//! that commit, fails, turns Degraded, and nothing is restarted.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use nbg_core::nvj::{NotebookValidationJob, TriggerOutcome};
use serde_json::{Value, json};

use crate::Cluster;
use crate::harness::cluster::{dynamic_api, notebook_python, repo_root, workspace_binary};
use crate::harness::controller::{ChartedController, ControllerSpec};
use crate::harness::git_server::{GitRepo, GitServer};
use crate::harness::kubelet::{self, KubeletConfig, PodHandling};
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

/// Polls `check` every 200 ms until it answers, or `None` after `timeout`.
async fn wait_for<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The example's names (manifests/examples/fraud-detection/).
const NVJ: &str = "train-fraud-model";
const ISVC: &str = "fraud-model";
const APP: &str = "fraud-detection";
const REPO_URL: &str = "https://git.example.com/ml/fraud-detection.git";

pub struct DemoConfig {
    /// Where the example is applied (the example's own: `fraud-detection`).
    pub namespace: String,
    /// Argo CD's namespace, where the Application lives (`argocd`).
    pub argocd_namespace: String,
    /// Run the real KServe manager (Standard mode); without it the demo plays KServe's part
    /// and says so.
    pub real_kserve: bool,
}

/// What the two acts came to.
#[derive(Debug, Clone, Default)]
pub struct DemoSummary {
    pub act1_phase: String,
    pub act1_cells: String,
    pub act1_comparison: String,
    pub act1_health: String,
    pub act1_run: String,
    /// The run named on the InferenceService's restart annotation.
    pub restarted_by_run: Option<String>,
    /// The run named in the sync operation requested on the Application.
    pub synced_by_run: Option<String>,
    pub act2_phase: String,
    pub act2_message: String,
    pub act2_health: String,
    /// Whether anything was restarted or synced for the failed run.
    pub act2_acted: bool,
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

/// The health Argo CD would assign the NVJ, from the project's check in Argo CD's Lua sandbox.
pub fn argocd_health(nvj: &NotebookValidationJob) -> String {
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

/// The example's training notebook with the feature cell reading a column that the data does
/// not have: the kind of change that breaks a training run.
fn broken_notebook() -> anyhow::Result<String> {
    let text = std::fs::read_to_string(notebooks_dir().join("train.ipynb"))?;
    let mut nb: Value = serde_json::from_str(&text)?;
    let cell = nb
        .pointer_mut("/cells/2/source")
        .context("the training notebook has no third cell")?;
    let source = cell.as_str().unwrap_or_default().replace(
        "1.0 if r[\"foreign\"] else 0.0, 1.0]",
        "1.0 if r[\"foreign\"] else 0.0, r[\"merchant_category\"], 1.0]",
    );
    *cell = Value::String(source);
    Ok(serde_json::to_string_pretty(&nb)?)
}

/// Watches the NVJ, the InferenceService and the Application and tells what changes.
struct Observer {
    last_phase: Option<String>,
    last_health: Option<String>,
    cells_told: usize,
    comparison_told: bool,
    triggers_told: BTreeMap<String, String>,
}

impl Observer {
    fn new() -> Self {
        Self {
            last_phase: None,
            last_health: None,
            cells_told: 0,
            comparison_told: false,
            triggers_told: BTreeMap::new(),
        }
    }

    fn tell(&mut self, t: &Timeline, nvj: &NotebookValidationJob) {
        let status = nvj.status.clone().unwrap_or_default();
        let phase = status
            .phase
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "(none yet)".into());
        let observed = status.observed_generation == nvj.metadata.generation;
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
        let health = argocd_health(nvj);
        if self.last_health.as_deref() != Some(health.as_str()) {
            t.say("Argo CD health", &health);
            self.last_health = Some(health);
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

    fn new_run(&mut self) {
        self.last_phase = None;
        self.cells_told = 0;
        self.comparison_told = false;
    }
}

/// Runs both acts; every process it starts stops when the returned future is dropped.
pub async fn run(
    cluster: &Cluster,
    config: &DemoConfig,
    t: &Timeline,
) -> anyhow::Result<DemoSummary> {
    let client = cluster.client().await;
    let ns = config.namespace.as_str();
    let argo_ns = config.argocd_namespace.as_str();
    let mut summary = DemoSummary::default();

    t.heading("Setting the stage");
    ensure_namespace(&client, ns).await?;
    ensure_namespace(&client, argo_ns).await?;
    let git = GitServer::start(&repo_root().join(format!("target/demo-git/{ns}")), None).await;
    let repo = GitRepo::create(&git, "fraud-detection");
    let read = |f: &str| std::fs::read_to_string(notebooks_dir().join(f));
    let first = repo.commit(
        &[
            ("notebooks/train.ipynb", read("train.ipynb")?),
            ("notebooks/train-golden.ipynb", read("train-golden.ipynb")?),
        ],
        "Train the fraud model",
    );
    t.say("git", format!("{REPO_URL} served locally at {}; commit {} adds notebooks/train.ipynb and its golden notebook", git.url("fraud-detection"), &first[..8]));
    let mirror = git.root.join("mirror.gitconfig");
    std::fs::write(
        &mirror,
        format!(
            "[url \"{}\"]\n\tinsteadOf = {REPO_URL}\n",
            git.url("fraud-detection")
        ),
    )?;

    let _kubelet = kubelet::spawn(
        client.clone(),
        KubeletConfig {
            node_env: vec![("GIT_CONFIG_GLOBAL".into(), mirror.display().to_string())],
            // KServe's model server pods only turn Ready; validation pods run for real.
            ready_only_labels: vec![("component".into(), "predictor".into())],
            ..KubeletConfig::for_test(&[ns], PodHandling::RunCommands)
        },
    );
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
            "not running (--no-kserve): the demo plays its part",
        );
        None
    };
    t.say(
        "kubelet double",
        "runs validation pods as local processes (real git, papermill and Jupyter kernel)",
    );
    let python = notebook_python();
    let validator = ChartedController::start(
        cluster,
        ControllerSpec {
            name: "nvj-validator",
            release_namespace: ns,
            namespaces: &[ns],
            values: &[],
            args: &[
                "--runner-image".into(),
                "local/nvj-validator:demo".into(),
                "--runner-path".into(),
                workspace_binary("nvj-validator").display().to_string(),
                "--notebook-python".into(),
                python.display().to_string(),
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
            values: &[format!("targetNamespaces={{{argo_ns}}}")],
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

    // Argo CD (played here): the Application, and the example applied as it syncs it, with its
    // tracking annotation on every object.
    let apps = dynamic_api(&client, argo_ns, "argoproj.io", "v1alpha1", "Application");
    let app_text = std::fs::read_to_string(
        repo_root().join("manifests/examples/fraud-detection-application.yaml"),
    )?;
    let mut app: Value = serde_saphyr::from_str(&app_text).context("the example Application")?;
    app["metadata"]["namespace"] = json!(argo_ns);
    app["spec"]["destination"]["namespace"] = json!(ns);
    let resources = json!([
        {"version": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": "fraud-models"},
        {"group": "mlops.mlops.dev", "version": "v1alpha1", "kind": "NotebookValidationJob", "namespace": ns, "name": NVJ},
        {"group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService", "namespace": ns, "name": ISVC}
    ]);
    app["status"] = json!({"sync": {"status": "Synced", "revision": first}, "health": {"status": "Progressing"},
        "resources": resources, "operationState": {"phase": "Succeeded", "operation": {"sync": {"revision": first}}}});
    let _ = apps.delete(APP, &Default::default()).await;
    let app_obj: DynamicObject = serde_json::from_value(app)?;
    apps.patch(
        APP,
        &PatchParams::apply("argocd-application-controller").force(),
        &Patch::Apply(&app_obj),
    )
    .await
    .context("creating the Application")?;
    let dir = repo_root().join("manifests/examples/fraud-detection");
    let mut manifests = String::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for f in &files {
        let mut doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(f)?)
            .with_context(|| format!("{}", f.display()))?;
        let (group, kind, name) = (
            doc["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .rsplit_once('/')
                .map(|(g, _)| g.to_string())
                .unwrap_or_default(),
            doc["kind"].as_str().unwrap_or_default().to_string(),
            doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        doc["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] =
            json!(format!("{APP}:{group}/{kind}:{ns}/{name}"));
        // The example names Argo CD's usual namespace; a run elsewhere (the e2e test) renames it.
        if let Some(trigger) =
            doc.pointer_mut("/metadata/annotations/mlops.dev~1on-success-trigger")
            && let Some(text) = trigger.as_str()
        {
            *trigger = json!(text.replace("namespace: argocd", &format!("namespace: {argo_ns}")));
        }
        manifests.push_str("---\n");
        manifests.push_str(&serde_json::to_string(&doc)?);
        manifests.push('\n');
    }
    let (ok, out, err) = cluster.kubectl(&["apply", "-n", ns, "-f", "-"], Some(&manifests));
    if !ok {
        bail!("applying manifests/examples/fraud-detection failed: {err}");
    }
    for line in out.lines() {
        t.say("Argo CD (demo)", format!("sync: {line}"));
    }
    let isvcs = crate::harness::kserve::inference_services(&client, ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let predictor = format!("{ISVC}-predictor");
    // KServe, played without it: the model server serves `revision`, Ready.
    let play_kserve = |revision: &'static str| {
        let status = json!({"status": {"observedGeneration": 1, "url": format!("http://{ISVC}.{ns}.example.com"),
            "conditions": [{"type": "Ready", "status": "True"}],
            "components": {"predictor": {"latestCreatedRevision": revision, "latestReadyRevision": revision}}}});
        let isvcs = isvcs.clone();
        async move {
            isvcs
                .patch_status(ISVC, &PatchParams::default(), &Patch::Merge(status))
                .await
        }
    };
    if config.real_kserve {
        let served = wait_for(Duration::from_secs(90), || async {
            let d = deployments.get_opt(&predictor).await.ok().flatten()?;
            let isvc = isvcs.get(ISVC).await.ok()?;
            (rollout_done(&d) && crate::harness::kserve::is_ready(&isvc)).then_some(d)
        })
        .await
        .context("KServe did not serve the model within 90 s")?;
        t.say(
            "KServe",
            format!(
                "{ISVC} Ready: Deployment {predictor} (generation {}) has its pod Ready",
                served.metadata.generation.unwrap_or_default()
            ),
        );
    } else {
        play_kserve("fraud-model-predictor-00001").await?;
        t.say(
            "KServe (demo)",
            "fraud-model serves revision fraud-model-predictor-00001",
        );
    }

    // Act 1.
    t.heading(
        "Act 1: the notebook trains a model; its validation succeeds; the model server reloads",
    );
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), ns);
    let mut observer = Observer::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut kserve_rolled = false;
    // The real KServe's rollout for this restart marker, while it is being told.
    let mut kserve_rolling: Option<String> = None;
    let mut kserve_told_copy = false;
    let mut argo_synced = false;
    let nvj = loop {
        let nvj = nvjs.get(NVJ).await?;
        observer.tell(t, &nvj);
        let run = nvj.run_id().unwrap_or_default();
        let isvc = isvcs.get(ISVC).await?;
        if !kserve_rolled && let Some(marker) = isvc.annotations().get("mlops.dev/restarted-at") {
            t.say(
                "model server",
                format!("InferenceService {ISVC} annotated mlops.dev/restarted-at={marker:?}"),
            );
            summary.restarted_by_run = marker.split(' ').next().map(str::to_string);
            if config.real_kserve {
                kserve_rolling = Some(marker.clone());
            } else {
                play_kserve("fraud-model-predictor-00002").await?;
                t.say("KServe (demo)", "copies the annotation into the predictor's pod template: revision fraud-model-predictor-00002 rolled out and Ready");
            }
            kserve_rolled = true;
        }
        // The real KServe: its own rollout of the predictor Deployment, as it happens.
        if let Some(marker) = kserve_rolling.clone()
            && let Some(d) = deployments.get_opt(&predictor).await?
        {
            let carries = d
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get("mlops.dev/restarted-at"))
                == Some(&marker);
            let status = d.status.clone().unwrap_or_default();
            if carries && !kserve_told_copy {
                t.say("KServe", format!("copies the restart into Deployment {predictor}'s pod template (generation {}): rolling out a new ReplicaSet", d.metadata.generation.unwrap_or_default()));
                kserve_told_copy = true;
            }
            if carries
                && rollout_done(&d)
                && crate::harness::kserve::is_ready(&isvcs.get(ISVC).await?)
            {
                t.say("KServe", format!("Deployment {predictor} rolled out: {} of {} replicas updated and available, the old ReplicaSet scaled to 0; {ISVC} Ready", status.updated_replicas.unwrap_or_default(), status.replicas.unwrap_or_default()));
                kserve_rolling = None;
            }
        }
        let app = apps.get(APP).await?;
        if !argo_synced
            && let Some(op) = app.data.get("operation").filter(|o| !o.is_null()).cloned()
        {
            let by = op
                .pointer("/initiatedBy/username")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let run_info = op
                .pointer("/info/0/value")
                .and_then(Value::as_str)
                .unwrap_or("?");
            t.say("Argo CD (demo)", format!("sync operation requested on Application {argo_ns}/{APP} by {by} for run {run_info}"));
            summary.synced_by_run = Some(run_info.to_string());
            apps.patch(APP, &PatchParams::default(), &Patch::Merge(json!({"operation": null,
                "status": {"operationState": {"phase": "Succeeded", "operation": op, "message": "successfully synced"}}})))
                .await?;
            t.say("Argo CD (demo)", "sync finished");
            argo_synced = true;
        }
        let status = nvj.status.clone().unwrap_or_default();
        let final_triggers = status.triggers.len() == 2
            && status
                .triggers
                .iter()
                .all(|r| r.run == run && r.outcome != TriggerOutcome::InProgress);
        if nvj.current_phase().is_some_and(|p| p.is_terminal()) && final_triggers {
            break nvj;
        }
        if nvj.current_phase() == Some(nbg_core::nvj::Phase::Failed) {
            bail!(
                "act 1: the validation failed: {:?} (validator log {})",
                status.message,
                validator.process.log.display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "act 1 did not finish within 5 minutes (logs: {}, {})",
                validator.process.log.display(),
                triggers.process.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let status = nvj.status.clone().unwrap_or_default();
    summary.act1_run = nvj.run_id().unwrap_or_default();
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
    summary.act1_health = argocd_health(&nvj);

    // Act 2.
    t.heading(
        "Act 2: a commit breaks a cell; the run fails, turns Degraded, and nothing is restarted",
    );
    let second = repo.commit(
        &[("notebooks/train.ipynb", broken_notebook()?)],
        "Use the merchant category as a feature",
    );
    t.say(
        "git",
        format!(
            "commit {}: notebooks/train.ipynb now reads r[\"merchant_category\"]",
            &second[..8]
        ),
    );
    nvjs.patch(
        NVJ,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"notebook": {"git": {"ref": second}}, "goldenNotebook": {"git": {"ref": first}}}})),
    )
    .await?;
    t.say(
        "Argo CD (demo)",
        format!(
            "sync: the NVJ now runs commit {} (a new generation, a new run)",
            &second[..8]
        ),
    );
    observer.new_run();
    let deadline = Instant::now() + Duration::from_secs(300);
    let failed = loop {
        let nvj = nvjs.get(NVJ).await?;
        observer.tell(t, &nvj);
        let observed =
            nvj.status.as_ref().and_then(|s| s.observed_generation) == nvj.metadata.generation;
        if observed && nvj.current_phase().is_some_and(|p| p.is_terminal()) {
            break nvj;
        }
        if Instant::now() > deadline {
            bail!(
                "act 2 did not finish within 5 minutes (log {})",
                validator.process.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Give trigger-controller every chance to (wrongly) act on the failed run.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let status = failed.status.clone().unwrap_or_default();
    summary.act2_phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_default();
    summary.act2_message = status.message.clone().unwrap_or_default();
    summary.act2_health = argocd_health(&failed);
    let isvc = isvcs.get(ISVC).await?;
    let marker_run = isvc
        .annotations()
        .get("mlops.dev/restarted-at")
        .and_then(|m| m.split(' ').next().map(str::to_string));
    let app = apps.get(APP).await?;
    let new_operation = app.data.get("operation").is_some_and(|o| !o.is_null());
    let failed_run = failed.run_id().unwrap_or_default();
    let records_for_failed = status.triggers.iter().any(|r| r.run == failed_run);
    summary.act2_acted =
        marker_run != summary.restarted_by_run || new_operation || records_for_failed;
    t.say(
        "model server",
        if summary.act2_acted {
            "was acted on for the failed run".to_string()
        } else {
            format!(
                "untouched: still restarted by run {} only; no sync requested",
                summary.act1_run
            )
        },
    );
    drop(triggers);
    drop(validator);
    Ok(summary)
}

impl DemoSummary {
    /// Whether the two acts played out as the demo promises.
    pub fn as_promised(&self) -> bool {
        self.act1_phase == "Succeeded"
            && self.act1_health.starts_with("Healthy")
            && self.restarted_by_run.as_deref() == Some(self.act1_run.as_str())
            && self.synced_by_run.as_deref() == Some(self.act1_run.as_str())
            && self.act2_phase == "Failed"
            && self.act2_health.starts_with("Degraded")
            && !self.act2_acted
    }

    pub fn print(&self) {
        println!("\n=== Summary\n");
        println!(
            "Act 1  validation        {} ({}; golden comparison {})",
            self.act1_phase, self.act1_cells, self.act1_comparison
        );
        println!("       Argo CD health    {}", self.act1_health);
        println!(
            "       model server      restarted once, by run {}",
            self.restarted_by_run.as_deref().unwrap_or("(none)")
        );
        println!(
            "       Application       sync requested once, for run {}",
            self.synced_by_run.as_deref().unwrap_or("(none)")
        );
        println!(
            "Act 2  validation        {} - {}",
            self.act2_phase, self.act2_message
        );
        println!("       Argo CD health    {}", self.act2_health);
        println!(
            "       model server      {}",
            if self.act2_acted {
                "ACTED ON (unexpected)"
            } else {
                "not restarted, no sync"
            }
        );
    }
}
