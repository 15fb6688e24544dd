//! The annotations an owner - an Argo CD Application, a Flux Kustomization - should carry,
//! decided without a cluster: a pure function of the owner, the facts of the NVJs whose
//! metadata names it, and what it carries now.
//!
//! - `mlops.dev/notebook-status`: `{"total","succeeded","failed","running","lastUpdate",
//!   "failedJobs"}` (plus `failedJobsOmitted` when the list is cut);
//! - `mlops.dev/notebook-summary`: one line, e.g. `30/32 notebooks succeeded; failed: a, b`;
//! - `mlops.dev/last-failed-run` / `mlops.dev/last-succeeded-run`: `<completionTime>
//!   <namespace>/<name> <uid>/<generation>` of the latest run that ended so, for notification
//!   triggers that fire once per run (`oncePer`). They only move forward in time, so deleting
//!   the latest NVJ never brings an older run back (and never re-fires its notification).
//!
//! Only NVJs the owner's own list (`status.resources`, `status.inventory`) holds count: a
//! tracking id or a label alone is forgeable. No NVJ left: none of the annotations.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use nbg_core::annotations::{NOTEBOOK_STATUS, NOTEBOOK_SUMMARY, NotebookStatusSummary};

use crate::engine::Owner;
use crate::facts::{NvjFacts, RunState};

/// On the owner: the latest failed run (see the module documentation).
pub const LAST_FAILED_RUN: &str = "mlops.dev/last-failed-run";
/// On the owner: the latest succeeded run.
pub const LAST_SUCCEEDED_RUN: &str = "mlops.dev/last-succeeded-run";

/// Every annotation the aggregator owns on an owner.
pub const OWNED_ANNOTATIONS: [&str; 4] = [
    NOTEBOOK_STATUS,
    NOTEBOOK_SUMMARY,
    LAST_FAILED_RUN,
    LAST_SUCCEEDED_RUN,
];

/// The aggregator's annotations as they are on the owner now.
pub fn current<O: Owner>(owner: &O) -> BTreeMap<String, String> {
    let Some(all) = owner.meta().annotations.as_ref() else {
        return BTreeMap::new();
    };
    OWNED_ANNOTATIONS
        .iter()
        .filter_map(|k| all.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

/// The NVJs that count for `owner`: naming it and listed by it.
pub fn counted<'a, O: Owner>(owner: &O, named: &[&'a NvjFacts]) -> Vec<&'a NvjFacts> {
    named
        .iter()
        .copied()
        .filter(|f| owner.lists_nvj(&f.namespace, &f.name))
        .collect()
}

/// The time written at the start of a last-run annotation.
fn time_of(value: &str) -> Option<Timestamp> {
    value.split_whitespace().next()?.parse().ok()
}

/// The latest run that ended in `state`, unless the Application already shows one as recent.
fn last_run(nvjs: &[&NvjFacts], state: RunState, shown: Option<&String>) -> Option<String> {
    let latest = nvjs
        .iter()
        .filter(|f| f.state == state)
        .filter_map(|f| Some((f.completed?, f)))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.key().cmp(&b.1.key())));
    let shown_time = shown.and_then(|v| time_of(v));
    match latest {
        Some((at, f)) if shown_time.is_none_or(|s| at > s) => Some(format!(
            "{at} {} {}",
            f.key(),
            f.run.as_deref().unwrap_or_default()
        )),
        _ => shown.cloned(),
    }
}

/// The annotations `owner` should carry, given the facts of the NVJs whose metadata names it.
pub fn desired<O: Owner>(owner: &O, named: &[&NvjFacts]) -> BTreeMap<String, String> {
    let nvjs = counted(owner, named);
    let mut out = BTreeMap::new();
    if nvjs.is_empty() {
        return out;
    }
    let several_namespaces = nvjs.iter().any(|f| f.namespace != nvjs[0].namespace);
    let name = |f: &NvjFacts| {
        if several_namespaces {
            f.key()
        } else {
            f.name.clone()
        }
    };
    let count = |s: RunState| nvjs.iter().filter(|f| f.state == s).count() as i64;
    let mut failed_jobs: Vec<String> = nvjs
        .iter()
        .filter(|f| f.state == RunState::Failed)
        .map(|f| name(f))
        .collect();
    failed_jobs.sort();
    let summary = NotebookStatusSummary {
        total: nvjs.len() as i64,
        succeeded: count(RunState::Succeeded),
        failed: count(RunState::Failed),
        running: count(RunState::Running),
        last_update: nvjs
            .iter()
            .filter_map(|f| f.changed)
            .max()
            .map(|t| t.to_string())
            .unwrap_or_default(),
        failed_jobs,
        failed_jobs_omitted: 0,
    };
    out.insert(NOTEBOOK_STATUS.to_string(), summary.to_annotation());
    out.insert(NOTEBOOK_SUMMARY.to_string(), summary.one_line());
    let shown = current(owner);
    for (key, state) in [
        (LAST_FAILED_RUN, RunState::Failed),
        (LAST_SUCCEEDED_RUN, RunState::Succeeded),
    ] {
        if let Some(v) = last_run(&nvjs, state, shown.get(key)) {
            out.insert(key.to_string(), v);
        }
    }
    out
}

/// The annotations to write, or `None` when the owner carries them already.
pub fn decide<O: Owner>(owner: &O, named: &[&NvjFacts]) -> Option<BTreeMap<String, String>> {
    let want = desired(owner, named);
    (want != current(owner)).then_some(want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nbg_core::foreign::flux::Kustomization;
    use nbg_core::foreign::{Application, NamespacedName};
    use nbg_core::nvj::{GROUP, KIND};

    fn app(listed: &[(&str, &str)], annotations: serde_json::Value) -> Application {
        let resources: Vec<serde_json::Value> = listed
            .iter()
            .map(|(ns, n)| serde_json::json!({"group": GROUP, "kind": KIND, "namespace": ns, "name": n, "version": "v1alpha1"}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "train", "namespace": "argocd", "annotations": annotations},
            "spec": {"project": "default"},
            "status": {"resources": resources, "sync": {"status": "Synced"}}
        }))
        .expect("application")
    }

    fn nvj(ns: &str, name: &str, state: RunState, completed: Option<&str>) -> NvjFacts {
        let at = completed.map(|t| t.parse().expect("time"));
        NvjFacts {
            namespace: ns.into(),
            name: name.into(),
            owner: Some(NamespacedName {
                namespace: "argocd".into(),
                name: "train".into(),
            }),
            state,
            changed: at,
            run: at.map(|_| format!("uid-{name}/1")),
            completed: at,
            tracking_meta: Default::default(),
        }
    }

    #[test]
    fn counts_listed_nvjs_in_the_seed_form() {
        let a = nvj("ml", "a", RunState::Succeeded, Some("2026-11-30T10:00:00Z"));
        let b = nvj("ml", "b", RunState::Failed, Some("2026-11-30T11:00:00Z"));
        let c = nvj("ml", "c", RunState::Running, None);
        let forged = nvj(
            "ml",
            "forged",
            RunState::Failed,
            Some("2026-11-30T12:00:00Z"),
        );
        let application = app(
            &[("ml", "a"), ("ml", "b"), ("ml", "c")],
            serde_json::json!({"keep": "me"}),
        );
        let out = desired(&application, &[&a, &b, &c, &forged]);
        assert_eq!(
            out[NOTEBOOK_STATUS],
            r#"{"total":3,"succeeded":1,"failed":1,"running":1,"lastUpdate":"2026-11-30T11:00:00Z","failedJobs":["b"]}"#
        );
        assert_eq!(
            out[NOTEBOOK_SUMMARY],
            "1/3 notebooks succeeded; 1 running; failed: b"
        );
        assert_eq!(out[LAST_FAILED_RUN], "2026-11-30T11:00:00Z ml/b uid-b/1");
        assert_eq!(out[LAST_SUCCEEDED_RUN], "2026-11-30T10:00:00Z ml/a uid-a/1");
    }

    #[test]
    fn names_carry_the_namespace_when_there_are_several() {
        let a = nvj("ml", "a", RunState::Failed, Some("2026-11-30T10:00:00Z"));
        let b = nvj("team", "b", RunState::Failed, Some("2026-11-30T10:00:00Z"));
        let out = desired(
            &app(&[("ml", "a"), ("team", "b")], serde_json::json!({})),
            &[&a, &b],
        );
        let s = NotebookStatusSummary::parse(&out[NOTEBOOK_STATUS]).expect("valid");
        assert_eq!(s.failed_jobs, vec!["ml/a", "team/b"]);
    }

    #[test]
    fn nothing_to_write_when_right_and_removal_when_none_left() {
        let a = nvj("ml", "a", RunState::Succeeded, Some("2026-11-30T10:00:00Z"));
        let listed = [("ml", "a")];
        let want = desired(&app(&listed, serde_json::json!({})), &[&a]);
        let written = app(&listed, serde_json::to_value(&want).expect("json"));
        assert_eq!(decide(&written, &[&a]), None, "a restart rewrites nothing");
        assert_eq!(
            decide(&written, &[]),
            Some(BTreeMap::new()),
            "last NVJ gone: removed"
        );
        assert_eq!(
            decide(&app(&listed, serde_json::json!({})), &[]),
            None,
            "nothing to remove"
        );
    }

    #[test]
    fn the_last_run_never_moves_back() {
        let old = nvj("ml", "old", RunState::Failed, Some("2026-11-30T09:00:00Z"));
        let shown = serde_json::json!({LAST_FAILED_RUN: "2026-11-30T11:00:00Z ml/deleted uid-x/4"});
        let out = desired(&app(&[("ml", "old")], shown), &[&old]);
        assert_eq!(
            out[LAST_FAILED_RUN],
            "2026-11-30T11:00:00Z ml/deleted uid-x/4"
        );
        let newer = nvj("ml", "new", RunState::Failed, Some("2026-11-30T12:00:00Z"));
        let shown = serde_json::json!({LAST_FAILED_RUN: "2026-11-30T11:00:00Z ml/deleted uid-x/4"});
        let out = desired(
            &app(&[("ml", "old"), ("ml", "new")], shown),
            &[&old, &newer],
        );
        assert_eq!(
            out[LAST_FAILED_RUN],
            "2026-11-30T12:00:00Z ml/new uid-new/1"
        );
    }

    #[test]
    fn hostile_names_make_valid_bounded_json() {
        let nvjs: Vec<NvjFacts> = (0..5000)
            .map(|i| {
                nvj(
                    "ml",
                    &format!("n\"a\\me\n{i}-é✓{}", "x".repeat(200)),
                    RunState::Failed,
                    Some("2026-11-30T10:00:00Z"),
                )
            })
            .collect();
        let listed: Vec<(String, String)> = nvjs
            .iter()
            .map(|f| (f.namespace.clone(), f.name.clone()))
            .collect();
        let listed: Vec<(&str, &str)> = listed
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let refs: Vec<&NvjFacts> = nvjs.iter().collect();
        let out = desired(&app(&listed, serde_json::json!({})), &refs);
        let size = out[NOTEBOOK_STATUS].len() + out[NOTEBOOK_SUMMARY].len();
        assert!(size < 16 * 1024, "{size} bytes");
        let s = NotebookStatusSummary::parse(&out[NOTEBOOK_STATUS]).expect("valid JSON");
        assert_eq!((s.failed, s.failed_jobs_omitted), (5000, 5000 - 50));
    }

    #[test]
    fn a_kustomization_counts_what_its_inventory_lists() {
        let kustomization = |annotations: serde_json::Value| -> Kustomization {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "train", "namespace": "flux-system", "annotations": annotations},
                "status": {"inventory": {"entries": [
                    {"id": format!("ml_a_{GROUP}_{KIND}"), "v": "v1alpha1"},
                    {"id": "ml_serve_apps_Deployment", "v": "v1"}]}}
            }))
            .expect("kustomization")
        };
        let a = nvj("ml", "a", RunState::Failed, Some("2026-11-30T10:00:00Z"));
        let forged = nvj(
            "ml",
            "forged",
            RunState::Failed,
            Some("2026-11-30T11:00:00Z"),
        );
        let want = desired(&kustomization(serde_json::json!({})), &[&a, &forged]);
        assert_eq!(
            want[NOTEBOOK_SUMMARY], "0/1 notebooks succeeded; failed: a",
            "only what the inventory lists counts"
        );
        assert_eq!(want[LAST_FAILED_RUN], "2026-11-30T10:00:00Z ml/a uid-a/1");
        let written = kustomization(serde_json::to_value(&want).expect("json"));
        assert_eq!(decide(&written, &[&a, &forged]), None);
    }
}
