//! Argo CD in the demo: the real one (the pinned build as local processes, syncing the example
//! from a git repository the demo commits to), or - with `--no-argocd` - played by the demo,
//! which says so on every line it plays.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use nbg_core::nvj::NotebookValidationJob;
use serde_json::{Value, json};

use super::{APP, ISVC, NVJ, Timeline, sandbox_health};
use crate::Cluster;
use crate::harness::argocd::{ARGOCD_NAMESPACE, RealArgoCd, applications};
use crate::harness::cluster::repo_root;
use crate::harness::git_server::{GitRepo, GitServer};

/// Where the example's manifests live, in this repository and in the demo's deploy repository.
const EXAMPLE_DIR: &str = "manifests/examples/fraud-detection";
/// Who trigger-controller's sync operations are initiated by.
const TRIGGER_CONTROLLER: &str = "trigger-controller";

/// Where the example meets this machine: the demo's cluster has no `git.example.com` and no
/// registry, so the NVJ clones the notebooks from the demo's git server (by its Service's cluster
/// DNS name) and runs in the notebook-runner image built here.
pub struct Site {
    /// The notebooks repository's URL for pods.
    pub notebook_repo: String,
    /// The notebook image on the node.
    pub notebook_image: String,
    /// A model server answers (the real KServe): the example's `spec.modelValidation` stays.
    pub check_served_model: bool,
}

impl Site {
    /// The example's NVJ as deployed here (other objects as they are).
    fn localise(&self, doc: &mut Value) {
        if !is_kind(doc, "NotebookValidationJob") {
            return;
        }
        for source in ["notebook", "goldenNotebook"] {
            if let Some(url) = doc.pointer_mut(&format!("/spec/{source}/git/url")) {
                *url = json!(self.notebook_repo);
            }
        }
        doc["spec"]["podConfig"]["containerImage"] = json!(self.notebook_image);
        doc["spec"]["podConfig"]["imagePullPolicy"] = json!("IfNotPresent");
        if !self.check_served_model
            && let Some(spec) = doc["spec"].as_object_mut()
        {
            spec.remove("modelValidation");
        }
    }
}

/// The example's manifests as committed: (file name, object).
fn example_manifests_as_committed() -> anyhow::Result<Vec<(String, Value)>> {
    let dir = repo_root().join(EXAMPLE_DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(f)?)
                .with_context(|| format!("{}", f.display()))?;
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((name, doc))
        })
        .collect()
}

fn is_kind(doc: &Value, kind: &str) -> bool {
    doc["kind"] == kind
}

/// The example Application (`manifests/examples/fraud-detection-application.yaml`).
fn example_application() -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(
        repo_root().join("manifests/examples/fraud-detection-application.yaml"),
    )?;
    serde_saphyr::from_str(&text).context("the example Application")
}

/// What Argo CD last reported, to tell only changes.
#[derive(Default)]
struct Told {
    operation: Option<String>,
    app: Option<String>,
}

pub enum Mode {
    Real {
        argocd: Box<RealArgoCd>,
        /// The repository the Application syncs from (`fraud-detection-deploy`).
        deploy: GitRepo,
    },
    /// Played: wave 4 is applied once the NVJ's health (our check in Argo CD's Lua sandbox)
    /// is Healthy, and requested syncs are marked done.
    Played { wave4_applied: bool },
}

/// Argo CD as the demo drives and watches it.
pub struct ArgoCd {
    pub mode: Mode,
    site: Site,
    apps: Api<DynamicObject>,
    cluster_ns: String,
    argo_ns: String,
    told: Told,
    /// Runs whose sync trigger-controller requested and Argo CD (or the demo playing it)
    /// carried out, in order.
    pub synced_runs: Vec<String>,
    /// The last operation's phase and message, as Argo CD wrote them.
    pub last_operation: Option<(String, String)>,
}

impl ArgoCd {
    /// Starts the real Argo CD (its CRDs, config and our `argocd-cm` patch, redis, repo-server,
    /// application controller) in `argocd`, or prepares to play it.
    pub fn start(
        cluster: &Cluster,
        client: &Client,
        config: &super::DemoConfig,
        git: &GitServer,
        site: Site,
        t: &Timeline,
    ) -> anyhow::Result<Self> {
        let (ns, argo_ns) = (config.namespace.as_str(), config.argocd_namespace.as_str());
        let mode = if config.real_argocd {
            if argo_ns != ARGOCD_NAMESPACE {
                bail!("the real Argo CD runs in namespace {ARGOCD_NAMESPACE}, not {argo_ns}");
            }
            let argocd = RealArgoCd::start(cluster).context(
                "starting the real Argo CD (hack/build-binaries.sh argocd builds it; --no-argocd plays its part instead)",
            )?;
            t.say(
                "Argo CD",
                format!(
                    "application-controller and repo-server running (the pinned build; logs {} and {})",
                    argocd.controller.log.display(),
                    argocd.repo_server.log.display()
                ),
            );
            Mode::Real {
                argocd: Box::new(argocd),
                deploy: GitRepo::create(git, "fraud-detection-deploy"),
            }
        } else {
            t.say(
                "Argo CD (demo)",
                "not running (--no-argocd): the demo plays its part",
            );
            Mode::Played {
                wave4_applied: false,
            }
        };
        Ok(Self {
            mode,
            site,
            apps: applications(client, argo_ns),
            cluster_ns: ns.to_string(),
            argo_ns: argo_ns.to_string(),
            told: Told::default(),
            synced_runs: Vec::new(),
            last_operation: None,
        })
    }

    /// The example's manifests as this cluster runs them.
    fn example_manifests(&self) -> anyhow::Result<Vec<(String, Value)>> {
        let mut manifests = example_manifests_as_committed()?;
        for (_, doc) in &mut manifests {
            self.site.localise(doc);
        }
        Ok(manifests)
    }

    pub fn is_real(&self) -> bool {
        matches!(self.mode, Mode::Real { .. })
    }

    /// Deploys the example: the real Argo CD syncs the Application from the deploy repository
    /// (waves 1, 3 and 4, each after the last is healthy); played, waves 1 and 3 are applied
    /// now and wave 4 once the NVJ is healthy.
    pub async fn deploy(&mut self, cluster: &Cluster, t: &Timeline) -> anyhow::Result<()> {
        let mut app = example_application()?;
        app["metadata"]["namespace"] = json!(self.argo_ns);
        app["spec"]["destination"]["namespace"] = json!(self.cluster_ns);
        match &self.mode {
            Mode::Real { deploy, .. } => {
                let files: Vec<(String, String)> = self
                    .example_manifests()?
                    .into_iter()
                    .map(|(name, doc)| {
                        Ok((
                            format!("{EXAMPLE_DIR}/{name}"),
                            serde_json::to_string_pretty(&doc)?,
                        ))
                    })
                    .collect::<anyhow::Result<_>>()?;
                let files: Vec<(&str, String)> =
                    files.iter().map(|(p, c)| (p.as_str(), c.clone())).collect();
                let commit = deploy.commit(&files, "Deploy the fraud model");
                t.say(
                    "git",
                    format!(
                        "commit {} of fraud-detection-deploy adds {EXAMPLE_DIR}/ as in this repository, the NVJ's notebooks at {} in {}",
                        &commit[..8], self.site.notebook_repo, self.site.notebook_image
                    ),
                );
                // The example names the team's git host; the demo's repository is on this disk.
                app["spec"]["source"]["repoURL"] = json!(deploy.file_url());
                let app: DynamicObject = serde_json::from_value(app)?;
                self.apps
                    .create(&PostParams::default(), &app)
                    .await
                    .context("creating the Application")?;
                t.say(
                    "Argo CD",
                    format!(
                        "Application {}/{APP} created from manifests/examples/fraud-detection-application.yaml (automated sync; repoURL: the demo's repository)",
                        self.argo_ns
                    ),
                );
            }
            Mode::Played { .. } => {
                let resources = json!([
                    {"version": "v1", "kind": "PersistentVolumeClaim", "namespace": self.cluster_ns, "name": "fraud-models"},
                    {"group": "mlops.mlops.dev", "version": "v1alpha1", "kind": "NotebookValidationJob", "namespace": self.cluster_ns, "name": NVJ},
                    {"group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService", "namespace": self.cluster_ns, "name": ISVC}
                ]);
                app["status"] = json!({"sync": {"status": "Synced"}, "health": {"status": "Progressing"},
                    "resources": resources, "operationState": {"phase": "Succeeded", "operation": {"sync": {}}}});
                let app: DynamicObject = serde_json::from_value(app)?;
                self.apps
                    .patch(
                        APP,
                        &PatchParams::apply("argocd-application-controller").force(),
                        &Patch::Apply(&app),
                    )
                    .await
                    .context("creating the Application")?;
                self.apply_waves(cluster, t, |doc| !is_kind(doc, "InferenceService"))?;
            }
        }
        Ok(())
    }

    /// Played: applies the example's objects `which` selects, with Argo CD's tracking
    /// annotation, as its sync would.
    fn apply_waves(
        &self,
        cluster: &Cluster,
        t: &Timeline,
        which: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<()> {
        let ns = &self.cluster_ns;
        let mut manifests = String::new();
        for (_, mut doc) in self.example_manifests()? {
            if !which(&doc) {
                continue;
            }
            let group = doc["apiVersion"]
                .as_str()
                .and_then(|v| v.rsplit_once('/'))
                .map(|(g, _)| g.to_string())
                .unwrap_or_default();
            let (kind, name) = (
                doc["kind"].as_str().unwrap_or_default().to_string(),
                doc["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            doc["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] =
                json!(format!("{APP}:{group}/{kind}:{ns}/{name}"));
            // The example names Argo CD's usual namespace; a run elsewhere (the e2e test)
            // renames it.
            if let Some(trigger) =
                doc.pointer_mut("/metadata/annotations/mlops.dev~1on-success-trigger")
                && let Some(text) = trigger.as_str()
            {
                *trigger = json!(
                    text.replace("namespace: argocd", &format!("namespace: {}", self.argo_ns))
                );
            }
            manifests.push_str("---\n");
            manifests.push_str(&serde_json::to_string(&doc)?);
            manifests.push('\n');
        }
        let (ok, out, err) = cluster.kubectl(&["apply", "-n", ns, "-f", "-"], Some(&manifests));
        if !ok {
            bail!("applying {EXAMPLE_DIR} failed: {err}");
        }
        for line in out.lines() {
            t.say("Argo CD (demo)", format!("sync: {line}"));
        }
        Ok(())
    }

    /// Pins the NVJ to notebook commit `commit`: the real Argo CD syncs a commit of the deploy
    /// repository that says so; played, the NVJ is changed as that sync would.
    /// The real Argo CD retries a failed sync operation (the example's retry policy, with
    /// back-off) and starts no other while it does: the next commit waits for the retries. The
    /// demo stops them as a user does with `argocd app terminate-op` (which sets the operation's
    /// phase to Terminating), and waits until the operation has ended.
    pub async fn stop_retrying(&mut self, t: &Timeline) -> anyhow::Result<()> {
        if !self.is_real() {
            return Ok(());
        }
        let phase = |app: &DynamicObject| {
            app.data
                .pointer("/status/operationState/phase")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let app = self.apps.get(APP).await?;
        if phase(&app) != "Running" {
            return Ok(());
        }
        self.apps
            .patch(
                APP,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"operationState": {"phase": "Terminating"}}})),
            )
            .await?;
        t.say(
            "Argo CD",
            "the failed sync's retries terminated (as `argocd app terminate-op fraud-detection` does)",
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while ["Running", "Terminating"].contains(&phase(&self.apps.get(APP).await?).as_str()) {
            if Instant::now() > deadline {
                bail!("Argo CD's operation did not end within 60 s of its termination");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }

    pub async fn pin_notebook(
        &mut self,
        nvjs: &Api<NotebookValidationJob>,
        commit: &str,
        t: &Timeline,
    ) -> anyhow::Result<()> {
        match &self.mode {
            Mode::Real { deploy, .. } => {
                let (file, mut doc) = self
                    .example_manifests()?
                    .into_iter()
                    .find(|(_, d)| is_kind(d, "NotebookValidationJob"))
                    .context("the example has no NVJ")?;
                doc["spec"]["notebook"]["git"]["ref"] = json!(commit);
                let sha = deploy.commit(
                    &[(
                        &format!("{EXAMPLE_DIR}/{file}"),
                        serde_json::to_string_pretty(&doc)?,
                    )],
                    &format!("Train with notebooks commit {}", &commit[..8]),
                );
                t.say(
                    "git",
                    format!(
                        "commit {} of fraud-detection-deploy: {NVJ} runs notebooks commit {}",
                        &sha[..8],
                        &commit[..8]
                    ),
                );
                // What the git host's webhook does; without one Argo CD looks every 3 minutes.
                self.apps
                    .patch(
                        APP,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}})),
                    )
                    .await?;
                t.say(
                    "Argo CD",
                    "refresh requested (as the git host's webhook would)",
                );
            }
            Mode::Played { .. } => {
                nvjs.patch(
                    NVJ,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"notebook": {"git": {"ref": commit}}}})),
                )
                .await?;
                t.say(
                    "Argo CD (demo)",
                    format!(
                        "sync: the NVJ now runs commit {} (a new generation, a new run)",
                        &commit[..8]
                    ),
                );
            }
        }
        Ok(())
    }

    /// The NVJ's health as Argo CD shows it: the real one's `status.resources` entry, or our
    /// check in Argo CD's Lua sandbox when played.
    pub async fn nvj_health(&self, nvj: &NotebookValidationJob) -> anyhow::Result<String> {
        if !self.is_real() {
            return Ok(sandbox_health(nvj));
        }
        let Mode::Real { argocd, .. } = &self.mode else {
            return Ok(sandbox_health(nvj));
        };
        Ok(
            match argocd
                .health(&self.apps, APP, "NotebookValidationJob", NVJ)
                .await
            {
                Some(h) if !h.message.is_empty() => format!("{}: {}", h.status, h.message),
                Some(h) => h.status,
                None => "(not yet assessed)".to_string(),
            },
        )
    }

    /// Looks at Argo CD once: the real one's operation and Application status, told when they
    /// change; played, wave 4 once the NVJ is healthy and any requested sync.
    pub async fn tick(
        &mut self,
        cluster: &Cluster,
        nvj: Option<&NotebookValidationJob>,
        t: &Timeline,
    ) -> anyhow::Result<()> {
        let app = self.apps.get(APP).await?;
        let text = |p: &str| {
            app.data
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        if self.is_real() {
            let by = text("/status/operationState/operation/initiatedBy/username");
            let run = text("/status/operationState/operation/info/0/value");
            let automated = app
                .data
                .pointer("/status/operationState/operation/initiatedBy/automated")
                == Some(&json!(true));
            let who = if !run.is_empty() {
                format!("sync by {by} for run {run}")
            } else if automated || by.is_empty() {
                "automated sync".to_string()
            } else {
                format!("sync by {by}")
            };
            let op = format!(
                "{who}: {} {}",
                text("/status/operationState/phase"),
                text("/status/operationState/message")
            );
            if !text("/status/operationState/phase").is_empty()
                && self.told.operation.as_deref() != Some(op.as_str())
            {
                t.say("Argo CD", &op);
                self.told.operation = Some(op);
            }
            let phase = text("/status/operationState/phase");
            if !phase.is_empty() {
                self.last_operation = Some((phase.clone(), text("/status/operationState/message")));
            }
            if by == TRIGGER_CONTROLLER
                && phase == "Succeeded"
                && !run.is_empty()
                && !self.synced_runs.contains(&run)
            {
                self.synced_runs.push(run);
            }
            let state = format!(
                "{}, {}",
                text("/status/sync/status"),
                text("/status/health/status")
            );
            if state != ", " && self.told.app.as_deref() != Some(state.as_str()) {
                t.say("Argo CD", format!("Application {APP}: {state}"));
                self.told.app = Some(state);
            }
            return Ok(());
        }
        // Played.
        if let Mode::Played { wave4_applied } = &self.mode
            && !wave4_applied
            && nvj.is_some_and(|nvj| sandbox_health(nvj).starts_with("Healthy"))
        {
            self.apply_waves(cluster, t, |doc| is_kind(doc, "InferenceService"))?;
            self.mode = Mode::Played {
                wave4_applied: true,
            };
        }
        if let Some(op) = app.data.get("operation").filter(|o| !o.is_null()).cloned() {
            let by = op
                .pointer("/initiatedBy/username")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            let run = op
                .pointer("/info/0/value")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            t.say(
                "Argo CD (demo)",
                format!(
                    "sync operation requested on Application {}/{APP} by {by} for run {run}",
                    self.argo_ns
                ),
            );
            self.apps
                .patch(APP, &PatchParams::default(), &Patch::Merge(json!({"operation": null,
                    "status": {"operationState": {"phase": "Succeeded", "operation": op, "message": "successfully synced"}}})))
                .await?;
            t.say("Argo CD (demo)", "sync finished");
            if by == TRIGGER_CONTROLLER {
                self.synced_runs.push(run);
            }
        }
        Ok(())
    }
}
