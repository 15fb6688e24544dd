//! The umbrella chart installed as users install it: `helm install` (the real helm) into the
//! local control plane, the chart's own controller pods run by the kubelet double as deployed
//! (image entrypoint, args and env as rendered, projected ServiceAccount token, in-cluster
//! config, probes), and the train -> validate -> restart flow through those pods; then
//! `helm upgrade` to one more namespace, wrong values refused by the schemas, and
//! `helm uninstall` leaving nothing of ours but the CRD.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use nbg_core::nvj::{NotebookValidationJob, Phase, TriggerOutcome};
use nbg_e2e::chart_schemas::CONTROLLERS;
use nbg_e2e::harness::cluster::{
    eventually, lease_holders, notebook_python, repo_root, workspace_binary,
};
use nbg_e2e::harness::git_server::{GitRepo, GitServer, notebook};
use nbg_e2e::harness::kubelet::{self, DeployedPods, KubeletConfig, PodHandling};
use nbg_e2e::harness::nvj::{create_succeeded, mark_succeeded, minimal, with_trigger_succeeded};
use nbg_e2e::{Cluster, TestNamespace};
use serde_json::json;

/// The release's name: unique per run, since its ClusterRoles are cluster-wide.
fn release() -> String {
    format!("ng{}", std::process::id())
}

/// Uninstalls a release however the test ends, so a failed run leaves no cluster-wide RBAC:
/// (cluster, release, namespace).
struct UninstallRelease(Cluster, String, String);

impl Drop for UninstallRelease {
    fn drop(&mut self) {
        let _ = self.0.helm_run(&["uninstall", &self.1, "-n", &self.2]);
        let selector = format!("app.kubernetes.io/instance={}", self.1);
        let _ = self.0.kubectl(
            &[
                "delete",
                "clusterroles,clusterrolebindings",
                "-l",
                &selector,
            ],
            None,
        );
    }
}

/// `--set` pairs for every controller: scoped to `namespaces`, and what this machine needs.
fn values(namespaces: &[&str], argocd_namespace: &str) -> Vec<String> {
    let list = format!("{{{}}}", namespaces.join(","));
    let mut set: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| **c != "trigger-controller")
        .map(|c| format!("{c}.watchNamespaces={list}"))
        .collect();
    // trigger-controller is switched on per namespace with its label.
    set.push("trigger-controller.namespaceSelector=mlops.dev/trigger-controller=enabled".into());
    set.push(format!("global.argocd.namespace={argocd_namespace}"));
    // The notebook image's Python and the runner as this machine has them.
    set.push(format!(
        "nvj-validator.notebookPython={}",
        notebook_python().display()
    ));
    set.push(format!(
        "nvj-validator.runnerPath={}",
        workspace_binary("nvj-validator").display()
    ));
    set.push("nvj-validator.runnerImage=local/nvj-validator:e2e".into());
    set.push("nvj-validator.retryBackoff=1s".into());
    set
}

/// `helm <verb> <release> <chart> -n <namespace> --wait` with `--set` pairs.
fn helm_release(
    cluster: &Cluster,
    verb: &str,
    release: &str,
    chart: &str,
    namespace: &str,
    set: &[String],
) -> (bool, String) {
    let mut args: Vec<&str> = vec![
        verb,
        release,
        chart,
        "-n",
        namespace,
        "--wait",
        "--timeout",
        "3m",
    ];
    for s in set {
        args.extend(["--set", s.as_str()]);
    }
    cluster.helm_run(&args)
}

async fn nvj(
    api: &Api<NotebookValidationJob>,
    name: &str,
    spec: serde_json::Value,
    annotations: BTreeMap<String, String>,
) {
    let nvj: NotebookValidationJob = serde_json::from_value(json!({
        "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
        "metadata": {"name": name, "annotations": annotations}, "spec": spec
    }))
    .expect("an NVJ");
    api.create(&PostParams::default(), &nvj)
        .await
        .expect("create NVJ");
}

fn model_server() -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "model-server"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "model-server"}},
            "template": {
                "metadata": {"labels": {"app": "model-server"}},
                "spec": {"containers": [{"name": "server", "image": "kserve/sklearnserver:v0.15.0"}]}
            }
        }
    }))
    .expect("a Deployment")
}

/// Objects of ours still present: cluster-wide RBAC of the release, everything in its
/// namespace, and RBAC or state in the teams' namespaces (their own workloads and the
/// validation pods of their NVJs are theirs).
fn release_objects(cluster: &Cluster, release_namespace: &str, teams: &[&str]) -> Vec<String> {
    let selector = format!(
        "app.kubernetes.io/instance={},app.kubernetes.io/part-of=notebook-gitops",
        release()
    );
    let mut found = Vec::new();
    let mut get = |what: &str, ns: Option<&str>, selector: Option<&str>| {
        let mut args = vec!["get", what, "-o", "name"];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        if let Some(selector) = selector {
            args.extend(["-l", selector]);
        }
        let (ok, out, err) = cluster.kubectl(&args, None);
        assert!(ok, "kubectl {args:?}: {err}");
        found.extend(
            out.lines()
                // Every namespace has these; they are not ours.
                .filter(|l| *l != "serviceaccount/default" && *l != "configmap/kube-root-ca.crt")
                .map(|l| format!("{}/{l}", ns.unwrap_or("cluster"))),
        );
    };
    get("clusterroles,clusterrolebindings", None, Some(&selector));
    get(
        "deployments,replicasets,pods,services,serviceaccounts,configmaps,secrets,roles,rolebindings,leases",
        Some(release_namespace),
        None,
    );
    for ns in teams {
        get(
            "serviceaccounts,configmaps,roles,rolebindings,leases",
            Some(ns),
            None,
        );
    }
    found
}

fn pod_log(work_dir: &Path, ns: &str, pod: &str) -> String {
    std::fs::read_to_string(work_dir.join(ns).join(pod).join("controller.log")).unwrap_or_default()
}

// Multi-threaded: helm and kubectl block their thread while the kubelet double serves pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_umbrella_chart_installs_runs_the_flow_upgrades_and_uninstalls() {
    let cluster = Cluster::get();
    let client = cluster.client().await;
    let release_ns = TestNamespace::new(&cluster, "ng-release").await;
    let team = TestNamespace::new(&cluster, "ng-team").await;
    let second_team = TestNamespace::new(&cluster, "ng-team2").await;
    let (rel, t1, t2) = (
        release_ns.name.as_str(),
        team.name.as_str(),
        second_team.name.as_str(),
    );

    let deployed = DeployedPods::workspace(&cluster, &CONTROLLERS, "install");
    let socket_dir = deployed.socket_dir.clone();
    let git = GitServer::start(&repo_root().join(format!("target/e2e-git/{t1}")), None).await;
    let config = KubeletConfig {
        deployed: Some(deployed),
        ready_only_labels: vec![("app".into(), "model-server".into())],
        ..KubeletConfig::for_test(&[rel, t1, t2], PodHandling::RunCommands)
    };
    let work_dir = config.work_dir.clone();
    let _kubelet = kubelet::spawn(client.clone(), config);
    let release = release();
    let _uninstall = UninstallRelease(cluster.clone(), release.clone(), rel.to_string());
    let release = release.as_str();

    // Wrong values fail at install with the schema's message naming them; nothing installed.
    let chart = repo_root().join("charts/notebook-gitops");
    let chart = chart.to_string_lossy();
    for (bad, message) in [
        (
            "trigger-controller.replicas=-1",
            "at '/replicas': minimum: got -1, want 0",
        ),
        (
            "trigger-controler.enabled=true",
            "additional properties 'trigger-controler' not allowed",
        ),
        (
            "wave-marker.watchNamespaces={Team_A}",
            "at '/watchNamespaces/0': 'Team_A' does not match pattern",
        ),
        // Argo CD elsewhere (OpenShift GitOps): the value to set, before anything is created.
        (
            "global.argocd.namespace=openshift-gitops",
            "Argo CD's namespace \"openshift-gitops\" does not exist in this cluster. Set global.argocd.namespace",
        ),
    ] {
        let (ok, out) = cluster.helm_run(&["install", release, &chart, "-n", rel, "--set", bad]);
        assert!(!ok, "{bad} must be refused: {out}");
        assert!(
            out.contains(message),
            "{bad}: the message names the value: {out}"
        );
    }
    let (_, listed) = cluster.helm_run(&["list", "-n", rel, "-q"]);
    assert!(listed.trim().is_empty(), "nothing installed: {listed}");

    // Install: every controller scoped to the team's namespace; trigger-controller by label.
    let set = values(&[t1], rel);
    let (ok, out) = helm_release(&cluster, "install", release, &chart, rel, &set);
    if !ok {
        let (_, pods, _) = cluster.kubectl(&["get", "pods", "-n", rel, "-o", "wide"], None);
        let (_, events, _) = cluster.kubectl(&["get", "events", "-n", rel], None);
        panic!("helm install: {out}\npods:\n{pods}\nevents:\n{events}");
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            t1,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"mlops.dev/trigger-controller": "enabled"}}}),
            ),
        )
        .await
        .expect("label the team's namespace");

    // Each controller runs from its image's entrypoint, in-cluster, as its ServiceAccount, Ready.
    let pods: Api<Pod> = Api::namespaced(client.clone(), rel);
    let running = pods.list(&ListParams::default()).await.expect("pods");
    assert_eq!(
        running.items.len(),
        CONTROLLERS.len(),
        "one pod per controller"
    );
    for pod in &running.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        assert!(ready, "{name} is Ready (its readiness probe answered)");
        let log = pod_log(&work_dir, rel, &name);
        assert!(
            log.contains("connected to the API server")
                && log.contains(&format!("127.0.0.1:{}", cluster.api_server().port())),
            "{name} connected in-cluster: {log}"
        );
        let token = work_dir.join(rel).join(&name).join("volumes");
        let projected = std::fs::read_dir(&token)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .any(|e| e.path().join("token").exists() && e.path().join("ca.crt").exists())
            })
            .unwrap_or(false);
        assert!(
            projected,
            "{name} has its projected ServiceAccount token and CA"
        );
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), rel);
    let holders = lease_holders(&leases, CONTROLLERS.len(), Duration::from_secs(30)).await;
    let pod_names: Vec<String> = running
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert!(
        holders.iter().all(|h| pod_names.contains(h)),
        "{holders:?} are the pods {pod_names:?}"
    );

    // Train -> validate -> restart, through the chart's pods.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), t1);
    deployments
        .create(&PostParams::default(), &model_server())
        .await
        .expect("model server");
    let repo = GitRepo::create(&git, "notebooks");
    repo.commit(
        &[(
            "train.ipynb",
            notebook(&["accuracy = 0.93", "assert accuracy > 0.9"]),
        )],
        "train",
    );
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), t1);
    nvj(
        &nvjs,
        "train",
        json!({
            "notebook": {"git": {"url": git.url("notebooks"), "ref": "main"}, "path": "train.ipynb"},
            "podConfig": {"containerImage": "quay.io/jupyter/minimal-notebook:2025-06-02"},
            "timeout": "2m"
        }),
        BTreeMap::from([(
            "mlops.dev/on-success-trigger".to_string(),
            "- {apiVersion: apps/v1, kind: Deployment, name: model-server, action: restart}\n".to_string(),
        )]),
    )
    .await;
    let done = eventually(
        Duration::from_secs(120),
        "the NVJ's run, its restart, wave mark and Event",
        || {
            let nvjs = nvjs.clone();
            async move {
                let n = nvjs.get("train").await.ok()?;
                let s = n.status.clone()?;
                let restarted = s
                    .triggers
                    .iter()
                    .any(|t| t.outcome == TriggerOutcome::Succeeded);
                let marked = n
                    .metadata
                    .annotations
                    .as_ref()?
                    .contains_key("mlops.dev/wave-complete");
                let notified = n
                    .metadata
                    .annotations
                    .as_ref()?
                    .contains_key("mlops.dev/notified-run");
                (s.phase == Some(Phase::Succeeded) && restarted && marked && notified).then_some(n)
            }
        },
    )
    .await;
    assert_eq!(done.status.as_ref().map(|s| s.triggers.len()), Some(1));
    let d = deployments.get("model-server").await.expect("model server");
    assert_eq!(d.metadata.generation, Some(2), "restarted exactly once");

    // Upgrade: wave-marker for one more namespace, nothing else changed.
    let nvjs2: Api<NotebookValidationJob> = Api::namespaced(client.clone(), t2);
    let mut set = values(&[t1], rel);
    set.push(format!("wave-marker.watchNamespaces={{{t1},{t2}}}"));
    let (ok, out) = helm_release(&cluster, "upgrade", release, &chart, rel, &set);
    assert!(ok, "helm upgrade: {out}");
    // nvj-validator does not watch this namespace: the run's result is written as it would write it.
    create_succeeded(&nvjs2, "later", &BTreeMap::new()).await;
    eventually(
        Duration::from_secs(60),
        "wave-marker to mark the new namespace's NVJ",
        || {
            let nvjs2 = nvjs2.clone();
            async move {
                let n = nvjs2.get("later").await.ok()?;
                n.metadata
                    .annotations?
                    .get("mlops.dev/wave-complete")
                    .cloned()
            }
        },
    )
    .await;

    // Uninstall: nothing of ours left but the CRD.
    let (ok, out) =
        cluster.helm_run(&["uninstall", release, "-n", rel, "--wait", "--timeout", "2m"]);
    assert!(ok, "helm uninstall: {out}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut left = release_objects(&cluster, rel, &[t1, t2]);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        left = release_objects(&cluster, rel, &[t1, t2]);
    }
    assert!(left.is_empty(), "left after helm uninstall: {left:?}");
    let (ok, _, _) = cluster.kubectl(
        &["get", "crd", "notebookvalidationjobs.mlops.mlops.dev"],
        None,
    );
    assert!(
        ok,
        "the CRD stays (Helm never deletes CRDs: deleting it would delete every NVJ)"
    );
    let _ = std::fs::remove_dir_all(socket_dir);
}

/// The Lease's holder, if any.
async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases
        .get_opt(name)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

/// Two replicas of trigger-controller, installed from its own chart (each subchart installs on
/// its own): only the leader acts; the leader's pod killed (its process SIGKILLed and the pod
/// gone, as when its node dies) while 100 NVJs succeed; the standby takes over within the
/// Lease's duration and every trigger is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_from_a_killed_leader_and_every_trigger_applies_once() {
    const NVJS: usize = 100;
    const LEASE_SECONDS: u64 = 15;
    let cluster = Cluster::get();
    let client = cluster.client().await;
    let release_ns = TestNamespace::new(&cluster, "ng-ha").await;
    let team = TestNamespace::new(&cluster, "ng-ha-team").await;
    let (rel, t1) = (release_ns.name.as_str(), team.name.as_str());
    let deployed = DeployedPods::workspace(&cluster, &["trigger-controller"], "ha");
    let socket_dir = deployed.socket_dir.clone();
    let config = KubeletConfig {
        deployed: Some(deployed),
        ..KubeletConfig::for_test(&[rel, t1], PodHandling::MakeReady)
    };
    let work_dir = config.work_dir.clone();
    let _kubelet = kubelet::spawn(client.clone(), config);
    let release = format!("ha{}", std::process::id());
    let _uninstall = UninstallRelease(cluster.clone(), release.clone(), rel.to_string());

    // The targets (no pods: a rollout completes as soon as the Deployment controller sees it)
    // and the NVJs, not yet succeeded.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), t1);
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), t1);
    for i in 0..NVJS {
        let mut d = model_server();
        d.metadata.name = Some(format!("model-{i}"));
        if let Some(spec) = d.spec.as_mut() {
            spec.replicas = Some(0);
        }
        deployments
            .create(&PostParams::default(), &d)
            .await
            .expect("Deployment");
        let trigger = format!(
            "- {{apiVersion: apps/v1, kind: Deployment, name: model-{i}, action: restart}}\n"
        );
        nvjs.create(
            &PostParams::default(),
            &minimal(
                &format!("train-{i}"),
                &BTreeMap::from([("mlops.dev/on-success-trigger".to_string(), trigger)]),
            ),
        )
        .await
        .expect("NVJ");
    }

    let chart = repo_root().join("charts/trigger-controller");
    let (ok, out) = cluster.helm_run(&[
        "install",
        &release,
        &chart.to_string_lossy(),
        "-n",
        rel,
        "--wait",
        "--timeout",
        "2m",
        "--set",
        "replicas=2",
        "--set",
        &format!("watchNamespaces={{{t1}}}"),
        "--set",
        &format!("leaseDuration={LEASE_SECONDS}s"),
        // Argo CD's namespace must exist: the release's own stands in for it (on a fresh plane
        // no other test has created `argocd`).
        "--set",
        &format!("global.argocd.namespace={rel}"),
    ]);
    assert!(ok, "helm install: {out}");
    let leases: Api<Lease> = Api::namespaced(client.clone(), rel);
    let leader = eventually(Duration::from_secs(30), "a leader", || {
        holder(&leases, "trigger-controller")
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), rel);
    let names: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let standby = names
        .iter()
        .find(|n| **n != leader)
        .cloned()
        .expect("a standby");

    // The 100 runs succeed one after another; the leader's pod dies once it has recorded 20.
    let created = nvjs.list(&ListParams::default()).await.expect("NVJs").items;
    let marking = {
        let nvjs = nvjs.clone();
        tokio::spawn(async move {
            for nvj in &created {
                mark_succeeded(&nvjs, nvj).await.expect("mark succeeded");
            }
        })
    };
    let recorded = |nvjs: Api<NotebookValidationJob>| async move {
        let list = nvjs.list(&ListParams::default()).await.ok()?.items;
        Some(
            list.iter()
                .filter(|n| n.status.as_ref().is_some_and(|s| !s.triggers.is_empty()))
                .count(),
        )
    };
    eventually(
        Duration::from_secs(60),
        "the leader to record 20 triggers",
        || {
            let nvjs = nvjs.clone();
            async move { recorded(nvjs).await.filter(|n| *n >= 20) }
        },
    )
    .await;
    let sandbox_spec = work_dir.join(rel).join(&leader).join("sandbox.json");
    let killed = Command::new("pkill")
        .args(["-KILL", "-f", &sandbox_spec.to_string_lossy()])
        .status()
        .expect("pkill");
    assert!(
        killed.success(),
        "the leader's process was found and killed"
    );
    let killed_at = std::time::Instant::now();
    let at_kill = recorded(nvjs.clone()).await.unwrap_or_default();
    let (ok, _, err) = cluster.kubectl(
        &[
            "delete",
            "pod",
            &leader,
            "-n",
            rel,
            "--grace-period=0",
            "--force",
        ],
        None,
    );
    assert!(ok, "{err}");
    marking.await.expect("marking");
    assert!(
        at_kill < NVJS,
        "the leader was killed mid-way ({at_kill} of {NVJS} recorded)"
    );
    // The standby, or the pod the ReplicaSet starts in the killed one's place (a standby too):
    // whichever asks first once the Lease expires.
    let new_leader = eventually(
        Duration::from_secs(2 * LEASE_SECONDS),
        "a standby to take the Lease",
        || {
            let leases = leases.clone();
            let leader = leader.clone();
            async move {
                holder(&leases, "trigger-controller")
                    .await
                    .filter(|h| *h != leader)
            }
        },
    )
    .await;
    let takeover = killed_at.elapsed();
    // Expiry is at most one lease duration after the last renewal; the standby looks every
    // fifth of it.
    assert!(
        takeover <= Duration::from_secs(LEASE_SECONDS) + Duration::from_secs(LEASE_SECONDS) / 5,
        "{new_leader} took over {takeover:?} after the kill"
    );
    println!(
        "{} {new_leader} took over {:.1} s after the leader was killed with {at_kill} of {NVJS} triggers recorded",
        if new_leader == standby {
            "the standby"
        } else {
            "the replacement pod"
        },
        takeover.as_secs_f64()
    );

    // Every trigger recorded Succeeded once, and every Deployment changed exactly once.
    let done = eventually(
        Duration::from_secs(120),
        "every trigger to be recorded",
        || {
            let nvjs = nvjs.clone();
            async move {
                let list = nvjs.list(&ListParams::default()).await.ok()?.items;
                let recorded = with_trigger_succeeded(&list);
                (recorded == NVJS).then_some(list)
            }
        },
    )
    .await;
    assert!(
        done.iter()
            .all(|n| n.status.as_ref().is_some_and(|s| s.triggers.len() == 1))
    );
    for d in deployments
        .list(&ListParams::default())
        .await
        .expect("Deployments")
        .items
    {
        let name = d.metadata.name.clone().unwrap_or_default();
        assert_eq!(
            d.metadata.generation,
            Some(2),
            "{name}: exactly one restart"
        );
    }
    // Only leaders acted: no other replica applied anything before it held the Lease.
    let others: Vec<String> = std::fs::read_dir(work_dir.join(rel))
        .expect("the pods' directories")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| *name != leader)
        .collect();
    assert!(
        others.iter().any(|pod| *pod != standby),
        "the ReplicaSet replaced the killed pod: {others:?}"
    );
    for pod in &others {
        let log = pod_log(&work_dir, rel, pod);
        let first_act = log
            .lines()
            .position(|l| l.contains("\"message\":\"applied\""));
        let leadership = log.lines().position(|l| l.contains("acquired leadership"));
        assert!(
            first_act.is_none() || leadership.is_some_and(|l| Some(l) < first_act),
            "{pod} acted before it led: {log}"
        );
    }
    let _ = std::fs::remove_dir_all(socket_dir);
}
