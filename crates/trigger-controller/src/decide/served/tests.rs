//! A restart of a checked model, replayed reconcile by reconcile with the clock as an argument:
//! what is asked, what each answer records, and `modelValidationResult`.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use nbg_core::annotations;
use nbg_core::nvj::{NotebookValidationJob, TriggerOutcome};
use serde_json::{Value, json};

use super::super::tests::{DEADLINE, at};
use super::super::*;
use super::*;
use crate::authorize::Policy;
use crate::live::LiveTarget;
use crate::waiting::TargetKey;

/// A Succeeded run `u1/1` in `ml` restarting InferenceService `fraud`, with this
/// `spec.modelValidation`.
fn nvj(model_validation: Value) -> NotebookValidationJob {
    serde_json::from_value(json!({
        "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
        "metadata": {"name": "train", "namespace": "ml", "uid": "u1", "generation": 1,
                     "annotations": {annotations::ON_SUCCESS_TRIGGER:
                        "- {apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, name: fraud, action: restart}"}},
        "spec": {"notebook": {"git": {"url": "https://example.com/r.git", "ref": "main"}, "path": "a.ipynb"},
                 "podConfig": {"containerImage": "python:3.12"}, "modelValidation": model_validation},
        "status": {"phase": "Succeeded", "observedGeneration": 1, "completionTime": "2027-01-15T08:00:00Z"}
    }))
    .expect("nvj")
}

fn checking(timeout: &str) -> Value {
    json!({"targetModels": ["fraud"], "timeout": timeout,
           "predictionValidation": {"testData": "[[2, 2], [0, 2]]", "expectedOutput": "[1, 0]"}})
}

/// `fraud`, restarted by run u1/1 and rolled out (serverless mode: KServe reports it).
fn rolled_out(nvj: &NotebookValidationJob) -> Observed {
    let Work::Act { targets, .. } = work(nvj) else {
        panic!("work")
    };
    let t = &targets[0];
    let object = json!({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "fraud", "namespace": "ml", "generation": 2, "resourceVersion": "7",
                     "annotations": {annotations::RESTARTED_AT: "u1/1 2027-01-15T08:00:01Z"}},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}},
        "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}});
    Observed {
        target: t.clone(),
        key: TargetKey::of(t, "ml"),
        rolls_with: None,
        found: Found::Live {
            live: Box::new(LiveTarget::of(t.group(), &t.kind, object)),
            predictor: Predictor::NotApplicable,
            pods: None,
        },
        waiting_since: at(1),
        watched: true,
        seen_missing: false,
    }
}

/// One reconcile at `now` whose question gets `answer`; the planned status written back.
fn reconcile(nvj: &mut NotebookValidationJob, answer: &Answer, now: Timestamp) -> Plan {
    let Work::Act { run, targets } = work(nvj) else {
        panic!("work")
    };
    let obs = rolled_out(nvj);
    let decision = decide_target(nvj, &run, &obs, &Policy::default(), now);
    let Act::AskModel(ask) = decision.act else {
        panic!("asks the model: {decision:?}")
    };
    assert!(
        ask.request
            .proxy_path()
            .starts_with("/api/v1/namespaces/ml/services/fraud-predictor:80/proxy/v1/models/fraud"),
        "{:?}",
        ask.request
    );
    let step = answered(&obs, &run, now, &ask, answer);
    let plan = plan(nvj, &run, &targets, &[(obs, step)], DEADLINE, now);
    if let (Some(w), Some(status)) = (&plan.status, nvj.status.as_mut()) {
        status.triggers = w.records.clone();
        status.conditions = vec![w.condition.clone()];
        status.model_validation_result = w.model_result.clone();
    }
    plan
}

fn answer(status: u16, body: Value) -> Answer {
    Answer::Http {
        status,
        body: body.to_string(),
    }
}

/// The `modelValidationResult` the last reconcile wrote.
fn model_result(nvj: &NotebookValidationJob) -> nbg_core::model_validation::ModelValidationResult {
    nvj.status
        .as_ref()
        .and_then(|s| s.model_validation_result.clone())
        .expect("a result")
}

fn record(nvj: &NotebookValidationJob) -> TriggerRecord {
    nvj.status.as_ref().expect("status").triggers[0].clone()
}

#[test]
fn only_the_expected_answer_records_the_restart_succeeded() {
    let mut nvj = nvj(checking("5m"));
    // Not up yet: one write saying so, keeping when the rollout was seen complete.
    let plan = reconcile(
        &mut nvj,
        &answer(503, json!({"kind": "Status", "message": "no endpoints"})),
        at(5),
    );
    assert_eq!(plan.requeue, Some(ASK_AGAIN));
    assert!(
        plan.changed.len() == 1
            && plan
                .status
                .as_ref()
                .is_some_and(|w| w.model_result.is_none())
    );
    let r = record(&nvj);
    assert_eq!(
        (r.outcome, r.message.as_deref()),
        (
            TriggerOutcome::InProgress,
            Some("restart applied; rollout complete; waiting for the new model to answer")
        )
    );
    assert_eq!(r.rollout_complete_time.map(|t| t.0), Some(at(5)));
    // Asked again: nothing new to write.
    let plan = reconcile(
        &mut nvj,
        &Answer::Unreachable("no answer within 10 s".into()),
        at(7),
    );
    assert_eq!(plan.status, None);
    // The answer: Succeeded, with what it predicted; the result for the run.
    let plan = reconcile(
        &mut nvj,
        &answer(200, json!({"predictions": [1, 0]})),
        at(9),
    );
    assert_eq!(plan.changed.len(), 1, "one Event");
    let r = record(&nvj);
    assert_eq!(r.outcome, TriggerOutcome::Succeeded);
    assert_eq!(
        r.message.as_deref(),
        Some(
            "restart applied; rollout complete; the new model answered as expected: predicted [1,0], expected [1,0] (tolerance 0.01)"
        )
    );
    assert_eq!(
        r.rollout_complete_time.map(|t| t.0),
        Some(at(5)),
        "kept from the first look"
    );
    let result = model_result(&nvj);
    assert!(result.success);
    assert_eq!(result.run, "u1/1");
    let checked = result.existing_environment_check.expect("checked");
    assert_eq!(checked.models_checked[0].model_name, "ml/fraud");
    assert!(checked.models_checked[0].healthy);
    assert_eq!(
        checked
            .prediction_validation
            .and_then(|p| p.actual_output)
            .as_deref(),
        Some("[1,0]")
    );
}

#[test]
fn a_wrong_answer_fails_at_once_and_the_result_says_why() {
    let mut nvj = nvj(checking("5m"));
    reconcile(
        &mut nvj,
        &answer(200, json!({"predictions": [1, 1]})),
        at(5),
    );
    let r = record(&nvj);
    assert_eq!(r.outcome, TriggerOutcome::Failed);
    let served = r.served_model.expect("servedModel");
    assert!(served.available && !served.healthy);
    let result = model_result(&nvj);
    assert!(!result.success);
    assert_eq!(
        result.message.as_deref(),
        Some(
            "ml/fraud: restart applied; rollout complete; the new model answers wrongly: predicted [1,1], expected [1,0]: prediction [1] is 1, expected 0 (difference 1, tolerance 0.01)"
        )
    );
}

#[test]
fn no_answer_within_the_timeout_fails_with_the_last_answer() {
    let mut nvj = nvj(checking("30s"));
    let silent = answer(503, json!({"error": "loading"}));
    reconcile(&mut nvj, &silent, at(5));
    let plan = reconcile(&mut nvj, &silent, at(33));
    assert_eq!(plan.requeue, Some(Duration::from_secs(2)));
    assert_eq!(record(&nvj).outcome, TriggerOutcome::InProgress);
    reconcile(&mut nvj, &silent, at(35));
    let r = record(&nvj);
    assert_eq!(r.outcome, TriggerOutcome::Failed);
    assert_eq!(
        r.message.as_deref(),
        Some(
            "restart applied; rollout complete; the new model did not answer within 30 s (spec.modelValidation.timeout): HTTP 503 to POST /v1/models/fraud:predict on Service ml/fraud-predictor:80: {\"error\":\"loading\"}"
        )
    );
    assert!(r.served_model.is_some_and(|m| !m.available));
}

#[test]
fn a_model_the_nvj_does_not_restart_is_named_as_not_checked() {
    let mut nvj = nvj(json!({"targetModels": ["fraud", "churn"]}));
    reconcile(
        &mut nvj,
        &answer(200, json!({"name": "fraud", "ready": true})),
        at(5),
    );
    assert_eq!(record(&nvj).outcome, TriggerOutcome::Succeeded);
    let result = model_result(&nvj);
    assert!(!result.success);
    let message = result.message.unwrap_or_default();
    assert!(
        message.starts_with("ml/churn: not checked: this NVJ's mlops.dev/on-success-trigger does not restart InferenceService ml/churn"),
        "{message}"
    );
}

#[test]
fn a_check_that_cannot_be_made_fails_the_record_naming_why() {
    let nvj = nvj(json!({"targetModels": ["fraud"],
                         "predictionValidation": {"testData": "[[1,", "expectedOutput": "[1]"}}));
    let Work::Act { run, .. } = work(&nvj) else {
        panic!("work")
    };
    let d = decide_target(&nvj, &run, &rolled_out(&nvj), &Policy::default(), at(5));
    let Step::Record(r, Wake::Never) = d.step else {
        panic!("{d:?}")
    };
    assert_eq!(r.outcome, TriggerOutcome::Failed);
    assert!(
        r.message.as_deref().is_some_and(|m| m.starts_with(
            "restart applied; rollout complete; the served model cannot be checked: spec.modelValidation.predictionValidation.testData: not JSON"
        )),
        "{r:?}"
    );
}

#[test]
fn models_to_check_without_a_trigger_are_reported_not_checked() {
    let mut nvj = nvj(checking("5m"));
    nvj.metadata.annotations = None;
    let Work::Act { run, targets } = work(&nvj) else {
        panic!("a result to write")
    };
    assert!(targets.is_empty());
    let plan = plan(&nvj, &run, &targets, &[], DEADLINE, at(1));
    let result = plan.status.and_then(|w| w.model_result).expect("a result");
    assert!(!result.success);
    assert!(
        result
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("ml/fraud: not checked")),
        "{result:?}"
    );
    // No modelValidation, no trigger: nothing to do.
    let mut plain = nvj.clone();
    plain.spec.model_validation = None;
    assert!(matches!(work(&plain), Work::Nothing));
}
