//! What each action writes on its target, planned from the live object (pure). Exactly once
//! rests on one rule: the run's identity (`<uid>/<generation>`) is written in the same patch as
//! the action itself, so a controller that crashes anywhere and tries again finds the marker and
//! does nothing - the action is idempotent on the target.
//!
//! - restart Deployment / StatefulSet / DaemonSet: `kubectl rollout restart`'s pod-template
//!   annotation, with `mlops.dev/restarted-by-run` beside it in the template;
//! - restart InferenceService: `mlops.dev/restarted-at: "<run> <time>"` on the InferenceService,
//!   which KServe copies into the predictor's pod template (editing KServe's Deployment would be
//!   reverted). Serverless mode: with the predictor's revision at that moment, so completion waits
//!   for a new one; Standard mode: complete once the predictor Deployment carries the marker and
//!   has rolled out, and KServe reports Ready. A restart by another run at least a second after
//!   this run completed serves this run too (its model is loaded by it): not restarted again;
//! - restart Argo Rollout: `spec.restartAt`, with the marker annotation;
//! - sync Application: `.operation.sync` initiated by this controller, the run in `info`, only
//!   when no operation is running, guarded by the object's resourceVersion;
//! - refresh Application: `argocd.argoproj.io/refresh`; other kinds: `mlops.dev/refresh-requested`;
//! - restart with `strategy: evict` is planned from the pods, in [`crate::eviction`].

use k8s_openapi::jiff::Timestamp;
use nbg_core::annotations::{self, RefreshKind, RestartStrategy, TriggerAction, TriggerTarget};
use nbg_core::foreign::{InferenceService, RestartMarker};
use serde_json::{Value, json};

/// The pod-template (or object) annotation recording which run restarted the target.
pub const RESTARTED_BY_RUN: &str = "mlops.dev/restarted-by-run";
/// The `info` entry naming the run in an Argo CD operation.
pub const OPERATION_INFO_RUN: &str = "nvj-run";

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The marker of this run is already on the target.
    AlreadyApplied,
    /// Apply this JSON merge patch.
    Patch(Value),
    /// Not now; try again when the target changes.
    Wait(WaitFor),
    /// This controller cannot do what the entry asks; recorded as a failure, never retried.
    Unsupported(String),
}

fn annotation<'a>(obj: &'a Value, pointer: &str, key: &str) -> Option<&'a str> {
    obj.pointer(pointer)?.get(key)?.as_str()
}

fn operation_has_run(op: Option<&Value>, run: &str) -> bool {
    op.and_then(|o| o.get("info"))
        .and_then(Value::as_array)
        .is_some_and(|info| {
            info.iter().any(|i| {
                i.get("name").and_then(Value::as_str) == Some(OPERATION_INFO_RUN)
                    && i.get("value").and_then(Value::as_str) == Some(run)
            })
        })
}

/// What a planned action waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WaitFor {
    /// Someone requested an Argo CD operation that has not started yet.
    #[error("an Argo CD operation is requested; syncing once it finishes")]
    OperationRequested,
    /// An Argo CD operation is running (or terminating).
    #[error("an Argo CD operation is running; syncing once it finishes")]
    OperationRunning,
}

/// Whether a restart stamped `time` (RFC 3339, whole seconds) certainly happened after a run that
/// completed at `completed` (whole seconds too): at least one second later. Such a restart, by
/// another run, loads this run's model as well; one in the same second might not.
fn restarted_after(time: &str, completed: Option<Timestamp>) -> bool {
    let (Ok(at), Some(completed)) = (time.parse::<Timestamp>(), completed) else {
        return false;
    };
    at.as_second() > completed.as_second()
}

/// Plans `target.action` on the live object `live` for `run`, which completed at `completed`,
/// at time `now` (RFC 3339).
pub fn plan(
    target: &TriggerTarget,
    live: &Value,
    run: &str,
    now: &str,
    completed: Option<Timestamp>,
) -> Plan {
    let kind = target.kind.as_str();
    if target.strategy == RestartStrategy::Evict {
        // Planned from the target's pods, in `eviction`; never a rollout restart instead.
        return Plan::Unsupported("restart by eviction is planned from the target's pods".into());
    }
    match (target.action, target.group(), kind) {
        (TriggerAction::Restart, "apps", "Deployment" | "StatefulSet" | "DaemonSet") => {
            if annotation(
                live,
                "/spec/template/metadata/annotations",
                RESTARTED_BY_RUN,
            ) == Some(run)
            {
                return Plan::AlreadyApplied;
            }
            Plan::Patch(json!({"spec": {"template": {"metadata": {"annotations": {
                annotations::KUBECTL_RESTARTED_AT: now, RESTARTED_BY_RUN: run
            }}}}}))
        }
        (TriggerAction::Restart, "serving.kserve.io", "InferenceService") => {
            let marker = annotation(live, "/metadata/annotations", annotations::RESTARTED_AT)
                .map(RestartMarker::parse);
            if marker.is_some_and(|m| m.run == run || restarted_after(m.time, completed)) {
                return Plan::AlreadyApplied;
            }
            let mut a = serde_json::Map::new();
            a.insert(
                annotations::RESTARTED_AT.into(),
                json!(format!("{run} {now}")),
            );
            // Serverless mode: completion waits for a revision newer than this one. Standard mode
            // has no revisions: an earlier restart's is removed, none is written.
            match live.pointer("/status/components/predictor/latestCreatedRevision") {
                Some(revision) => {
                    a.insert(
                        annotations::RESTARTED_FROM_REVISION.into(),
                        revision.clone(),
                    );
                }
                None if annotation(
                    live,
                    "/metadata/annotations",
                    annotations::RESTARTED_FROM_REVISION,
                )
                .is_some() =>
                {
                    a.insert(annotations::RESTARTED_FROM_REVISION.into(), Value::Null);
                }
                None => {}
            }
            Plan::Patch(json!({"metadata": {"annotations": a}}))
        }
        (TriggerAction::Restart, "argoproj.io", "Rollout") => {
            if annotation(live, "/metadata/annotations", RESTARTED_BY_RUN) == Some(run) {
                return Plan::AlreadyApplied;
            }
            Plan::Patch(
                json!({"metadata": {"annotations": {RESTARTED_BY_RUN: run}}, "spec": {"restartAt": now}}),
            )
        }
        (TriggerAction::Sync, "argoproj.io", "Application") => {
            let requested = live.get("operation").filter(|o| !o.is_null());
            let last = live.pointer("/status/operationState/operation");
            if operation_has_run(requested, run) || operation_has_run(last, run) {
                return Plan::AlreadyApplied;
            }
            let phase = live
                .pointer("/status/operationState/phase")
                .and_then(Value::as_str)
                .unwrap_or("");
            if requested.is_some() || matches!(phase, "Running" | "Terminating") {
                return Plan::Wait(if requested.is_some() {
                    WaitFor::OperationRequested
                } else {
                    WaitFor::OperationRunning
                });
            }
            // The resourceVersion makes the patch fail if anything changed since we looked, so
            // two syncs can never be started over each other.
            let version = live
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            Plan::Patch(json!({
                "metadata": {"resourceVersion": version},
                "operation": {
                    "sync": {},
                    "initiatedBy": {"username": "trigger-controller"},
                    "info": [{"name": OPERATION_INFO_RUN, "value": run}]
                }
            }))
        }
        (TriggerAction::Refresh, _, _) => {
            if annotation(
                live,
                "/metadata/annotations",
                annotations::REFRESH_REQUESTED,
            ) == Some(run)
            {
                return Plan::AlreadyApplied;
            }
            let mut a = serde_json::Map::new();
            a.insert(annotations::REFRESH_REQUESTED.into(), json!(run));
            if target.group() == "argoproj.io" && kind == "Application" {
                let how = match target.refresh {
                    RefreshKind::Normal => "normal",
                    RefreshKind::Hard => "hard",
                };
                a.insert(annotations::ARGOCD_REFRESH.into(), json!(how));
            }
            Plan::Patch(json!({"metadata": {"annotations": a}}))
        }
        (action, group, kind) => {
            Plan::Unsupported(format!("{action} is not supported for {group}/{kind}"))
        }
    }
}

/// Where a target's rollout stands, as the target reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum RolloutState {
    Complete,
    /// Under way; nothing to report yet.
    Rolling,
    /// It will not complete without someone acting (the target says so): why.
    Stuck(String),
}

/// An integer field; Argo Rollouts writes its observedGeneration as a string.
fn int(live: &Value, pointer: &str) -> Option<i64> {
    let v = live.pointer(pointer)?;
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

/// Whether the status describes the current generation.
fn observed(live: &Value) -> bool {
    let generation = int(live, "/metadata/generation");
    generation.is_some() && int(live, "/status/observedGeneration") >= generation
}

/// Reads the rollout's state where the target reports it. `predictor` is the predictor
/// Deployment of an InferenceService in KServe's Standard mode, where that is what rolls.
pub fn rollout_state(
    group: &str,
    kind: &str,
    live: &Value,
    predictor: Option<&Value>,
) -> RolloutState {
    if (group, kind) == ("serving.kserve.io", "InferenceService") {
        // KServe reports both in its status: read it once.
        return match serde_json::from_value::<InferenceService>(live.clone()) {
            Ok(isvc) if isvc.standard_mode() => standard_rollout_state(&isvc, predictor),
            Ok(isvc) if isvc.rollout_complete() => RolloutState::Complete,
            Ok(isvc) => isvc
                .rollout_blocked()
                .map_or(RolloutState::Rolling, RolloutState::Stuck),
            Err(_) => RolloutState::Rolling,
        };
    }
    if rollout_complete(group, kind, live) {
        return RolloutState::Complete;
    }
    let text = |p: &str| live.pointer(p).and_then(Value::as_str);
    let stuck = match (group, kind) {
        // Both report a deadline passed the same way (`progressDeadlineSeconds`).
        ("apps", "Deployment") | ("argoproj.io", "Rollout") if observed(live) => {
            let deadline = live
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter().find(|c| {
                        c.get("type").and_then(Value::as_str) == Some("Progressing")
                            && c.get("status").and_then(Value::as_str) == Some("False")
                            && c.get("reason").and_then(Value::as_str)
                                == Some("ProgressDeadlineExceeded")
                    })
                });
            let phase = text("/status/phase");
            match (deadline, phase) {
                (Some(c), _) => Some(format!(
                    "the {kind} reports ProgressDeadlineExceeded: {}",
                    c.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("no message")
                )),
                (None, Some(phase @ ("Paused" | "Degraded"))) if kind == "Rollout" => {
                    Some(match text("/status/message") {
                        Some(m) => format!("the Rollout is {phase}: {m}"),
                        None => format!("the Rollout is {phase}"),
                    })
                }
                _ => None,
            }
        }
        _ => None,
    };
    stuck.map_or(RolloutState::Rolling, RolloutState::Stuck)
}

/// An InferenceService in Standard mode: what rolls is its predictor Deployment. Complete once
/// that Deployment's pod template carries the InferenceService's restart marker (KServe copied
/// it), the Deployment has rolled out (updated, available, observed - as for any Deployment),
/// and KServe reports Ready. KServe's `observedGeneration` is not read: in this mode it is the
/// Deployment's, not the InferenceService's.
fn standard_rollout_state(isvc: &InferenceService, predictor: Option<&Value>) -> RolloutState {
    if let Some(why) = isvc.rollout_blocked() {
        return RolloutState::Stuck(why);
    }
    let Some(deployment) = predictor else {
        // KServe has not created it (yet).
        return RolloutState::Rolling;
    };
    let carried = annotation(
        deployment,
        "/spec/template/metadata/annotations",
        annotations::RESTARTED_AT,
    );
    if isvc
        .restart_marker()
        .is_some_and(|m| carried != Some(m.value))
    {
        // KServe has not copied this restart into the predictor yet.
        return RolloutState::Rolling;
    }
    match rollout_state("apps", "Deployment", deployment, None) {
        RolloutState::Complete if isvc.ready() => RolloutState::Complete,
        RolloutState::Complete | RolloutState::Rolling => RolloutState::Rolling,
        RolloutState::Stuck(why) => RolloutState::Stuck(format!(
            "predictor Deployment {}: {why}",
            isvc.predictor_deployment_name()
        )),
    }
}

/// Where a rollout stands, as the target reports it, for a record that says it has not
/// completed in time.
pub fn rollout_progress(
    group: &str,
    kind: &str,
    live: &Value,
    predictor: Option<&Value>,
) -> Option<String> {
    let num = |v: &Value, p: &str| int(v, p).unwrap_or(0);
    // As `kubectl rollout status` sees it: new replicas, those not available, old ones left.
    let replicas = |d: &Value| {
        let updated = num(d, "/status/updatedReplicas");
        let old = num(d, "/status/replicas") - updated;
        format!(
            "{updated} of {} replicas updated, {} unavailable{}",
            int(d, "/spec/replicas").unwrap_or(1),
            num(d, "/status/unavailableReplicas"),
            if old > 0 {
                format!(", {old} old still serving")
            } else {
                String::new()
            }
        )
    };
    match (group, kind) {
        ("apps", "Deployment") => Some(replicas(live)),
        ("apps", "StatefulSet") => Some(format!(
            "{} of {} replicas ready",
            num(live, "/status/readyReplicas"),
            int(live, "/spec/replicas").unwrap_or(1)
        )),
        ("apps", "DaemonSet") => Some(format!(
            "{} of {} pods updated, {} available",
            num(live, "/status/updatedNumberScheduled"),
            num(live, "/status/desiredNumberScheduled"),
            num(live, "/status/numberAvailable")
        )),
        ("argoproj.io", "Rollout") => live
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .map(|phase| format!("the Rollout is {phase}")),
        ("serving.kserve.io", "InferenceService") => {
            let isvc: InferenceService = serde_json::from_value(live.clone()).ok()?;
            let ready = isvc
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .map_or_else(
                    || "KServe reports no Ready condition".to_string(),
                    |c| match &c.reason {
                        Some(r) => format!("KServe reports Ready {} ({r})", c.status),
                        None => format!("KServe reports Ready {}", c.status),
                    },
                );
            if !isvc.standard_mode() {
                return Some(format!(
                    "predictor revision {} created, {} ready; {ready}",
                    isvc.predictor_revision().unwrap_or("none"),
                    isvc.status
                        .as_ref()
                        .and_then(|s| s.components.get("predictor"))
                        .and_then(|p| p.get("latestReadyRevision"))
                        .and_then(Value::as_str)
                        .unwrap_or("none")
                ));
            }
            let name = isvc.predictor_deployment_name();
            Some(match predictor {
                None => format!("KServe has not created predictor Deployment {name}"),
                Some(d)
                    if isvc.restart_marker().is_some_and(|m| {
                        annotation(
                            d,
                            "/spec/template/metadata/annotations",
                            annotations::RESTARTED_AT,
                        ) != Some(m.value)
                    }) =>
                {
                    format!("KServe has not rolled the restart into predictor Deployment {name}")
                }
                Some(d) => format!("predictor Deployment {name}: {}; {ready}", replicas(d)),
            })
        }
        _ => None,
    }
}

/// Whether the target reports the restart complete (where it reports it); InferenceServices
/// are read in [`rollout_state`].
fn rollout_complete(group: &str, kind: &str, live: &Value) -> bool {
    let num = |p: &str| int(live, p);
    let observed = observed(live);
    match (group, kind) {
        ("apps", "Deployment") => {
            let want = num("/spec/replicas").unwrap_or(1);
            observed
                && num("/status/updatedReplicas").unwrap_or(0) == want
                && num("/status/availableReplicas").unwrap_or(0) == want
                && num("/status/replicas").unwrap_or(0) == want
        }
        ("apps", "StatefulSet") => {
            let want = num("/spec/replicas").unwrap_or(1);
            let rev = |p: &str| live.pointer(p).and_then(Value::as_str);
            observed
                && rev("/status/updateRevision") == rev("/status/currentRevision")
                && num("/status/readyReplicas").unwrap_or(0) == want
        }
        ("apps", "DaemonSet") => {
            let want = num("/status/desiredNumberScheduled").unwrap_or(0);
            // As `kubectl rollout status`: absent counts are zero (omitted when empty).
            observed
                && num("/status/updatedNumberScheduled").unwrap_or(0) >= want
                && num("/status/numberAvailable").unwrap_or(0) >= want
        }
        // Read from KServe's status in `rollout_state`.
        ("serving.kserve.io", "InferenceService") => false,
        ("argoproj.io", "Rollout") => {
            live.pointer("/status/restartedAt")
                .is_some_and(|r| Some(r) == live.pointer("/spec/restartAt"))
                && live.pointer("/status/phase").and_then(Value::as_str) == Some("Healthy")
        }
        // Applications and refreshes complete when applied.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let t = target(
            "- {apiVersion: argoproj.io/v1alpha1, kind: Application, name: a, action: sync}",
        );
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
        assert!(matches!(
            plan(&t, &theirs, "u1/1", "t", None),
            Plan::Wait(_)
        ));
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
    fn rollout_completion_is_read_where_the_target_reports_it() {
        let rolling = json!({"metadata": {"generation": 3}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 3, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}});
        assert!(
            !rollout_complete("apps", "Deployment", &rolling),
            "an old pod is still there"
        );
        let done = json!({"metadata": {"generation": 3}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}});
        assert!(rollout_complete("apps", "Deployment", &done));
        let no_nodes = json!({"metadata": {"generation": 2},
            "status": {"observedGeneration": 2, "desiredNumberScheduled": 0}});
        assert!(
            rollout_complete("apps", "DaemonSet", &no_nodes),
            "nothing to roll"
        );
        let stale = json!({"metadata": {"generation": 4}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}});
        assert!(!rollout_complete("apps", "Deployment", &stale));
    }

    #[test]
    fn a_rollout_that_needs_someone_is_told_apart_from_one_under_way() {
        let deadline = json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"model-7c9\" has timed out progressing."});
        let stuck = json!({"metadata": {"generation": 3}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
                       "conditions": [deadline]}});
        assert_eq!(
            rollout_state("apps", "Deployment", &stuck, None),
            RolloutState::Stuck(
                "the Deployment reports ProgressDeadlineExceeded: ReplicaSet \"model-7c9\" has timed out progressing."
                    .into()
            )
        );
        // The condition is about an older generation until the controller observes this one.
        let mut unobserved = stuck.clone();
        unobserved["metadata"]["generation"] = json!(4);
        assert_eq!(
            rollout_state("apps", "Deployment", &unobserved, None),
            RolloutState::Rolling
        );
        let rolling = json!({"metadata": {"generation": 3}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
                       "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}});
        assert_eq!(
            rollout_state("apps", "Deployment", &rolling, None),
            RolloutState::Rolling
        );
        // Argo Rollouts writes observedGeneration as a string.
        let paused = json!({"metadata": {"generation": 5}, "spec": {"restartAt": "2027-01-15T08:00:00Z"},
            "status": {"observedGeneration": "5", "phase": "Paused", "message": "CanaryPauseStep"}});
        assert_eq!(
            rollout_state("argoproj.io", "Rollout", &paused, None),
            RolloutState::Stuck("the Rollout is Paused: CanaryPauseStep".into())
        );
        let mut not_yet = paused.clone();
        not_yet["status"]["observedGeneration"] = json!("4");
        assert_eq!(
            rollout_state("argoproj.io", "Rollout", &not_yet, None),
            RolloutState::Rolling
        );
        let done = json!({"metadata": {"generation": 3}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "conditions": [deadline]}});
        assert_eq!(
            rollout_state("apps", "Deployment", &done, None),
            RolloutState::Complete
        );
    }

    /// An InferenceService in Standard mode as KServe 0.16 reports it, with our marker.
    fn standard_isvc(marker: &str, ready: &str) -> Value {
        json!({"metadata": {"name": "fraud", "generation": 1, "annotations": {annotations::RESTARTED_AT: marker}},
               "status": {"deploymentMode": "Standard", "observedGeneration": 7,
                          "conditions": [{"type": "Ready", "status": ready}],
                          "modelStatus": {"transitionStatus": "UpToDate"}}})
    }

    /// Its predictor Deployment: the template carries `carried`; `updated` of 1 replica is the
    /// new template's, `available` are available.
    fn predictor(
        carried: &str,
        generation: i64,
        observed: i64,
        updated: i64,
        available: i64,
    ) -> Value {
        json!({"metadata": {"name": "fraud-predictor", "generation": generation},
               "spec": {"replicas": 1, "template": {"metadata": {"annotations": {annotations::RESTARTED_AT: carried}}}},
               "status": {"observedGeneration": observed, "replicas": 1 + (updated != available) as i64,
                          "updatedReplicas": updated, "availableReplicas": available,
                          "unavailableReplicas": (updated - available).max(0)}})
    }

    #[test]
    fn a_standard_mode_restart_is_complete_only_when_the_new_predictor_is_ready() {
        let isvc = |ready| standard_isvc("u1/1 2027-01-15T08:00:00Z", ready);
        let ours = "u1/1 2027-01-15T08:00:00Z";
        let old = "u0/1 2027-01-14T08:00:00Z";
        let state = |i: &Value, d: Option<&Value>| {
            rollout_state("serving.kserve.io", "InferenceService", i, d)
        };
        // Right after our patch: KServe's Ready is still the old one and the Deployment is untouched.
        assert_eq!(
            state(&isvc("True"), Some(&predictor(old, 1, 1, 1, 1))),
            RolloutState::Rolling
        );
        assert_eq!(
            state(&isvc("True"), None),
            RolloutState::Rolling,
            "no Deployment yet"
        );
        // KServe copied the marker; the deployment controller has not observed it.
        assert_eq!(
            state(&isvc("True"), Some(&predictor(ours, 2, 1, 1, 1))),
            RolloutState::Rolling
        );
        // The new pod is not Ready: never complete, however long KServe's old Ready stays True.
        assert_eq!(
            state(&isvc("True"), Some(&predictor(ours, 2, 2, 1, 0))),
            RolloutState::Rolling
        );
        assert_eq!(
            state(&isvc("Unknown"), Some(&predictor(ours, 2, 2, 1, 1))),
            RolloutState::Rolling
        );
        assert_eq!(
            state(&isvc("True"), Some(&predictor(ours, 2, 2, 1, 1))),
            RolloutState::Complete
        );
        // Stuck as a Deployment is stuck, named as KServe's predictor.
        let mut deadline = predictor(ours, 2, 2, 1, 0);
        deadline["status"]["conditions"] = json!([{"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"fraud-predictor-5d\" has timed out progressing."}]);
        match state(&isvc("Unknown"), Some(&deadline)) {
            RolloutState::Stuck(why) => assert!(
                why.starts_with("predictor Deployment fraud-predictor: the Deployment reports ProgressDeadlineExceeded"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        // The serverless reading (revisions, observedGeneration) does not apply: KServe's
        // observedGeneration is the Deployment's in this mode.
        assert!(standard_isvc(ours, "True")["status"]["observedGeneration"].as_i64() > Some(1));
    }

    #[test]
    fn a_later_restart_by_another_run_serves_a_run_and_one_in_the_same_second_does_not() {
        let t = target(
            "- {apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, name: m, action: restart}",
        );
        let completed: Timestamp = "2027-01-15T08:00:00Z".parse().expect("time");
        let by = |marker: &str| json!({"metadata": {"annotations": {annotations::RESTARTED_AT: marker}}});
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
        let left =
            json!({"metadata": {"annotations": {annotations::RESTARTED_FROM_REVISION: "m-1"}}});
        let Plan::Patch(p) = plan(&t, &left, "u1/1", now, Some(completed)) else {
            panic!("patch")
        };
        assert_eq!(
            p["metadata"]["annotations"][annotations::RESTARTED_FROM_REVISION],
            Value::Null
        );
    }

    #[test]
    fn a_rollout_past_its_deadline_says_where_it_stands() {
        let ours = "u1/1 2027-01-15T08:00:00Z";
        let isvc = standard_isvc(ours, "Unknown");
        assert_eq!(
            rollout_progress(
                "serving.kserve.io",
                "InferenceService",
                &isvc,
                Some(&predictor(ours, 2, 2, 1, 0))
            )
            .as_deref(),
            Some(
                "predictor Deployment fraud-predictor: 1 of 1 replicas updated, 1 unavailable, 1 old still serving; KServe reports Ready Unknown"
            )
        );
        assert_eq!(
            rollout_progress("serving.kserve.io", "InferenceService", &isvc, None).as_deref(),
            Some("KServe has not created predictor Deployment fraud-predictor")
        );
        assert_eq!(
            rollout_progress(
                "serving.kserve.io",
                "InferenceService",
                &isvc,
                Some(&predictor("u0/1 x", 1, 1, 1, 1))
            )
            .as_deref(),
            Some("KServe has not rolled the restart into predictor Deployment fraud-predictor")
        );
        let d = json!({"spec": {"replicas": 3}, "status": {"replicas": 3, "updatedReplicas": 2, "availableReplicas": 3}});
        assert_eq!(
            rollout_progress("apps", "Deployment", &d, None).as_deref(),
            Some("2 of 3 replicas updated, 0 unavailable, 1 old still serving")
        );
    }
}
