//! The rules of when a trigger is acted on and recorded, with the clock as an argument: each
//! case replays reconciles of one NVJ, writing each planned status back as the API server would.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use nbg_core::annotations::{self, TriggerTarget};
use nbg_core::nvj::{NotebookValidationJob, TriggerOutcome, TriggerRecord};
use serde_json::{Value, json};

use super::*;
use crate::authorize::Policy;
use crate::live::LiveTarget;
use crate::waiting::TargetKey;

pub(super) const DEADLINE: Duration = Duration::from_secs(600);

/// `second` seconds after the run completed.
pub(super) fn at(second: i64) -> Timestamp {
    "2027-01-15T08:00:00Z"
        .parse::<Timestamp>()
        .expect("time")
        .saturating_add(SignedDuration::from_secs(second))
        .expect("time")
}

/// A Succeeded run `u1/1` in namespace `ml`, completed at [`at`]`(0)`, with these triggers.
fn nvj(triggers: &str) -> NotebookValidationJob {
    serde_json::from_value(json!({
        "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
        "metadata": {"name": "train", "namespace": "ml", "uid": "u1", "generation": 1,
                     "annotations": {annotations::ON_SUCCESS_TRIGGER: triggers}},
        "spec": {"notebook": {"git": {"url": "https://example.com/r.git", "ref": "main"}, "path": "a.ipynb"},
                 "podConfig": {"containerImage": "python:3.12"}},
        "status": {"phase": "Succeeded", "observedGeneration": 1, "completionTime": "2027-01-15T08:00:00Z"}
    }))
    .expect("nvj")
}

fn targets(nvj: &NotebookValidationJob) -> (String, Vec<TriggerTarget>) {
    match work(nvj) {
        Work::Act { run, targets } => (run, targets),
        other => panic!("{other:?}"),
    }
}

/// The target as found: `object` read as its kind, looked at since `since`.
fn live(t: &TriggerTarget, object: Value, since: Timestamp) -> Observed {
    Observed {
        target: t.clone(),
        key: TargetKey::of(t, "ml"),
        rolls_with: None,
        found: Found::Live {
            live: Box::new(LiveTarget::of(t.group(), &t.kind, object)),
            predictor: Predictor::NotApplicable,
            pods: None,
        },
        waiting_since: since,
        watched: true,
        seen_missing: false,
    }
}

/// One reconcile at `now`: what it does to the targets and the plan; the planned status is
/// written back into `nvj`.
fn reconcile(
    nvj: &mut NotebookValidationJob,
    observed: &[Observed],
    now: Timestamp,
) -> (Vec<Act>, Plan) {
    let (run, all) = targets(nvj);
    let open = open_targets(nvj, &run, &all);
    assert_eq!(open.len(), observed.len(), "observed the open targets");
    let decisions: Vec<Decision> = observed
        .iter()
        .map(|o| decide_target(nvj, &run, o, &Policy::default(), now))
        .collect();
    let steps: Vec<(Observed, Step)> = observed
        .iter()
        .cloned()
        .zip(decisions.iter().map(|d| d.step.clone()))
        .collect();
    let plan = plan(nvj, &run, &all, &steps, DEADLINE, now);
    if let (Some(write), Some(status)) = (&plan.status, nvj.status.as_mut()) {
        status.triggers = write.records.clone();
        status.conditions = vec![write.condition.clone()];
        status.model_validation_result = write.model_result.clone();
    }
    (decisions.into_iter().map(|d| d.act).collect(), plan)
}

fn only_record(plan: &Plan) -> &TriggerRecord {
    let records = &plan.status.as_ref().expect("a status write").records;
    assert_eq!(records.len(), 1, "{records:?}");
    &records[0]
}

fn deployment(marker: Option<&str>, updated: i64, extra_status: Value) -> Value {
    let mut d = json!({"metadata": {"name": "model", "namespace": "ml", "generation": 2, "resourceVersion": "41"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "model"}},
                 "template": {"metadata": {"annotations": {}}}},
        "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": updated, "availableReplicas": 2}});
    if let Some(run) = marker {
        d["spec"]["template"]["metadata"]["annotations"][crate::actions::RESTARTED_BY_RUN] =
            json!(run);
    }
    if let (Some(status), Some(extra)) = (d["status"].as_object_mut(), extra_status.as_object()) {
        status.extend(extra.clone());
    }
    d
}

const RESTART: &str = "- {apiVersion: apps/v1, kind: Deployment, name: model, action: restart}";

#[test]
fn a_quick_rollout_is_recorded_once_at_its_end() {
    let mut nvj = nvj(RESTART);
    let t = targets(&nvj).1.remove(0);
    let (acts, plan) = reconcile(
        &mut nvj,
        &[live(&t, deployment(None, 2, json!({})), at(1))],
        at(1),
    );
    assert!(
        matches!(&acts[0], Act::Patch(p) if p["metadata"]["resourceVersion"] == json!("41")),
        "{acts:?}"
    );
    assert_eq!(plan.status, None, "nothing recorded while it rolls");
    assert_eq!(plan.follow, vec![Follow::Keep]);
    assert_eq!(
        plan.requeue,
        Some(Duration::from_secs(60)),
        "watched: the resync"
    );
    // Rolling, a second later: still nothing.
    let rolling = deployment(Some("u1/1"), 1, json!({}));
    let (acts, plan) = reconcile(&mut nvj, &[live(&t, rolling, at(1))], at(2));
    assert_eq!((acts, plan.status.is_none()), (vec![Act::Nothing], true));
    // Rolled out: one record, Succeeded, with the condition - the only write.
    let done = deployment(Some("u1/1"), 2, json!({}));
    let (acts, plan) = reconcile(&mut nvj, &[live(&t, done, at(1))], at(3));
    assert_eq!(acts, vec![Act::Nothing]);
    let r = only_record(&plan);
    assert_eq!(
        (r.outcome, r.message.as_deref()),
        (
            TriggerOutcome::Succeeded,
            Some("restart applied; rollout complete")
        )
    );
    assert_eq!(plan.changed.len(), 1, "one Event");
    assert_eq!(plan.follow, vec![Follow::Stop]);
    assert_eq!(
        plan.status.as_ref().map(|w| w.condition.status.as_str()),
        Some("True")
    );
    // Done for this run: not looked at again.
    assert!(open_targets(&nvj, "u1/1", &targets(&nvj).1).is_empty());
}

#[test]
fn a_stuck_rollout_is_recorded_in_progress_with_the_reason_once_it_lasts() {
    let mut nvj = nvj(RESTART);
    let t = targets(&nvj).1.remove(0);
    let deadline = json!({"conditions": [{"type": "Progressing", "status": "False",
        "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"model-7c9\" has timed out progressing."}]});
    let stuck = || deployment(Some("u1/1"), 1, deadline.clone());
    let (_, plan) = reconcile(&mut nvj, &[live(&t, stuck(), at(0))], at(2));
    assert_eq!(plan.status, None, "within the grace period");
    assert_eq!(
        plan.requeue,
        Some(Duration::from_secs(3)),
        "looked at again when it ends"
    );
    let (_, plan) = reconcile(&mut nvj, &[live(&t, stuck(), at(0))], at(5));
    let r = only_record(&plan);
    assert_eq!(r.outcome, TriggerOutcome::InProgress);
    assert_eq!(
        r.message.as_deref(),
        Some(
            "restart applied; the Deployment reports ProgressDeadlineExceeded: ReplicaSet \"model-7c9\" has timed out progressing."
        )
    );
    assert!(
        plan.changed
            .iter()
            .all(|r| r.outcome == TriggerOutcome::InProgress),
        "no Event for InProgress"
    );
    assert_eq!(
        plan.follow,
        vec![Follow::Watch { every_change: true }],
        "its next move updates the record"
    );
    // Nothing new: nothing written.
    let (_, plan) = reconcile(&mut nvj, &[live(&t, stuck(), at(0))], at(30));
    assert_eq!(plan.status, None);
    // Someone fixed it and it rolled out: Succeeded replaces the record.
    let (_, plan) = reconcile(
        &mut nvj,
        &[live(&t, deployment(Some("u1/1"), 2, json!({})), at(0))],
        at(40),
    );
    assert_eq!(only_record(&plan).outcome, TriggerOutcome::Succeeded);
}

#[test]
fn a_rollout_past_the_deadline_says_where_it_stands() {
    let mut nvj = nvj(RESTART);
    let t = targets(&nvj).1.remove(0);
    let rolling = || {
        deployment(
            Some("u1/1"),
            1,
            json!({"replicas": 3, "unavailableReplicas": 1}),
        )
    };
    let (_, plan) = reconcile(&mut nvj, &[live(&t, rolling(), at(0))], at(599));
    assert_eq!(plan.status, None);
    assert_eq!(
        plan.requeue,
        Some(Duration::from_secs(1)),
        "until the deadline"
    );
    let (_, plan) = reconcile(&mut nvj, &[live(&t, rolling(), at(0))], at(600));
    let r = only_record(&plan);
    assert_eq!(r.outcome, TriggerOutcome::InProgress);
    assert_eq!(
        r.message.as_deref(),
        Some(
            "restart applied; the rollout has not completed in 10 minutes: 1 of 2 replicas updated, 1 unavailable, 2 old still serving"
        )
    );
}

#[test]
fn a_sync_waits_behind_a_running_operation_then_fires_once() {
    let mut nvj =
        nvj("- {apiVersion: argoproj.io/v1alpha1, kind: Application, name: serving, action: sync}");
    let t = targets(&nvj).1.remove(0);
    let app = |phase: &str, version: &str| {
        json!({"metadata": {"name": "serving", "namespace": "ml", "resourceVersion": version},
        "status": {"operationState": {"phase": phase}}})
    };
    let (acts, plan) = reconcile(&mut nvj, &[live(&t, app("Running", "7"), at(0))], at(1));
    assert_eq!(
        (acts, plan.status.clone()),
        (vec![Act::Nothing], None),
        "a short wait is not recorded"
    );
    let (_, plan) = reconcile(&mut nvj, &[live(&t, app("Running", "7"), at(0))], at(6));
    let r = only_record(&plan);
    assert_eq!(
        (r.outcome, r.message.as_deref()),
        (
            TriggerOutcome::InProgress,
            Some("an Argo CD operation is running; syncing once it finishes")
        )
    );
    assert_eq!(plan.follow, vec![Follow::Watch { every_change: true }]);
    let (acts, plan) = reconcile(&mut nvj, &[live(&t, app("Succeeded", "9"), at(0))], at(20));
    let Act::Patch(p) = &acts[0] else {
        panic!("{acts:?}")
    };
    assert_eq!(
        p["metadata"]["resourceVersion"],
        json!("9"),
        "guarded by the version read"
    );
    assert_eq!(p["operation"]["info"][0]["value"], json!("u1/1"));
    assert_eq!(only_record(&plan).outcome, TriggerOutcome::Succeeded);
    assert!(
        open_targets(&nvj, "u1/1", &targets(&nvj).1).is_empty(),
        "never again for this run"
    );
}

fn pod(name: &str, started: &str) -> Pod {
    serde_json::from_value(
        json!({"metadata": {"name": name, "creationTimestamp": started},
        "status": {"startTime": started, "conditions": [{"type": "Ready", "status": "True"}]}}),
    )
    .expect("pod")
}

#[test]
fn an_eviction_in_progress_is_recorded_and_looked_at_on_a_timer() {
    let mut nvj = nvj(
        "- {apiVersion: apps/v1, kind: Deployment, name: model, action: restart, strategy: evict}",
    );
    let t = targets(&nvj).1.remove(0);
    let mut obs = live(&t, deployment(None, 2, json!({})), at(1));
    if let Found::Live { pods, .. } = &mut obs.found {
        *pods = Some(PodList::Listed(vec![
            pod("b", "2027-01-15T07:00:00Z"),
            pod("a", "2027-01-15T06:00:00Z"),
        ]));
    }
    let (acts, plan) = reconcile(&mut nvj, std::slice::from_ref(&obs), at(1));
    assert_eq!(acts, vec![Act::Evict("a".into())], "the oldest first");
    let r = only_record(&plan);
    assert_eq!(
        (r.outcome, r.message.as_deref()),
        (
            TriggerOutcome::InProgress,
            Some("evicted pod a; waiting for its replacement")
        )
    );
    assert_eq!(
        (plan.follow.clone(), plan.requeue),
        (vec![Follow::Stop], Some(act::EVICTION_POLL))
    );
    // A PodDisruptionBudget refuses the next one: still in progress, saying so.
    let step = refused_eviction(&obs, "u1/1", at(3), "b", Refusal::Budget);
    let (_, all) = targets(&nvj);
    let plan = records::plan(&nvj, "u1/1", &all, &[(obs.clone(), step)], DEADLINE, at(3));
    assert_eq!(
        only_record(&plan).message.as_deref(),
        Some("a PodDisruptionBudget does not allow evicting pod b now")
    );
}

#[test]
fn a_denied_entry_is_recorded_at_once_with_an_event() {
    let mut nvj = nvj(
        "- {apiVersion: apps/v1, kind: Deployment, name: model, namespace: prod, action: restart}",
    );
    let t = targets(&nvj).1.remove(0);
    let mut elsewhere = deployment(None, 2, json!({}));
    elsewhere["metadata"]["namespace"] = json!("prod");
    let (acts, plan) = reconcile(&mut nvj, &[live(&t, elsewhere, at(0))], at(0));
    assert_eq!(acts, vec![Act::Nothing], "never acted on");
    let r = only_record(&plan);
    assert_eq!(r.outcome, TriggerOutcome::Denied);
    assert!(
        r.message
            .as_deref()
            .is_some_and(|m| m.contains("mlops.dev/allow-triggers-from: \"ml\"")),
        "{r:?}"
    );
    assert_eq!(plan.changed.len(), 1, "a Warning Event");
    // Read refused by RBAC: denied too, naming the namespace.
    let mut nvj2 = super::tests::nvj(RESTART);
    let t2 = targets(&nvj2).1.remove(0);
    let refused = Observed {
        found: Found::ReadDenied,
        ..live(&t2, json!({}), at(0))
    };
    let (_, plan) = reconcile(&mut nvj2, &[refused], at(0));
    assert_eq!(
        only_record(&plan).message.as_deref(),
        Some("this controller may not read Deployment in namespace ml (RBAC)")
    );
}

#[test]
fn a_malformed_entry_is_a_condition_and_one_warning() {
    let mut nvj = nvj("- {apiVersion: apps/v1, kind: Deployment, action: restart}");
    let Work::Invalid { run, error } = work(&nvj) else {
        panic!("invalid")
    };
    let invalid = invalid(&nvj, &run, &error, at(0)).expect("something to say");
    assert_eq!(
        (
            invalid.condition.status.as_str(),
            invalid.condition.reason.as_str()
        ),
        ("False", "InvalidTrigger")
    );
    assert!(
        invalid.warning.starts_with("run u1/1: "),
        "{}",
        invalid.warning
    );
    assert!(
        invalid.condition.message.contains("name"),
        "names the field: {}",
        invalid.condition.message
    );
    if let Some(s) = nvj.status.as_mut() {
        s.conditions = vec![invalid.condition.clone()];
    }
    assert_eq!(super::invalid(&nvj, &run, &error, at(9)), None, "said once");
}

/// The target as not found, looked at since `since`.
fn missing(t: &TriggerTarget, since: Timestamp) -> Observed {
    Observed {
        found: Found::Missing,
        ..live(t, json!({}), since)
    }
}

#[test]
fn a_target_not_created_yet_is_waited_for_until_the_deadline() {
    let mut nvj = nvj(RESTART);
    let t = targets(&nvj).1.remove(0);
    // A later sync wave usually creates it within moments: nothing written, but its creation
    // wakes the NVJ whatever state it is created in.
    let (acts, plan) = reconcile(&mut nvj, &[missing(&t, at(1))], at(2));
    assert_eq!((acts, plan.status), (vec![Act::Nothing], None));
    assert_eq!(plan.follow, vec![Follow::Watch { every_change: true }]);
    assert_eq!(plan.requeue, Some(Duration::from_secs(4)), "the grace ends");
    // Still missing after the grace period: said, without an Event.
    let (_, plan) = reconcile(&mut nvj, &[missing(&t, at(1))], at(7));
    let r = only_record(&plan);
    assert_eq!(
        (r.outcome, r.message.as_deref()),
        (
            TriggerOutcome::InProgress,
            Some("Deployment ml/model not found; waiting for it to be created")
        )
    );
    assert_eq!(plan.follow, vec![Follow::Watch { every_change: true }]);
    let (_, plan) = reconcile(&mut nvj, &[missing(&t, at(1))], at(30));
    assert_eq!(plan.status, None, "nothing new");
    assert_eq!(plan.requeue, Some(Duration::from_secs(60)));
    // Never created: Failed at the deadline, with an Event, and not looked at again.
    let (_, plan) = reconcile(&mut nvj, &[missing(&t, at(1))], at(590));
    assert_eq!(plan.requeue, Some(Duration::from_secs(11)), "the deadline");
    let (_, plan) = reconcile(&mut nvj, &[missing(&t, at(1))], at(601));
    let r = only_record(&plan);
    assert_eq!(
        (r.outcome, r.message.as_deref()),
        (
            TriggerOutcome::Failed,
            Some("Deployment ml/model not found (waited 10 minutes for it to be created)")
        )
    );
    assert_eq!(plan.changed.len(), 1, "one Event");
    assert_eq!(plan.follow, vec![Follow::Stop]);
    assert!(open_targets(&nvj, "u1/1", &targets(&nvj).1).is_empty());
}

/// A Deployment created at `created`, rolled out (`updated` of 2) and never restarted.
fn created(at: Timestamp, updated: i64) -> Value {
    let mut d = deployment(None, updated, json!({}));
    d["metadata"]["creationTimestamp"] = json!(at.to_string());
    d
}

#[test]
fn a_target_created_after_the_run_is_not_restarted_and_succeeds_once_rolled_out() {
    // The run completed at(0); a later sync wave created the model server at(2).
    let mut nvj = nvj(RESTART);
    let t = targets(&nvj).1.remove(0);
    let (acts, plan) = reconcile(&mut nvj, &[missing(&t, at(1))], at(1));
    assert_eq!((acts, plan.status), (vec![Act::Nothing], None));
    let (acts, plan) = reconcile(&mut nvj, &[live(&t, created(at(2), 1), at(1))], at(2));
    assert_eq!(acts, vec![Act::Nothing], "it starts with this run's output");
    assert_eq!(plan.status, None, "nothing recorded while it rolls out");
    let (acts, plan) = reconcile(&mut nvj, &[live(&t, created(at(2), 2), at(1))], at(4));
    assert_eq!(acts, vec![Act::Nothing]);
    let r = only_record(&plan);
    assert_eq!(
        (r.outcome, r.message.as_deref()),
        (
            TriggerOutcome::Succeeded,
            Some("created after the run completed (not restarted); rollout complete")
        )
    );
    // Created within the second the run completed, after a read that found none: not restarted
    // either.
    let mut nvj = self::nvj(RESTART);
    let seen = Observed {
        seen_missing: true,
        ..live(&t, created(at(0), 2), at(1))
    };
    let (acts, plan) = reconcile(&mut nvj, &[seen], at(1));
    assert_eq!(acts, vec![Act::Nothing]);
    assert_eq!(
        only_record(&plan).message.as_deref(),
        Some("created after the run completed (not restarted); rollout complete")
    );
    // One created before the run completed, or within the same second (it may have started
    // before) with no read that found none: restarted.
    for when in [at(-30), at(0)] {
        let mut nvj = self::nvj(RESTART);
        let (acts, _) = reconcile(&mut nvj, &[live(&t, created(when, 2), at(1))], at(1));
        assert!(
            matches!(&acts[0], Act::Patch(_)),
            "created {when}: {acts:?}"
        );
    }
}

#[test]
fn a_rollout_of_a_created_target_past_the_deadline_keeps_saying_it_was_not_restarted() {
    let mut nvj = nvj(RESTART);
    let t = targets(&nvj).1.remove(0);
    let (_, plan) = reconcile(&mut nvj, &[live(&t, created(at(2), 1), at(2))], at(603));
    assert_eq!(
        only_record(&plan).message.as_deref(),
        Some(
            "created after the run completed (not restarted); the rollout has not completed in 10 minutes: 1 of 2 replicas updated, 0 unavailable, 1 old still serving"
        )
    );
}
