//! Rollout readings, through the kinds table as the controller reads them.

use nbg_core::annotations;
use serde_json::{Value, json};

use super::RolloutState;
use crate::kinds;
use crate::live::LiveTarget;

fn rollout_state(group: &str, kind: &str, live: &Value, predictor: Option<&Value>) -> RolloutState {
    let k = kinds::find(group, kind).expect("a kind of the table");
    let predictor = predictor.map(|d| LiveTarget::of("apps", "Deployment", d.clone()));
    (k.rollout)(
        &LiveTarget::of(group, kind, live.clone()),
        predictor.as_ref(),
    )
}

fn rollout_complete(group: &str, kind: &str, live: &Value) -> bool {
    rollout_state(group, kind, live, None) == RolloutState::Complete
}

fn rollout_progress(
    group: &str,
    kind: &str,
    live: &Value,
    predictor: Option<&Value>,
) -> Option<String> {
    let k = kinds::find(group, kind).expect("a kind of the table");
    let predictor = predictor.map(|d| LiveTarget::of("apps", "Deployment", d.clone()));
    (k.progress)(
        &LiveTarget::of(group, kind, live.clone()),
        predictor.as_ref(),
    )
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
fn predictor(carried: &str, generation: i64, observed: i64, updated: i64, available: i64) -> Value {
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
    let state =
        |i: &Value, d: Option<&Value>| rollout_state("serving.kserve.io", "InferenceService", i, d);
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

#[test]
fn a_flux_reconcile_completes_when_flux_handled_it_and_reports_ready() {
    let at = |handled: Option<&str>, ready: Option<(&str, i64)>, reconciling: bool| {
        let mut conditions = Vec::new();
        if let Some((status, generation)) = ready {
            conditions.push(
                json!({"type": "Ready", "status": status, "reason": "ReconciliationFailed",
                "message": "health check failed", "observedGeneration": generation}),
            );
        }
        if reconciling {
            conditions.push(
                json!({"type": "Reconciling", "status": "True", "reason": "Progressing",
                "message": "Reconciliation in progress"}),
            );
        }
        json!({"metadata": {"name": "serving", "namespace": "flux-system", "generation": 2,
                  "annotations": {"reconcile.fluxcd.io/requestedAt": "2027-01-15T08:00:00Z",
                                  annotations::RECONCILE_REQUESTED: "u1/2 2027-01-15T08:00:00Z"}},
               "status": {"observedGeneration": 2, "lastHandledReconcileAt": handled,
                          "conditions": conditions}})
    };
    let state = |v: &Value| rollout_state("kustomize.toolkit.fluxcd.io", "Kustomization", v, None);
    let requested = Some("2027-01-15T08:00:00Z");
    // Not handled yet: an earlier request's value, or none.
    assert_eq!(
        state(&at(Some("2027-01-15T07:00:00Z"), Some(("True", 2)), false)),
        RolloutState::Rolling
    );
    assert_eq!(
        state(&at(None, Some(("True", 2)), false)),
        RolloutState::Rolling
    );
    assert!(
        rollout_progress(
            "kustomize.toolkit.fluxcd.io",
            "Kustomization",
            &at(None, None, false),
            None
        )
        .is_some_and(|p| p.contains("has not handled the request yet"))
    );
    // Handled, still reconciling, or Ready of an older generation: not yet.
    assert_eq!(
        state(&at(requested, Some(("True", 2)), true)),
        RolloutState::Rolling
    );
    assert_eq!(
        state(&at(requested, Some(("True", 1)), false)),
        RolloutState::Rolling
    );
    assert_eq!(
        state(&at(requested, Some(("True", 2)), false)),
        RolloutState::Complete
    );
    // A later `flux reconcile` handled after ours serves ours too.
    assert_eq!(
        state(&at(
            Some("2027-01-15T08:00:05.123456789Z"),
            Some(("True", 2)),
            false
        )),
        RolloutState::Complete
    );
    assert_eq!(
        state(&at(requested, Some(("False", 2)), false)),
        RolloutState::Stuck(
            "Flux reconciled it and reports it not Ready (ReconciliationFailed): health check failed"
                .into()
        )
    );
}
