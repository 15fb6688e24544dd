//! Every chart under `charts/` passes `helm lint`; every controller chart renders, cluster-wide
//! and per namespace, alone and through the umbrella chart; and every environment variable a
//! controller chart sets is one its binary reads (a typo in a chart would otherwise be ignored
//! silently and the controller run with its default).

use std::collections::BTreeSet;
use std::process::Command;

use nbg_e2e::Cluster;
use nbg_e2e::chart_schemas::CONTROLLERS;
use nbg_e2e::harness::cluster::{repo_root, workspace_binary};
use nbg_e2e::harness::process::render_chart_documents;

/// Read by the runtime directly from the pod (downward API), not through a flag.
const POD_ENV: [&str; 2] = ["POD_NAME", "POD_NAMESPACE"];

fn charts() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("charts"))
        .expect("charts/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Chart.yaml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_chart_lints_and_renders() {
    let cluster = Cluster::get();
    let all = charts();
    assert!(all.len() >= 8, "{all:?}");
    for chart in &all {
        let path = repo_root().join("charts").join(chart);
        let out = Command::new(&cluster.helm)
            .arg("lint")
            .arg(&path)
            .output()
            .expect("helm lint");
        assert!(
            out.status.success(),
            "helm lint {chart}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !CONTROLLERS.contains(&chart.as_str()) {
            continue;
        }
        for values in [&[][..], &["watchNamespaces={team-a,team-b}"][..]] {
            let docs = render_chart_documents(&cluster, &path, "r", "notebook-gitops", values);
            let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
            assert!(
                kinds.contains("Deployment") && kinds.contains("ServiceAccount"),
                "{chart} {values:?}: {kinds:?}"
            );
            if values.is_empty() {
                assert!(
                    kinds.contains("ClusterRole"),
                    "{chart}: cluster-wide by default"
                );
            } else {
                let roles: BTreeSet<&str> = docs
                    .iter()
                    .filter(|d| d["kind"] == "Role")
                    .filter_map(|d| d["metadata"]["namespace"].as_str())
                    .collect();
                assert!(
                    roles.contains("team-a") && roles.contains("team-b"),
                    "{chart}: {roles:?}"
                );
            }
        }
    }
}

#[test]
fn every_environment_variable_a_chart_sets_is_read_by_its_binary() {
    let cluster = Cluster::get();
    // With every integration on: the Flux settings too.
    for (chart, values) in CONTROLLERS
        .iter()
        .flat_map(|c| [(c, &[][..]), (c, &["global.flux.enabled=true"][..])])
    {
        let docs = render_chart_documents(
            &cluster,
            &repo_root().join("charts").join(chart),
            "r",
            "notebook-gitops",
            values,
        );
        let deployment = docs
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .expect("a Deployment");
        let env: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .iter()
            .filter_map(|e| e["name"].as_str().map(String::from))
            .collect();
        assert!(!env.is_empty(), "{chart}");
        let help = Command::new(workspace_binary(chart))
            .arg("--help")
            .output()
            .expect("--help");
        let help = String::from_utf8_lossy(&help.stdout);
        let unknown: Vec<&String> = env
            .iter()
            .filter(|name| {
                !POD_ENV.contains(&name.as_str()) && !help.contains(&format!("[env: {name}="))
            })
            .collect();
        assert!(
            unknown.is_empty(),
            "{chart} sets environment variables its binary does not read: {unknown:?}"
        );
    }
}

/// The value of the environment entry `name` of the chart's Deployment.
fn env(docs: &[serde_json::Value], name: &str) -> Option<String> {
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment")?;
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(String::from))
}

/// The Roles and ClusterRoles whose name ends with `suffix`.
fn roles_ending<'a>(
    docs: &'a [serde_json::Value],
    suffix: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> {
    docs.iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
        .filter(move |d| {
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(suffix))
        })
}

/// `<kind>/<namespace>` of the Roles and ClusterRoles whose name ends with `suffix`.
fn roles_named(docs: &[serde_json::Value], suffix: &str) -> Vec<String> {
    roles_ending(docs, suffix)
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or_default(),
                d["metadata"]["namespace"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn app_status_aggregator_serves_the_engines_turned_on_with_rights_on_their_objects_only() {
    let cluster = Cluster::get();
    let chart = repo_root().join("charts/app-status-aggregator");
    let render = |values: &[&str]| render_chart_documents(&cluster, &chart, "r", "ml", values);
    let rules_in = |docs: &[serde_json::Value], suffix: &str| -> String {
        roles_ending(docs, suffix)
            .map(|d| d["rules"].to_string())
            .collect()
    };

    let argocd = render(&["watchNamespaces={ml}"]);
    assert_eq!(env(&argocd, "NBG_ENGINES").as_deref(), Some("argocd"));
    assert_eq!(env(&argocd, "NBG_FLUX_NAMESPACES"), None);
    assert!(roles_named(&argocd, "-flux").is_empty());
    assert!(rules_in(&argocd, "-applications").contains("applications"));

    let both = render(&["watchNamespaces={ml}", "global.flux.enabled=true"]);
    assert_eq!(env(&both, "NBG_ENGINES").as_deref(), Some("argocd,flux"));
    assert_eq!(
        env(&both, "NBG_FLUX_NAMESPACES").as_deref(),
        Some("flux-system")
    );
    assert_eq!(roles_named(&both, "-flux"), ["Role/flux-system"]);
    let flux_rules = rules_in(&both, "-flux");
    assert!(flux_rules.contains("kustomizations"), "{flux_rules}");
    assert!(!flux_rules.contains("applications"), "{flux_rules}");
    assert!(
        !flux_rules.contains("helmreleases"),
        "Kustomizations only: {flux_rules}"
    );

    let flux = render(&["global.argocd.enabled=false", "global.flux.enabled=true"]);
    assert_eq!(env(&flux, "NBG_ENGINES").as_deref(), Some("flux"));
    assert_eq!(env(&flux, "NBG_ARGOCD_NAMESPACE"), None);
    assert!(roles_named(&flux, "-applications").is_empty());
    assert!(roles_named(&flux, "-argocd-settings").is_empty());

    let neither = std::process::Command::new(&cluster.helm)
        .args(["template", "r"])
        .arg(&chart)
        .args(["--set", "global.argocd.enabled=false"])
        .output()
        .expect("helm template");
    let stderr = String::from_utf8_lossy(&neither.stderr);
    assert!(!neither.status.success());
    assert!(
        stderr.contains("both global.argocd.enabled and global.flux.enabled are false"),
        "{stderr}"
    );
}

#[test]
fn trigger_controller_gets_flux_kinds_where_flux_keeps_them_only_with_flux_on() {
    let cluster = Cluster::get();
    let chart = repo_root().join("charts/trigger-controller");
    let render = |values: &[&str]| render_chart_documents(&cluster, &chart, "r", "ml", values);
    let flux_roles = |docs: &[serde_json::Value]| roles_named(docs, "-flux");
    let off = render(&["watchNamespaces={ml}"]);
    let kinds = env(&off, "NBG_ALLOWED_KINDS").expect("allowed kinds");
    assert!(!kinds.contains("fluxcd.io"), "{kinds}");
    assert!(flux_roles(&off).is_empty());
    assert_eq!(env(&off, "NBG_FLUX_NAMESPACES"), None);

    let on = render(&["watchNamespaces={ml}", "global.flux.enabled=true"]);
    let kinds = env(&on, "NBG_ALLOWED_KINDS").expect("allowed kinds");
    for kind in [
        "kustomize.toolkit.fluxcd.io/Kustomization",
        "helm.toolkit.fluxcd.io/HelmRelease",
        "source.toolkit.fluxcd.io/GitRepository",
        "source.toolkit.fluxcd.io/OCIRepository",
    ] {
        assert!(kinds.contains(kind), "{kind} in {kinds}");
    }
    assert_eq!(
        env(&on, "NBG_FLUX_NAMESPACES").as_deref(),
        Some("flux-system")
    );
    assert_eq!(flux_roles(&on), ["Role/flux-system"]);
    let role = on
        .iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["namespace"] == "flux-system")
        .expect("the Role in flux-system");
    let rules = role["rules"].to_string();
    for resource in [
        "kustomizations",
        "helmreleases",
        "gitrepositories",
        "ocirepositories",
    ] {
        assert!(rules.contains(resource), "{resource}: {rules}");
    }
    assert!(
        !rules.contains("deployments"),
        "only Flux's kinds there: {rules}"
    );

    let everywhere = render(&["global.flux.enabled=true", "global.flux.namespaces={*}"]);
    assert_eq!(flux_roles(&everywhere), ["ClusterRole/"]);
}

#[test]
fn the_umbrella_chart_renders_each_controller_once_and_switches_them() {
    let cluster = Cluster::get();
    let umbrella = repo_root().join("charts/notebook-gitops");
    let deployments = |set: &[&str]| -> Vec<(String, String)> {
        render_chart_documents(&cluster, &umbrella, "ng", "notebook-gitops", set)
            .iter()
            .filter(|d| d["kind"] == "Deployment")
            .map(|d| {
                (
                    d["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    d["spec"]["template"]["spec"]["serviceAccountName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    };
    let all = deployments(&[]);
    let names: BTreeSet<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    let want: BTreeSet<String> = CONTROLLERS.iter().map(|c| format!("ng-{c}")).collect();
    assert_eq!(
        names,
        want.iter().map(String::as_str).collect(),
        "one Deployment per controller, each named <release>-<controller>"
    );
    assert!(all.iter().all(|(n, sa)| n == sa), "{all:?}");
    let without = deployments(&["wave-marker.enabled=false", "event-notifier.enabled=false"]);
    let names: BTreeSet<&str> = without.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "ng-nvj-validator",
            "ng-trigger-controller",
            "ng-app-status-aggregator"
        ])
    );
    // Scoped and scaled per controller through the umbrella.
    let docs = render_chart_documents(
        &cluster,
        &umbrella,
        "ng",
        "notebook-gitops",
        &[
            "trigger-controller.watchNamespaces={team-a}",
            "trigger-controller.replicas=2",
        ],
    );
    let trigger = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "ng-trigger-controller")
        .expect("trigger-controller's Deployment");
    assert_eq!(trigger["spec"]["replicas"], 2);
    let trigger_roles: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Role" && d["metadata"]["name"] == "ng-trigger-controller")
        .filter_map(|d| d["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(trigger_roles, vec!["team-a"]);
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "ng-trigger-controller"),
        "no cluster-wide rights for a controller scoped to namespaces"
    );
}

#[test]
fn every_controller_chart_renders_its_optional_service_monitor_and_disruption_budget() {
    let cluster = Cluster::get();
    for chart in CONTROLLERS {
        let path = repo_root().join("charts").join(chart);
        let kinds = |set: &[&str]| -> BTreeSet<String> {
            render_chart_documents(&cluster, &path, "r", "notebook-gitops", set)
                .iter()
                .filter_map(|d| d["kind"].as_str().map(String::from))
                .collect()
        };
        let plain = kinds(&[]);
        assert!(
            plain.contains("Service") && plain.contains("Lease"),
            "{chart}: {plain:?}"
        );
        assert!(
            !plain.contains("ServiceMonitor") && !plain.contains("PodDisruptionBudget"),
            "{chart}: off by default"
        );
        let all = kinds(&[
            "metrics.serviceMonitor.enabled=true",
            "podDisruptionBudget.enabled=true",
            "replicas=2",
        ]);
        assert!(
            all.contains("ServiceMonitor") && all.contains("PodDisruptionBudget"),
            "{chart}: {all:?}"
        );
    }
}
