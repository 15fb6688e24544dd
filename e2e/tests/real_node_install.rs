//! The umbrella chart on a real node: `helm install --wait` of all five controllers from the
//! images built here (`hack/images.sh`), running in containers under containerd as their charts
//! deploy them - in-cluster config through the `kubernetes` Service and kube-proxy, projected
//! ServiceAccount tokens, probes, a read-only root file system as uid 65532 - then the train ->
//! validate -> restart flow through those pods (the validation pod and the model server's new
//! pod are real containers too), and the trigger-controller leader's eviction within its
//! PodDisruptionBudget; before it, wrong values refused by the schemas; after it, `helm upgrade`
//! to one more namespace and `helm uninstall` leaving nothing of ours but the CRD.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, EvictParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use nbg_core::nvj::{NotebookValidationJob, Phase, TriggerOutcome};
use nbg_e2e::chart_schemas::CONTROLLERS;
use nbg_e2e::harness::cluster::{eventually, lease_holder, lease_holders, repo_root};
use nbg_e2e::harness::git_server::{GitRepo, GitServer, notebook};
use nbg_e2e::harness::nvj::create_succeeded;
use nbg_e2e::harness::real_node::RealNode;
use nbg_e2e::{Cluster, TestNamespace};
use serde_json::json;

fn restricted() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "pod-security.kubernetes.io/enforce".to_string(),
        "restricted".to_string(),
    )])
}

/// A model server a restart rolls: a real HTTP server in the notebook image, Ready when it
/// answers.
fn model_server(image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "model-server"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "model-server"}},
            "template": {
                "metadata": {"labels": {"app": "model-server"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "server", "image": image, "imagePullPolicy": "Never",
                        "command": ["python3", "-m", "http.server", "8080", "--directory", "/tmp"],
                        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
                    }]
                }
            }
        }
    }))
    .expect("a Deployment")
}

/// Objects of ours still present: cluster-wide RBAC of the release, everything in its
/// namespace, and RBAC or state in the teams' namespaces (their own workloads and the
/// validation pods of their NVJs are theirs).
fn release_objects(cluster: &Cluster, release_namespace: &str, teams: &[&str]) -> Vec<String> {
    let selector = "app.kubernetes.io/instance=nbg,app.kubernetes.io/part-of=notebook-gitops";
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
    get("clusterroles,clusterrolebindings", None, Some(selector));
    get(
        "deployments,replicasets,pods,services,serviceaccounts,configmaps,secrets,roles,rolebindings,leases,poddisruptionbudgets",
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

/// `helm <verb> nbg charts/notebook-gitops -n <namespace> --wait` with `--set` pairs.
fn helm_release(cluster: &Cluster, verb: &str, namespace: &str, set: &[String]) -> (bool, String) {
    let chart = repo_root().join("charts/notebook-gitops");
    let chart = chart.to_string_lossy();
    let mut args = vec![
        verb,
        "nbg",
        &chart,
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

fn kubectl_dump(cluster: &Cluster, ns: &str) -> String {
    let (_, pods, _) = cluster.kubectl(&["get", "pods", "-n", ns, "-o", "wide"], None);
    let (_, events, _) = cluster.kubectl(&["get", "events", "-n", ns], None);
    format!("pods:\n{pods}\nevents:\n{events}")
}

// Multi-threaded: helm and kubectl block their thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_umbrella_chart_runs_its_controllers_and_the_flow_on_a_real_node() {
    let node = RealNode::start("real-node-install").expect("a control plane with a real node");
    let cluster = &node.plane.cluster;
    let client = cluster.client().await;
    let rel_ns = TestNamespace::with_labels(cluster, "rn-release", restricted()).await;
    let team_ns = TestNamespace::with_labels(cluster, "rn-team", restricted()).await;
    let (rel, team) = (rel_ns.name.as_str(), team_ns.name.as_str());
    // Argo CD's namespace, as the chart expects it (no Argo CD runs here).
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let argocd = Namespace {
        metadata: ObjectMeta {
            name: Some("argocd".into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &argocd)
        .await
        .expect("argocd namespace");

    let chart = repo_root().join("charts/notebook-gitops");
    // Wrong values fail at install with the schema's message naming them; nothing installed.
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
        let (ok, out) = cluster.helm_run(&[
            "install",
            "nbg",
            &chart.to_string_lossy(),
            "-n",
            rel,
            "--set",
            bad,
        ]);
        assert!(!ok, "{bad} must be refused: {out}");
        assert!(
            out.contains(message),
            "{bad}: the message names the value: {out}"
        );
    }
    let (_, listed) = cluster.helm_run(&["list", "-n", rel, "-q"]);
    assert!(listed.trim().is_empty(), "nothing installed: {listed}");

    // Every controller scoped to the team's namespace; trigger-controller switched on there by
    // the namespace's label.
    let mut set: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| **c != "trigger-controller")
        .map(|c| format!("{c}.watchNamespaces={{{team}}}"))
        .collect();
    set.extend([
        "trigger-controller.namespaceSelector=mlops.dev/trigger-controller=enabled".to_string(),
        "nvj-validator.retryBackoff=1s".to_string(),
        "trigger-controller.replicas=2".to_string(),
        "trigger-controller.podDisruptionBudget.enabled=true".to_string(),
    ]);
    namespaces
        .patch(
            team,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"mlops.dev/trigger-controller": "enabled"}}}),
            ),
        )
        .await
        .expect("label the team's namespace");
    let installing = Instant::now();
    let (ok, out) = helm_release(cluster, "install", rel, &set);
    assert!(ok, "helm install: {out}\n{}", kubectl_dump(cluster, rel));
    println!(
        "helm install --wait of the five controllers on the real node: {:?}",
        installing.elapsed()
    );

    // Every pod Ready (its readiness probe answered), as uid 65532 from its image.
    let pods: Api<Pod> = Api::namespaced(client.clone(), rel);
    let running = pods.list(&ListParams::default()).await.expect("pods");
    assert_eq!(
        running.items.len(),
        CONTROLLERS.len() + 1,
        "one pod per controller, two trigger-controllers"
    );
    // In-cluster API access: every controller holds its Lease (the standby none), which it can
    // only do through the `kubernetes` Service from inside its pod.
    let leases: Api<Lease> = Api::namespaced(client.clone(), rel);
    let pod_names: Vec<String> = running
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let holders = lease_holders(&leases, CONTROLLERS.len(), Duration::from_secs(60)).await;
    assert!(
        holders.iter().all(|h| pod_names.contains(h)),
        "{holders:?} are the pods {pod_names:?}"
    );
    let (_, log, _) = cluster.kubectl(&["logs", "-n", rel, &holders[0]], None);
    assert!(
        log.contains(r#""server":"https://10.0.0.1/""#),
        "in-cluster through the Service: {log}"
    );

    // Train -> validate -> restart: the validation pod and the restarted model server run on the node.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), team);
    deployments
        .create(&PostParams::default(), &model_server(&node.notebook_image))
        .await
        .expect("model server");
    let git = GitServer::start_on(
        node.host_ip,
        &repo_root().join(format!("target/real-node-git/{team}")),
        None,
    )
    .await;
    let repo = GitRepo::create(&git, "notebooks");
    repo.commit(
        &[(
            "train.ipynb",
            notebook(&["accuracy = 0.93", "assert accuracy > 0.9"]),
        )],
        "train",
    );
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), team);
    let nvj: NotebookValidationJob = serde_json::from_value(json!({
        "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
        "metadata": {"name": "train", "annotations": {
            "mlops.dev/on-success-trigger": "- {apiVersion: apps/v1, kind: Deployment, name: model-server, action: restart}\n"}},
        "spec": {
            "notebook": {"git": {"url": git.url("notebooks"), "ref": "main"}, "path": "train.ipynb"},
            "podConfig": {"containerImage": node.notebook_image, "imagePullPolicy": "Never"},
            "timeout": "2m"
        }
    }))
    .expect("an NVJ");
    let started = Instant::now();
    nvjs.create(&PostParams::default(), &nvj)
        .await
        .expect("create NVJ");
    let done = eventually(
        Duration::from_secs(180),
        "the run, its restart rolled out, its wave mark and Event",
        || {
            let nvjs = nvjs.clone();
            async move {
                let n = nvjs.get("train").await.ok()?;
                let s = n.status.clone()?;
                let restarted = s
                    .triggers
                    .iter()
                    .any(|t| t.outcome == TriggerOutcome::Succeeded);
                let annotations = n.metadata.annotations.clone().unwrap_or_default();
                (s.phase == Some(Phase::Succeeded)
                    && restarted
                    && annotations.contains_key("mlops.dev/wave-complete")
                    && annotations.contains_key("mlops.dev/notified-run"))
                .then_some(n)
            }
        },
    )
    .await;
    println!(
        "validated, model server restarted and rolled out, marked and notified: {:?}",
        started.elapsed()
    );
    assert_eq!(done.status.as_ref().map(|s| s.triggers.len()), Some(1));
    let d = deployments.get("model-server").await.expect("model server");
    assert_eq!(d.metadata.generation, Some(2), "restarted exactly once");

    // Failover on the real node: the trigger-controller Lease's holder is evicted (its
    // PodDisruptionBudget allows one of the two to go); the standby takes the Lease over.
    let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(client.clone(), rel);
    let pdb = pdbs
        .get("nbg-trigger-controller")
        .await
        .expect("trigger-controller's PodDisruptionBudget");
    let status = pdb.status.expect("the budget's status");
    assert_eq!(
        (status.current_healthy, status.disruptions_allowed),
        (2, 1),
        "two healthy, one may go"
    );
    let leader = eventually(
        Duration::from_secs(30),
        "trigger-controller's leader",
        || {
            let leases = leases.clone();
            async move { lease_holder(&leases, "trigger-controller").await }
        },
    )
    .await;
    let evicted = Instant::now();
    pods.evict(&leader, &EvictParams::default())
        .await
        .expect("the eviction is within the budget");
    let standby = eventually(
        Duration::from_secs(60),
        "another pod to take the Lease",
        || {
            let leases = leases.clone();
            let leader = leader.clone();
            async move {
                let holder = lease_holder(&leases, "trigger-controller").await?;
                (holder != leader).then_some(holder)
            }
        },
    )
    .await;
    println!(
        "trigger-controller's leader {leader} evicted; {standby} holds the Lease {:?} later",
        evicted.elapsed()
    );
    let holder = pods.get(&standby).await.expect("the new holder is a pod");
    assert!(
        holder.metadata.deletion_timestamp.is_none(),
        "{standby} is not going away"
    );

    // Upgrade: wave-marker for one more namespace, nothing else changed.
    let second_ns = TestNamespace::with_labels(cluster, "rn-team2", restricted()).await;
    let second = second_ns.name.as_str();
    let upgraded: Vec<String> = set
        .iter()
        .filter(|s| !s.starts_with("wave-marker."))
        .cloned()
        .chain([format!("wave-marker.watchNamespaces={{{team},{second}}}")])
        .collect();
    let (ok, out) = helm_release(cluster, "upgrade", rel, &upgraded);
    assert!(ok, "helm upgrade: {out}\n{}", kubectl_dump(cluster, rel));
    // nvj-validator does not watch this namespace: the run's result is written as it would.
    let later: Api<NotebookValidationJob> = Api::namespaced(client.clone(), second);
    create_succeeded(&later, "later", &BTreeMap::new()).await;
    eventually(
        Duration::from_secs(60),
        "wave-marker to mark the new namespace's NVJ",
        || {
            let later = later.clone();
            async move {
                let n = later.get("later").await.ok()?;
                n.metadata
                    .annotations?
                    .get("mlops.dev/wave-complete")
                    .cloned()
            }
        },
    )
    .await;

    // Uninstall: nothing of ours left but the CRD.
    let (ok, out) = cluster.helm_run(&["uninstall", "nbg", "-n", rel, "--wait", "--timeout", "2m"]);
    assert!(ok, "helm uninstall: {out}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut left = release_objects(cluster, rel, &[team, second]);
    while !left.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        left = release_objects(cluster, rel, &[team, second]);
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
}
