//! The planned patches, through the kinds table as the controller plans them.

use k8s_openapi::jiff::Timestamp;
use nbg_core::annotations::{self, TriggerTarget};
use serde_json::{Value, json};

use super::{Plan, RunStamp};
use crate::kinds;
use crate::live::LiveTarget;

/// Plans as the controller does: the kind from the table, the object read as that kind.
fn plan(
    t: &TriggerTarget,
    live: &Value,
    run: &str,
    now: &str,
    completed: Option<Timestamp>,
) -> Plan {
    let kind = kinds::find(t.group(), &t.kind);
    let live = LiveTarget::of(t.group(), &t.kind, live.clone());
    super::plan(
        t,
        kind,
        &live,
        &RunStamp {
            run,
            now,
            completed,
        },
    )
}

fn target(yaml: &str) -> TriggerTarget {
    annotations::parse_on_success_trigger(yaml)
        .expect("valid")
        .remove(0)
}

/// Applies a merge patch as the API server would (RFC 7386).
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Plans and applies until the plan says done; returns how many patches were written.
fn apply_twice(t: &TriggerTarget, live: &mut Value, run: &str) -> usize {
    let mut writes = 0;
    for _ in 0..2 {
        if let Plan::Patch(p) = plan(t, live, run, "2027-01-15T08:00:00Z", None) {
            merge(live, &p);
            writes += 1;
        }
    }
    writes
}

#[test]
fn every_restart_is_idempotent_per_run() {
    for (yaml, mut live) in [
        (
            "- {apiVersion: apps/v1, kind: Deployment, name: m, action: restart}",
            json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}}}}),
        ),
        (
            "- {apiVersion: apps/v1, kind: StatefulSet, name: m, action: restart}",
            json!({"spec": {}}),
        ),
        (
            "- {apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, name: m, action: restart}",
            json!({"metadata": {}}),
        ),
        (
            "- {apiVersion: argoproj.io/v1alpha1, kind: Rollout, name: m, action: restart}",
            json!({"spec": {}}),
        ),
        (
            "- {apiVersion: apps/v1, kind: Deployment, name: m, action: refresh}",
            json!({"metadata": {}}),
        ),
    ] {
        let t = target(yaml);
        assert_eq!(
            apply_twice(&t, &mut live, "u1/1"),
            1,
            "{yaml}: one write per run"
        );
        assert_eq!(
            apply_twice(&t, &mut live, "u1/2"),
            1,
            "{yaml}: a new run acts again"
        );
    }
}

#[test]
fn deployment_restart_follows_kubectl_rollout_restart() {
    let t = target("- {apiVersion: apps/v1, kind: Deployment, name: m, action: restart}");
    let Plan::Patch(p) = plan(&t, &json!({}), "u1/3", "2027-01-15T08:00:00Z", None) else {
        panic!("a patch")
    };
    assert_eq!(
        p.pointer("/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt"),
        Some(&json!("2027-01-15T08:00:00Z"))
    );
    assert_eq!(
        p.pointer("/spec/template/metadata/annotations/mlops.dev~1restarted-by-run"),
        Some(&json!("u1/3"))
    );
}

#[test]
fn sync_waits_for_a_running_operation_and_fires_once() {
    let t =
        target("- {apiVersion: argoproj.io/v1alpha1, kind: Application, name: a, action: sync}");
    let running = json!({"metadata": {"resourceVersion": "7"}, "status": {"operationState": {"phase": "Running"}}});
    assert!(matches!(
        plan(&t, &running, "u1/1", "t", None),
        Plan::Wait(_)
    ));
    let idle = json!({"metadata": {"resourceVersion": "8"}, "status": {"operationState": {"phase": "Succeeded"}}});
    let Plan::Patch(p) = plan(&t, &idle, "u1/1", "t", None) else {
        panic!("a patch")
    };
    assert_eq!(
        p.pointer("/metadata/resourceVersion"),
        Some(&json!("8")),
        "guarded by resourceVersion"
    );
    assert_eq!(
        p.pointer("/operation/initiatedBy/username"),
        Some(&json!("trigger-controller"))
    );
    // Requested (ours) or finished (ours): never again for the same run.
    let requested = json!({"operation": p["operation"].clone(), "status": {}});
    assert_eq!(
        plan(&t, &requested, "u1/1", "t", None),
        Plan::AlreadyApplied
    );
    let finished = json!({"status": {"operationState": {"phase": "Succeeded", "operation": p["operation"].clone()}}});
    assert_eq!(plan(&t, &finished, "u1/1", "t", None), Plan::AlreadyApplied);
    // Someone else's requested operation: wait.
    let theirs = json!({"operation": {"sync": {}, "initiatedBy": {"username": "admin"}}});
    assert_eq!(
        plan(&t, &theirs, "u1/1", "t", None),
        Plan::Wait(super::WaitFor::OperationRequested)
    );
}

#[test]
fn a_sync_carries_what_argocd_app_sync_would() {
    let t =
        target("- {apiVersion: argoproj.io/v1alpha1, kind: Application, name: a, action: sync}");
    let source =
        json!({"repoURL": "https://git.example/ml.git", "path": "app", "targetRevision": "main"});
    let single = json!({"metadata": {"resourceVersion": "3"},
        "spec": {"source": source, "syncPolicy": {
            "automated": {"prune": true},
            "syncOptions": ["CreateNamespace=true", "ServerSideApply=true"],
            "retry": {"limit": 3, "backoff": {"duration": "5s", "factor": 2, "maxDuration": "3m"}}}}});
    let Plan::Patch(p) = plan(&t, &single, "u1/1", "t", None) else {
        panic!("a patch")
    };
    assert_eq!(
        p["operation"]["sync"],
        json!({"syncOptions": ["CreateNamespace=true", "ServerSideApply=true"], "source": source})
    );
    assert_eq!(
        p["operation"]["retry"],
        json!({"limit": 3, "backoff": {"duration": "5s", "factor": 2, "maxDuration": "3m"}})
    );
    // Prune follows the request (argocd app sync: off), not the automated policy.
    assert_eq!(p.pointer("/operation/sync/prune"), None);
    // Several sources: each with its revision, as the server lists them.
    let other = json!({"repoURL": "https://git.example/values.git", "ref": "values"});
    let multi = json!({"metadata": {"resourceVersion": "4"},
        "spec": {"sources": [source, other]}});
    let Plan::Patch(p) = plan(&t, &multi, "u1/1", "t", None) else {
        panic!("a patch")
    };
    assert_eq!(
        p["operation"]["sync"],
        json!({"sources": [source, other], "revisions": ["main", ""]})
    );
    assert_eq!(
        p.pointer("/operation/retry"),
        None,
        "no retry unless the Application has one"
    );
}

#[test]
fn unsupported_requests_do_nothing() {
    let evict = target(
        "- {apiVersion: apps/v1, kind: Deployment, name: m, action: restart, strategy: evict}",
    );
    assert!(
        matches!(
            plan(&evict, &json!({}), "u1/1", "t", None),
            Plan::Unsupported(_)
        ),
        "never a silent rollout restart instead"
    );
    let odd = target("- {apiVersion: v1, kind: ConfigMap, name: c, action: restart}");
    assert!(matches!(
        plan(&odd, &json!({}), "u1/1", "t", None),
        Plan::Unsupported(_)
    ));
}

#[test]
fn refresh_on_applications_uses_argocds_annotation() {
    let t = target(
        "- {apiVersion: argoproj.io/v1alpha1, kind: Application, name: a, action: refresh, refresh: hard}",
    );
    let Plan::Patch(p) = plan(&t, &json!({}), "u1/1", "t", None) else {
        panic!("a patch")
    };
    assert_eq!(
        p.pointer("/metadata/annotations/argocd.argoproj.io~1refresh"),
        Some(&json!("hard"))
    );
}

#[test]
fn a_later_restart_by_another_run_serves_a_run_and_one_in_the_same_second_does_not() {
    let t = target(
        "- {apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, name: m, action: restart}",
    );
    let completed: Timestamp = "2027-01-15T08:00:00Z".parse().expect("time");
    let by =
        |marker: &str| json!({"metadata": {"annotations": {annotations::RESTARTED_AT: marker}}});
    let now = "2027-01-15T08:00:03Z";
    assert_eq!(
        plan(
            &t,
            &by("u1/1 2027-01-15T07:59:00Z"),
            "u1/1",
            now,
            Some(completed)
        ),
        Plan::AlreadyApplied,
        "its own"
    );
    assert_eq!(
        plan(
            &t,
            &by("u2/1 2027-01-15T08:00:01Z"),
            "u1/1",
            now,
            Some(completed)
        ),
        Plan::AlreadyApplied,
        "a second later"
    );
    assert!(
        matches!(
            plan(
                &t,
                &by("u2/1 2027-01-15T08:00:00Z"),
                "u1/1",
                now,
                Some(completed)
            ),
            Plan::Patch(_)
        ),
        "the same second"
    );
    assert!(
        matches!(
            plan(
                &t,
                &by("u2/1 2027-01-15T07:00:00Z"),
                "u1/1",
                now,
                Some(completed)
            ),
            Plan::Patch(_)
        ),
        "before"
    );
    assert!(matches!(
        plan(&t, &by("u2/1 garbage"), "u1/1", now, Some(completed)),
        Plan::Patch(_)
    ));
    // Standard mode: no revision, so none is written; an earlier one is removed.
    let Plan::Patch(p) = plan(&t, &json!({}), "u1/1", now, Some(completed)) else {
        panic!("patch")
    };
    assert!(
        p["metadata"]["annotations"]
            .get(annotations::RESTARTED_FROM_REVISION)
            .is_none(),
        "{p}"
    );
    let left = json!({"metadata": {"annotations": {annotations::RESTARTED_FROM_REVISION: "m-1"}}});
    let Plan::Patch(p) = plan(&t, &left, "u1/1", now, Some(completed)) else {
        panic!("patch")
    };
    assert_eq!(
        p["metadata"]["annotations"][annotations::RESTARTED_FROM_REVISION],
        Value::Null
    );
}

#[test]
fn a_flux_object_is_asked_to_reconcile_once_per_run_the_way_flux_reconcile_asks() {
    for (api_version, kind) in [
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
        ("helm.toolkit.fluxcd.io/v2", "HelmRelease"),
        ("source.toolkit.fluxcd.io/v1", "GitRepository"),
        ("source.toolkit.fluxcd.io/v1", "OCIRepository"),
    ] {
        let t = target(&format!(
            "- {{apiVersion: {api_version}, kind: {kind}, name: serving, action: reconcile}}"
        ));
        let mut live = json!({"apiVersion": api_version, "kind": kind,
            "metadata": {"name": "serving", "namespace": "flux-system", "generation": 1,
                         "annotations": {"reconcile.fluxcd.io/requestedAt": "2027-01-01T00:00:00Z"}},
            "spec": {"interval": "10m"}});
        assert_eq!(apply_twice(&t, &mut live, "u1/2"), 1, "{kind}");
        let annotations = &live["metadata"]["annotations"];
        assert_eq!(
            annotations["reconcile.fluxcd.io/requestedAt"], "2027-01-15T08:00:00Z",
            "{kind}"
        );
        assert_eq!(
            annotations["mlops.dev/reconcile-requested"], "u1/2 2027-01-15T08:00:00Z",
            "{kind}"
        );
        // The next run asks again.
        assert_eq!(apply_twice(&t, &mut live, "u1/3"), 1, "{kind}");
    }
}

#[test]
fn a_suspended_flux_object_is_refused_naming_how_to_resume_it() {
    let t = target(
        "- {apiVersion: kustomize.toolkit.fluxcd.io/v1, kind: Kustomization, name: serving, action: reconcile}",
    );
    let live = json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "serving", "namespace": "flux-system"}, "spec": {"suspend": true}});
    match plan(&t, &live, "u1/2", "2027-01-15T08:00:00Z", None) {
        Plan::Unsupported(why) => assert_eq!(
            why.to_string(),
            "Kustomization flux-system/serving is suspended (spec.suspend: true), so Flux would not reconcile it; resume it (flux resume kustomization serving -n flux-system) or drop it from the trigger"
        ),
        other => panic!("{other:?}"),
    }
}
