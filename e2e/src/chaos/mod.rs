//! All five controllers together under faults (`hack/just chaos`, and a short form in
//! `tests/chaos.rs`): on a control plane of its own whose API server closes watches every
//! 10-20 s and whose node is real (`RealNode`: validation pods run the notebook-runner image),
//! the controllers run under their charts' RBAC while a workload of real notebook runs
//! ([`workload`]) goes on in several namespaces, and faults ([`faults`]) hit them: SIGKILLs of
//! each controller, API server restarts, etcd paused. Then, from the API server's own state,
//! [`invariants`] says what must hold - each with its counts.

pub mod faults;
pub mod invariants;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use nbg_core::nvj::NotebookValidationJob;
use serde_json::{Value, json};

use crate::bench::rss_kib;
use crate::harness::argocd::applications;
use crate::harness::cluster::repo_root;
use crate::harness::controller::{ChartedController, ControllerSpec};
use crate::harness::git_server::{GitRepo, GitServer, notebook};
use crate::harness::real_node::RealNode;
use faults::{FaultCounts, Faults, Replica};
use invariants::Invariant;
use workload::{Deleted, Hostile, Planned, Rng};

/// The API server's audit log keeps every write to a Deployment (not its status), so the
/// invariants can count trigger-controller's requests as well as their effect.
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete]
    resources:
      - group: apps
        resources: [deployments]
  - level: None
"#;

/// Where Argo CD's Applications live (played: the run writes their `status.resources`).
const ARGOCD: &str = "argocd";
/// Where the controllers' releases live.
const SYSTEM: &str = "nbg-system";

pub struct ChaosConfig {
    /// How long the workload and the faults go on; then the run waits for the controllers to
    /// settle and checks.
    pub duration: Duration,
    pub seed: u64,
    /// Team namespaces, each with an Application.
    pub namespaces: usize,
    /// A new NVJ this often (in a random namespace)...
    pub create_every: Duration,
    /// ...while fewer than this many NVJs have not ended (0: no limit). On a loaded machine runs
    /// take longer, so more of them run at once and load it further: 33 notebook runs at once
    /// (a load of 75 on 2 cores) once kept the short form's runs past their timeouts.
    pub max_running: usize,
    /// Faults this often on average.
    pub fault_every: Duration,
}

/// What a run came to.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub ran_for: Duration,
    pub nvjs: usize,
    pub deleted: usize,
    pub faults: FaultCounts,
    pub invariants: Vec<Invariant>,
    /// Per controller: resident memory in KiB - the most seen, after the first quarter of the
    /// run, and at the end.
    pub memory: BTreeMap<String, (u64, u64, u64)>,
    /// NVJs that existed after the first quarter of the run and at its end (made, not deleted).
    pub live: (usize, usize),
    /// How long after the workload stopped every invariant held (or the wait ran out).
    pub settled_after: Duration,
}

impl Report {
    pub fn violations(&self) -> usize {
        self.invariants.iter().map(|i| i.violations.len()).sum()
    }

    pub fn print(&self) {
        println!(
            "\n=== chaos run: seed {} (NBG_CHAOS_SEED replays it)\n",
            self.seed
        );
        println!(
            "ran {:.0} s with {} NVJs; faults: {}",
            self.ran_for.as_secs_f64(),
            self.nvjs,
            self.faults
        );
        println!(
            "settled {:.1} s after the workload stopped\n",
            self.settled_after.as_secs_f64()
        );
        for i in &self.invariants {
            println!(
                "{:<60} {:>5} checked, {} violations",
                i.name,
                i.checked,
                i.violations.len()
            );
            for v in i.violations.iter().take(10) {
                println!("    - {v}");
            }
            for n in &i.notes {
                println!("    ({n})");
            }
        }
        println!(
            "\nmemory (RSS, MiB: most / after the first quarter / at the end), with {} / {} NVJs live then and {} deleted in all",
            self.live.0, self.live.1, self.deleted
        );
        for (name, (most, quarter, end)) in &self.memory {
            let mib = |k: u64| k as f64 / 1024.0;
            println!(
                "  {name:<24} {:>6.1} / {:>6.1} / {:>6.1}",
                mib(*most),
                mib(*quarter),
                mib(*end)
            );
        }
        println!("\n{} violations in all", self.violations());
        if self.violations() > 0 {
            println!("the first:\n{}", self.violations_summary(5));
        }
    }

    /// The violations, each after its invariant's name, at most `n`: repeated at the end of the
    /// output (and in the test's failure message), where a CI log's tail shows it.
    pub fn violations_summary(&self, n: usize) -> String {
        self.invariants
            .iter()
            .flat_map(|i| i.violations.iter().map(move |v| format!("{}: {v}", i.name)))
            .take(n)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The notebooks every NVJ runs, in a git repository served over HTTP.
fn notebooks(git: &GitServer) -> GitRepo {
    let repo = GitRepo::create(git, "notebooks");
    repo.commit(
        &[
            (
                workload::PASSING,
                notebook(&["accuracy = 0.93", "assert accuracy > 0.9"]),
            ),
            (
                workload::FAILING,
                notebook(&["rows = []", "raise ValueError('training data is empty')"]),
            ),
            (
                workload::SLOW,
                notebook(&["import time", "time.sleep(6)", "done = True"]),
            ),
        ],
        "notebooks",
    );
    repo
}

/// How many replicas of each controller run: two where a second one stands by for the Lease
/// (the leader is killed then and again), one elsewhere - both as the charts deploy them, with
/// leader election on (the charts' default).
const REPLICAS: [(&str, usize); 5] = [
    ("nvj-validator", 2),
    ("trigger-controller", 2),
    ("wave-marker", 1),
    ("app-status-aggregator", 1),
    ("event-notifier", 2),
];

async fn start_controllers(node: &RealNode, teams: &[&str]) -> Vec<Replica> {
    let cluster = &node.plane.cluster;
    let mut validator_args = node.validator_args();
    validator_args.extend(["--max-retries".to_string(), "0".to_string()]);
    let notifier_args = ["--state-namespace".to_string(), SYSTEM.to_string()];
    let mut replicas = Vec::new();
    for (name, of) in REPLICAS {
        let mut values = vec!["leaderElection=true".to_string()];
        if name == "app-status-aggregator" {
            values.push(format!("global.argocd.namespace={ARGOCD}"));
            values.push(format!("global.argocd.applicationNamespaces={{{ARGOCD}}}"));
        }
        for n in 0..of {
            let identity = if of > 1 {
                format!("{name}-{n}")
            } else {
                name.to_string()
            };
            // The Lease lives in the release namespace (the chart's POD_NAMESPACE); the identity
            // is the pod's name, kept across a restart as a container restart keeps it.
            let mut args = vec![
                "--lease-namespace".to_string(),
                SYSTEM.to_string(),
                "--leader-identity".to_string(),
                identity.clone(),
            ];
            match name {
                "nvj-validator" => args.extend(validator_args.iter().cloned()),
                "event-notifier" => args.extend(notifier_args.iter().cloned()),
                _ => {}
            }
            let controller = ChartedController::start(
                cluster,
                ControllerSpec {
                    name,
                    release_namespace: SYSTEM,
                    namespaces: teams,
                    values: &values,
                    args: &args,
                },
            )
            .await;
            replicas.push(Replica {
                controller,
                identity,
                of,
            });
        }
    }
    replicas
}

/// More ended NVJs than this in a namespace and the oldest is deleted.
const LIVE_PER_NAMESPACE: usize = 25;

/// The NVJ to delete now, if any: the oldest of a namespace over [`LIVE_PER_NAMESPACE`], or
/// now and then the oldest of all; never one whose spec change is still to come.
fn deletable(
    planned: &[Planned],
    deleted: &[Deleted],
    to_change: &BTreeSet<(String, String)>,
    rng: &mut Rng,
) -> Option<Planned> {
    let gone = |p: &Planned| {
        deleted
            .iter()
            .any(|d| d.namespace == p.namespace && d.name == p.name)
            || to_change.contains(&(p.namespace.clone(), p.name.clone()))
    };
    let mut live: BTreeMap<&str, usize> = BTreeMap::new();
    for p in planned.iter().filter(|p| !gone(p)) {
        *live.entry(p.namespace.as_str()).or_default() += 1;
    }
    let crowded = live
        .iter()
        .find(|(_, n)| **n > LIVE_PER_NAMESPACE)
        .map(|(ns, _)| ns.to_string());
    match crowded {
        Some(ns) => planned
            .iter()
            .find(|p| p.namespace == ns && !gone(p))
            .cloned(),
        None if rng.chance(5) => planned.iter().find(|p| !gone(p)).cloned(),
        None => None,
    }
}

/// How many NVJs in `namespaces` have not ended (their current generation's run); None when the
/// API server does not answer.
async fn running_nvjs(client: &Client, namespaces: &[String]) -> Option<usize> {
    let mut running = 0;
    for ns in namespaces {
        let api: Api<NotebookValidationJob> = Api::namespaced(client.clone(), ns);
        let list = api.list(&Default::default()).await.ok()?;
        running += list
            .items
            .iter()
            .filter(|n| !n.current_phase().is_some_and(|p| p.is_terminal()))
            .count();
    }
    Some(running)
}

/// What `n` came to, if it has ended at its current generation and its trigger is done with.
fn ended(n: &NotebookValidationJob, p: &Planned) -> Option<Deleted> {
    let status = n.status.as_ref()?;
    let phase = status.phase.filter(|ph| ph.is_terminal())?;
    if status.observed_generation != n.metadata.generation {
        return None;
    }
    let run = n.run_id()?;
    let records = invariants::records_of_run(n, &run);
    let succeeded_records = records
        .iter()
        .filter(|r| r.outcome == nbg_core::nvj::TriggerOutcome::Succeeded)
        .count();
    // A succeeded run's restart is still being applied or rolled out: not yet.
    if p.restart.is_some() && phase == nbg_core::nvj::Phase::Succeeded && succeeded_records == 0 {
        return None;
    }
    Some(Deleted {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        uid: n.metadata.uid.clone()?,
        run,
        phase,
        records: records.len(),
        succeeded_records,
    })
}

/// The Application of each team lists exactly these NVJs, as Argo CD does after a sync.
async fn list_in_application(
    apps: &Api<DynamicObject>,
    ns: &str,
    names: &BTreeSet<String>,
) -> kube::Result<()> {
    let resources: Vec<Value> = names
        .iter()
        .map(|n| json!({"group": "mlops.mlops.dev", "version": "v1alpha1", "kind": "NotebookValidationJob", "namespace": ns, "name": n, "status": "Synced"}))
        .collect();
    apps.patch(
        &workload::application_for(ns),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}, "resources": resources}})),
    )
    .await
    .map(|_| ())
}

/// Creates `manifest` in `ns` (kind from the manifest), or the API server's message.
async fn create(client: &Client, ns: &str, manifest: &Value) -> Result<(), String> {
    let obj: DynamicObject = serde_json::from_value(manifest.clone()).map_err(|e| e.to_string())?;
    let api = match manifest["kind"].as_str() {
        Some("Deployment") => {
            crate::harness::cluster::dynamic_api(client, ns, "apps", "v1", "Deployment")
        }
        _ => crate::harness::cluster::dynamic_api(
            client,
            ns,
            "mlops.mlops.dev",
            "v1alpha1",
            "NotebookValidationJob",
        ),
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs the workload and the faults for `config.duration`, lets the controllers settle, and
/// checks the invariants.
pub async fn run(config: &ChaosConfig) -> anyhow::Result<Report> {
    let audit = repo_root().join(format!("target/chaos-audit/{}", std::process::id()));
    std::fs::create_dir_all(&audit).with_context(|| format!("creating {audit:?}"))?;
    let policy = audit.join("policy.yaml");
    std::fs::write(&policy, AUDIT_POLICY).with_context(|| format!("writing {policy:?}"))?;
    let audit_log = audit.join("audit.log");
    let node = RealNode::start_with_args(
        &format!("chaos-{}", std::process::id()),
        &[
            "--min-request-timeout=10",
            &format!("--audit-policy-file={}", policy.display()),
            &format!("--audit-log-path={}", audit_log.display()),
        ],
    )?;
    let plane = &node.plane;
    let cluster = &plane.cluster;
    let client = cluster.client().await;
    let teams: Vec<String> = (0..config.namespaces.max(1))
        .map(|i| format!("team-{i}"))
        .collect();
    let team_refs: Vec<&str> = teams.iter().map(String::as_str).collect();
    for ns in teams.iter().map(String::as_str).chain([ARGOCD, SYSTEM]) {
        cluster
            .kubectl_ok(&["create", "namespace", ns], None)
            .with_context(|| format!("namespace {ns}"))?;
    }
    let git = GitServer::start_on(
        node.host_ip,
        &repo_root().join(format!("target/chaos-git/{}", std::process::id())),
        None,
    )
    .await;
    let notebooks_url = {
        let _repo = notebooks(&git);
        // Pods of every team reach it by this Service's name.
        let service = node
            .service_to_host(&client, SYSTEM, "git", git.addr.port())
            .await?;
        format!("http://{service}/notebooks.git")
    };
    let apps = applications(&client, ARGOCD);
    for ns in &teams {
        let app: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": workload::application_for(ns)},
            "spec": {"project": "default", "source": {"repoURL": "https://git.example/ml.git", "path": ns, "targetRevision": "main"},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": ns}}}))?;
        apps.create(&PostParams::default(), &app).await?;
    }
    let mut controllers = start_controllers(&node, &team_refs).await;
    let mut faults = Faults::new(config.seed, config.fault_every);
    let mut rng = Rng::new(config.seed.rotate_left(17));

    // Hostile objects first, in the first team's namespace; the targets they name exist.
    let hostile_ns = teams[0].clone();
    let other_ns = teams.get(1).unwrap_or(&teams[0]).clone();
    let hostile: Vec<Hostile> = workload::hostile(&notebooks_url, &hostile_ns, &other_ns);
    let mut refused: BTreeMap<String, String> = BTreeMap::new();
    let mut listed: BTreeMap<String, BTreeSet<String>> =
        teams.iter().map(|t| (t.clone(), BTreeSet::new())).collect();
    for u in hostile.iter().filter_map(|h| h.untouched.as_ref()) {
        create(&client, &u.namespace, &u.manifest)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    for h in &hostile {
        match create(&client, &hostile_ns, &h.manifest).await {
            Ok(()) => {
                if let Some(names) = listed.get_mut(&hostile_ns) {
                    names.insert(h.name.clone());
                }
            }
            Err(message) => {
                refused.insert(h.name.clone(), message);
            }
        }
    }

    let mut planned: Vec<Planned> = Vec::new();
    let mut deleted: Vec<Deleted> = Vec::new();
    let mut to_change: BTreeSet<(String, String)> = BTreeSet::new();
    let mut dirty: BTreeSet<String> = teams.iter().cloned().collect();
    let mut memory: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut next_create = Instant::now();
    let mut next_sample = Instant::now();
    let mut live = (0, 0);
    let mut next_progress = Instant::now() + Duration::from_secs(60);
    // Counted from the workload's start: setting up takes longer than a quarter of a short run.
    let workload_started = Instant::now();
    let quarter = workload_started + config.duration / 4;
    let deadline = workload_started + config.duration;
    while Instant::now() < deadline {
        if Instant::now() >= next_create
            && (config.max_running == 0
                || running_nvjs(&client, &teams)
                    .await
                    .is_some_and(|n| n < config.max_running))
        {
            let ns = teams[rng.below(teams.len() as u64) as usize].clone();
            let p = Planned::random(&mut rng, &ns, planned.len());
            let made = match &p.restart {
                Some(t) => create(&client, &ns, &workload::target(t)).await.is_ok(),
                None => true,
            } && create(&client, &ns, &p.manifest(&notebooks_url))
                .await
                .is_ok();
            // Refused during an outage: the next tick tries another.
            if made {
                if p.changed_mid_run {
                    to_change.insert((ns.clone(), p.name.clone()));
                }
                if let Some(names) = listed.get_mut(&ns) {
                    names.insert(p.name.clone());
                }
                dirty.insert(ns);
                planned.push(p);
            }
            next_create = Instant::now() + config.create_every;
        }
        // Spec changes while the first run runs: a new generation, a new run.
        for (ns, name) in to_change.clone() {
            let api: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &ns);
            let Ok(nvj) = api.get(&name).await else {
                continue;
            };
            let running = nvj
                .status
                .as_ref()
                .and_then(|s| s.phase.as_ref())
                .is_some_and(|p| format!("{p:?}") == "ValidationRunning");
            if running
                && api
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"notebook": {"path": workload::PASSING}}})),
                    )
                    .await
                    .is_ok()
            {
                to_change.remove(&(ns, name));
            }
        }
        // Ended NVJs are deleted (and leave their Application): now and then, and always the
        // oldest once a namespace holds more than LIVE_PER_NAMESPACE, so the live set levels
        // off and memory must too - whatever it grew by is what deleted objects left behind.
        if let Some(p) = deletable(&planned, &deleted, &to_change, &mut rng) {
            let api: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &p.namespace);
            if let Ok(n) = api.get(&p.name).await
                && let Some(d) = ended(&n, &p)
                && api.delete(&p.name, &Default::default()).await.is_ok()
            {
                deleted.push(d);
                if let Some(names) = listed.get_mut(&p.namespace) {
                    names.remove(&p.name);
                }
                dirty.insert(p.namespace.clone());
            }
        }
        for ns in dirty.clone() {
            if list_in_application(&apps, &ns, &listed[&ns]).await.is_ok() {
                dirty.remove(&ns);
            }
        }
        faults.tick(plane, &client, SYSTEM, &mut controllers).await;
        // A long run says how it goes, once a minute.
        if Instant::now() >= next_progress {
            eprintln!(
                "[chaos] {:.0} of {:.0} min: {} NVJs made, {} deleted; {}",
                workload_started.elapsed().as_secs_f64() / 60.0,
                config.duration.as_secs_f64() / 60.0,
                planned.len(),
                deleted.len(),
                faults.counts
            );
            next_progress = Instant::now() + Duration::from_secs(60);
        }
        if Instant::now() >= next_sample {
            for r in &controllers {
                let kib = rss_kib(r.controller.process.id());
                if kib > 0 {
                    let m = memory.entry(r.identity.clone()).or_default();
                    m.0 = m.0.max(kib);
                    if Instant::now() <= quarter {
                        m.1 = kib;
                        live.0 = listed.values().map(BTreeSet::len).sum();
                    }
                    m.2 = kib;
                }
            }
            next_sample = Instant::now() + Duration::from_secs(5);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ran_for = workload_started.elapsed();

    // The workload stops; the controllers get time to settle, then what holds is checked
    // again until everything does or the wait runs out.
    let stopped = Instant::now();
    let settle = Duration::from_secs(300);
    let expected = invariants::Expected {
        planned: &planned,
        deleted: &deleted,
        hostile: &hostile,
        refused: &refused,
        teams: &teams,
        audit_log: &audit_log,
        trigger_user: &controllers
            .iter()
            .find(|r| r.controller.name == "trigger-controller")
            .map(|r| r.controller.service_account.clone())
            .unwrap_or_default(),
    };
    let invariants = loop {
        for ns in dirty.clone() {
            if list_in_application(&apps, &ns, &listed[&ns]).await.is_ok() {
                dirty.remove(&ns);
            }
        }
        faults.check_crashes(&mut controllers);
        faults.revive_control_plane(plane);
        let checked = invariants::check(&client, &expected, &faults.counts).await?;
        let violations: usize = checked.iter().map(|i| i.violations.len()).sum();
        if violations == 0 || stopped.elapsed() > settle {
            break checked;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let settled_after = stopped.elapsed();
    for r in &controllers {
        let kib = rss_kib(r.controller.process.id());
        if kib > 0 {
            let m = memory.entry(r.identity.clone()).or_default();
            m.0 = m.0.max(kib);
            m.2 = kib;
        }
    }
    let report = Report {
        seed: config.seed,
        ran_for,
        nvjs: planned.len() + hostile.len(),
        deleted: deleted.len(),
        live: (live.0, listed.values().map(BTreeSet::len).sum()),
        faults: faults.counts.clone(),
        invariants,
        memory,
        settled_after,
    };
    drop(controllers);
    Ok(report)
}
