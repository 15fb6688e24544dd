//! decide() as a pure function: NVJs and pods in, plans out.

use super::*;
use crate::protocol::report::{Outcome, RunReport, encode};
use nbg_core::nvj::{CellResult, CellStatus};
use serde_json::json;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("valid")
}

fn nvj(
    generation: i64,
    status: Option<NotebookValidationJobStatus>,
    extra_spec: serde_json::Value,
) -> NotebookValidationJob {
    let mut spec = json!({"notebook": {"git": {"url": "https://x/r.git", "ref": "main"}, "path": "train.ipynb"},
                          "podConfig": {"containerImage": "img"}, "timeout": "10m"});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    let mut n: NotebookValidationJob = serde_json::from_value(json!({
        "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
        "metadata": {"name": "train", "namespace": "team", "uid": "u1", "generation": generation}, "spec": spec
    }))
    .expect("nvj");
    n.status = status;
    n
}

fn pod(name: &str, generation: i64, status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"mlops.dev/generation": generation.to_string()},
                                  "creationTimestamp": "2027-01-15T08:00:00Z"}, "status": status}))
    .expect("pod")
}

fn finished(name: &str, exit: i32, message: &str) -> Pod {
    pod(
        name,
        1,
        json!({"phase": if exit == 0 {"Succeeded"} else {"Failed"},
        "containerStatuses": [{"name": "notebook", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
                               "state": {"terminated": {"exitCode": exit, "message": message}}}]}),
    )
}

/// Runs one decision and applies its status, as the reconciler would.
fn step(n: &mut NotebookValidationJob, pods: &[Pod], now: Timestamp) -> Plan {
    let plan = decide(n, pods, now, &Settings::default());
    if let Some(s) = &plan.status {
        n.status = Some(s.clone());
    }
    plan
}

fn phase(n: &NotebookValidationJob) -> Option<Phase> {
    n.status.as_ref().and_then(|s| s.phase)
}

#[test]
fn a_new_job_initializes_and_creates_attempt_zero() {
    let mut n = nvj(1, None, json!({}));
    let plan = step(&mut n, &[], at(0));
    assert_eq!(plan.create_attempt, Some(0));
    let s = n.status.clone().expect("status");
    assert_eq!(
        (s.phase, s.observed_generation, s.retry_count),
        (Some(Phase::Initializing), Some(1), Some(0))
    );
    assert_eq!(s.validation_pod_name.as_deref(), Some("train-v1-0"));
    assert!(conditions::is_true(&s.conditions, conditions::RECONCILING));
    assert!(!conditions::is_true(&s.conditions, conditions::READY));
}

#[test]
fn a_running_pod_moves_to_validation_running_then_success_is_recorded_with_every_cell() {
    let mut n = nvj(1, None, json!({}));
    step(&mut n, &[], at(0));
    step(
        &mut n,
        &[pod("train-v1-0", 1, json!({"phase": "Running"}))],
        at(5),
    );
    assert_eq!(phase(&n), Some(Phase::ValidationRunning));
    let cells = (0..3)
        .map(|i| CellResult {
            cell_index: i,
            status: CellStatus::Success,
            execution_time: None,
            output: None,
            error_message: None,
            checks: Vec::new(),
        })
        .collect();
    let report = RunReport::new(Outcome::Succeeded, "all 3 code cells succeeded").with_cells(cells);
    let plan = step(
        &mut n,
        &[finished("train-v1-0", 0, &encode(&report))],
        at(60),
    );
    assert!(plan.create_attempt.is_none() && plan.delete_pods.is_empty());
    let s = n.status.clone().expect("status");
    assert_eq!(s.phase, Some(Phase::Succeeded));
    assert_eq!(s.results.len(), 3);
    assert!(s.completion_time.is_some());
    assert!(
        conditions::is_true(&s.conditions, conditions::READY)
            && conditions::is_true(&s.conditions, conditions::VALIDATION_COMPLETE)
    );
    // Terminal: nothing more happens.
    let plan = step(
        &mut n,
        &[finished("train-v1-0", 0, &encode(&report))],
        at(120),
    );
    assert!(plan.status.is_none() && plan.create_attempt.is_none());
}

#[test]
fn a_failing_cell_is_final_and_not_retried() {
    let mut n = nvj(1, None, json!({}));
    step(&mut n, &[], at(0));
    let report = RunReport::new(
        Outcome::CellFailed,
        "cell 3 (cellIndex 2) raised ValueError: empty",
    );
    let plan = step(
        &mut n,
        &[finished("train-v1-0", 1, &encode(&report))],
        at(30),
    );
    let s = n.status.clone().expect("status");
    assert_eq!((s.phase, s.retry_count), (Some(Phase::Failed), Some(0)));
    assert!(plan.create_attempt.is_none());
    assert_eq!(
        s.condition(conditions::STALLED).map(|c| c.reason.as_str()),
        Some("CellFailed")
    );
    assert!(s.message.unwrap_or_default().contains("cell 3"));
}

#[test]
fn infrastructure_failures_retry_with_backoff_until_exhausted() {
    let mut n = nvj(1, None, json!({}));
    step(&mut n, &[], at(0));
    let mut now = 10;
    for attempt in 0..3 {
        let name = format!("train-v1-{attempt}");
        // The pod dies without a report (e.g. node lost).
        let plan = step(&mut n, &[finished(&name, 137, "")], at(now));
        let s = n.status.clone().expect("status");
        assert_eq!(s.retry_count, Some(attempt + 1));
        assert_eq!(
            s.phase,
            Some(Phase::ValidationRunning),
            "retries never flap through other phases"
        );
        let next = format!("train-v1-{}", attempt + 1);
        assert_eq!(s.validation_pod_name.as_deref(), Some(next.as_str()));
        assert!(plan.requeue.is_some() && plan.create_attempt.is_none());
        // Before the backoff: wait. After: create the next attempt.
        let early = step(&mut n, &[], at(now + 1));
        assert!(early.create_attempt.is_none() && early.requeue.is_some());
        now += 700;
        let plan = step(&mut n, &[], at(now));
        assert_eq!(plan.create_attempt, Some(attempt + 1));
    }
    let plan = step(&mut n, &[finished("train-v1-3", 137, "")], at(now + 10));
    let s = n.status.clone().expect("status");
    assert_eq!(s.phase, Some(Phase::Failed));
    assert!(
        s.message
            .unwrap_or_default()
            .starts_with("failed after 3 retries"),
        "retry count in the message"
    );
    assert!(plan.create_attempt.is_none());
}

#[test]
fn a_pod_deleted_mid_run_is_retried() {
    let mut n = nvj(1, None, json!({}));
    step(&mut n, &[], at(0));
    step(
        &mut n,
        &[pod("train-v1-0", 1, json!({"phase": "Running"}))],
        at(5),
    );
    step(&mut n, &[], at(50));
    let s = n.status.clone().expect("status");
    assert_eq!(s.retry_count, Some(1));
    assert!(s.message.unwrap_or_default().contains("was deleted"));
}

#[test]
fn the_kubelet_deadline_is_a_timeout() {
    let mut n = nvj(1, None, json!({}));
    step(&mut n, &[], at(0));
    step(
        &mut n,
        &[pod(
            "train-v1-0",
            1,
            json!({"phase": "Failed", "reason": "DeadlineExceeded"}),
        )],
        at(700),
    );
    let s = n.status.clone().expect("status");
    assert_eq!(s.phase, Some(Phase::Failed));
    assert_eq!(
        s.condition(conditions::STALLED).map(|c| c.reason.as_str()),
        Some("Timeout")
    );
}

#[test]
fn the_controller_stops_a_pod_that_overruns_every_deadline() {
    let mut n = nvj(1, None, json!({}));
    step(&mut n, &[], at(0));
    let plan = step(
        &mut n,
        &[pod("train-v1-0", 1, json!({"phase": "Running"}))],
        at(10 * 60 + 120),
    );
    assert_eq!(plan.delete_pods, vec!["train-v1-0".to_string()]);
    assert_eq!(phase(&n), Some(Phase::Failed));
}

#[test]
fn a_spec_change_starts_a_new_run_and_removes_the_old_pod() {
    let mut n = nvj(1, None, json!({}));
    step(&mut n, &[], at(0));
    step(
        &mut n,
        &[finished(
            "train-v1-0",
            1,
            &encode(&RunReport::new(Outcome::CellFailed, "boom")),
        )],
        at(20),
    );
    assert_eq!(phase(&n), Some(Phase::Failed));
    n.metadata.generation = Some(2);
    let old = finished("train-v1-0", 1, "");
    let plan = step(&mut n, &[old], at(100));
    assert_eq!(plan.delete_pods, vec!["train-v1-0".to_string()]);
    assert_eq!(plan.create_attempt, Some(0));
    let s = n.status.clone().expect("status");
    assert_eq!(
        (s.phase, s.observed_generation, s.retry_count),
        (Some(Phase::Initializing), Some(2), Some(0))
    );
    assert!(s.results.is_empty() && s.completion_time.is_none());
    assert_eq!(s.validation_pod_name.as_deref(), Some("train-v2-0"));
}

#[test]
fn a_pod_created_before_a_crash_is_adopted() {
    let mut n = nvj(1, None, json!({}));
    let plan = step(
        &mut n,
        &[pod("train-v1-0", 1, json!({"phase": "Pending"}))],
        at(0),
    );
    assert_eq!(plan.create_attempt, None);
    assert!(plan.delete_pods.is_empty());
}

#[test]
fn invalid_specs_and_unsupported_features() {
    let mut bad = nvj(
        1,
        None,
        json!({"comparisonConfig": {"customTimestampPatterns": ["(oops"]}}),
    );
    let plan = step(&mut bad, &[], at(0));
    assert!(plan.create_attempt.is_none());
    assert_eq!(phase(&bad), Some(Phase::Failed));
    assert_eq!(plan.events[0].reason, "InvalidSpec");
    assert!(plan.events[0].note.contains("customTimestampPatterns[0]"));

    // A served-model check that could never run stops the run before it starts.
    let mut unchecked = nvj(1, None, json!({"modelValidation": {"platform": "kserve"}}));
    let plan = step(&mut unchecked, &[], at(0));
    assert!(plan.create_attempt.is_none());
    assert_eq!(phase(&unchecked), Some(Phase::Failed));
    assert!(
        plan.events[0]
            .note
            .contains("spec.modelValidation.targetModels: empty")
    );

    let mut legacy = nvj(
        1,
        None,
        json!({"podConfig": {"containerImage": "python:3.12", "buildConfig": {"strategy": "s2i"}}}),
    );
    let plan = step(&mut legacy, &[], at(0));
    assert_eq!(plan.create_attempt, Some(0), "the notebook still runs");
    assert!(plan.events.iter().any(|e| e.warning
        && e.reason == "UnsupportedFeature"
        && e.note.contains("spec.podConfig.buildConfig")));
    let s = legacy.status.expect("status");
    assert!(conditions::is_true(&s.conditions, CONDITION_UNSUPPORTED));
}

#[test]
fn an_image_that_cannot_be_pulled_is_retried_after_the_grace_period() {
    let mut n = nvj(1, None, json!({}));
    step(&mut n, &[], at(0));
    let pulling = |created: &str| {
        serde_json::from_value::<Pod>(json!({
            "metadata": {"name": "train-v1-0", "labels": {"mlops.dev/generation": "1"}, "creationTimestamp": created},
            "status": {"phase": "Pending", "containerStatuses": [{"name": "notebook", "image": "img", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"img\""}}}]}
        }))
        .expect("pod")
    };
    // Within the grace period: keep waiting, and say why at once.
    let plan = step(&mut n, &[pulling("2027-01-15T08:00:00Z")], at(60));
    assert_eq!(n.status.as_ref().and_then(|s| s.retry_count), Some(0));
    assert!(plan.delete_pods.is_empty());
    let message = n
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default();
    assert!(
        message.starts_with("container notebook cannot start: ImagePullBackOff"),
        "{message}"
    );
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == REASON_CONTAINER_WAITING)
    );
    // The same wait again: no second Event.
    let plan = step(&mut n, &[pulling("2027-01-15T08:00:00Z")], at(65));
    assert!(plan.events.is_empty() && plan.status.is_none());
    // Past it: an infrastructure failure, retried with a new pod.
    let plan = step(&mut n, &[pulling("2027-01-15T08:00:00Z")], at(400));
    let s = n.status.clone().expect("status");
    assert_eq!(s.retry_count, Some(1));
    assert!(s.message.unwrap_or_default().contains("ImagePullBackOff"));
    assert_eq!(plan.delete_pods, vec!["train-v1-0".to_string()]);
}

#[test]
fn a_pod_the_scheduler_cannot_place_is_named_at_once_and_waits() {
    let mut n = nvj(1, None, json!({}));
    step(&mut n, &[], at(0));
    // As kube-scheduler reports a claim that does not bind (the demo's first try on a real
    // node: the claim asked for more than the volume had).
    let pending: Pod = serde_json::from_value(json!({
        "metadata": {"name": "train-v1-0", "labels": {"mlops.dev/generation": "1"}, "creationTimestamp": "2027-01-15T08:00:00Z"},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."}]}
    }))
    .expect("pod");
    let plan = step(&mut n, std::slice::from_ref(&pending), at(5));
    let s = n.status.clone().expect("status");
    assert_eq!(s.phase, Some(Phase::ValidationRunning));
    assert_eq!(
        s.message.as_deref(),
        Some(
            "the validation pod cannot be scheduled: 0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. - check spec.podConfig.resources against the nodes' capacity, that the PersistentVolumeClaims of spec.podConfig.volumes can bind, and the pod's node selection"
        )
    );
    assert!(
        plan.delete_pods.is_empty(),
        "a new pod would wait the same way"
    );
    assert!(
        plan.events
            .iter()
            .any(|e| e.warning && e.reason == REASON_POD_UNSCHEDULABLE)
    );
    // Still so a minute later: nothing new to say, no retry.
    let plan = step(&mut n, &[pending], at(65));
    assert!(plan.events.is_empty() && plan.status.is_none() && plan.delete_pods.is_empty());
    assert_eq!(n.status.as_ref().and_then(|s| s.retry_count), Some(0));
}

#[test]
fn a_notebook_image_that_is_not_on_the_node_fails_the_run_at_once() {
    let mut n = nvj(1, None, json!({}));
    step(&mut n, &[], at(0));
    // As a real kubelet reports it: the init container finished, the notebook container waits.
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "train-v1-0", "labels": {"mlops.dev/generation": "1"}, "creationTimestamp": "2027-01-15T08:00:00Z"},
        "status": {"phase": "Pending",
            "initContainerStatuses": [{"name": "install-runner", "image": "runner", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
            "containerStatuses": [{"name": "notebook", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "Container image \"img\" is not present with pull policy of Never"}}}]}
    }))
    .expect("pod");
    let plan = step(&mut n, &[p], at(3));
    let s = n.status.clone().expect("status");
    assert_eq!(s.phase, Some(Phase::Failed));
    assert_eq!(
        s.retry_count,
        Some(0),
        "a new pod would wait for the same reason"
    );
    assert!(s.message.unwrap_or_default().contains("ErrImageNeverPull"));
    assert!(
        s.conditions
            .iter()
            .any(|c| c.reason == REASON_CONTAINER_CANNOT_START)
    );
    assert_eq!(plan.delete_pods, vec!["train-v1-0".to_string()]);
}

#[test]
fn an_oom_killed_notebook_keeps_its_cells_and_names_the_cell() {
    let mut n = nvj(1, None, json!({}));
    step(&mut n, &[], at(0));
    let mut report = RunReport::new(
        Outcome::CellFailed,
        "cell 2 (cellIndex 1) raised DeadKernel: the kernel died",
    );
    report.cells = vec![
        CellResult {
            cell_index: 0,
            status: CellStatus::Success,
            execution_time: None,
            output: None,
            error_message: None,
            checks: Vec::new(),
        },
        CellResult {
            cell_index: 1,
            status: CellStatus::Failure,
            execution_time: None,
            output: None,
            error_message: Some("DeadKernel".into()),
            checks: Vec::new(),
        },
    ];
    let p = pod(
        "train-v1-0",
        1,
        json!({"phase": "Failed",
        "containerStatuses": [{"name": "notebook", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
                               "state": {"terminated": {"exitCode": 1, "reason": "OOMKilled", "message": encode(&report)}}}]}),
    );
    step(&mut n, &[p], at(30));
    let s = n.status.expect("status");
    assert_eq!(s.phase, Some(Phase::Failed));
    assert_eq!(s.results.len(), 2);
    let message = s.message.unwrap_or_default();
    assert!(
        message.contains("(OOMKilled) while running cell 2 (cellIndex 1)"),
        "{message}"
    );
}

#[test]
fn a_report_that_cannot_be_read_is_never_a_success() {
    let mut n = nvj(1, None, json!({}));
    step(&mut n, &[], at(0));
    step(&mut n, &[finished("train-v1-0", 0, "Succeeded!")], at(30));
    let s = n.status.expect("status");
    assert_ne!(s.phase, Some(Phase::Succeeded));
    assert_eq!(s.retry_count, Some(1));
}

#[test]
fn a_runs_parameters_are_recorded_from_its_start_to_its_verdict() {
    let mut n = nvj(
        1,
        None,
        json!({"notebook": {"git": {"url": "https://x/r.git", "ref": "main"}, "path": "train.ipynb",
                            "parameters": {"epochs": "3", "dataset": "march"}}}),
    );
    step(&mut n, &[], at(0));
    let recorded = |n: &NotebookValidationJob| {
        n.status
            .as_ref()
            .map(|s| s.parameters.clone())
            .unwrap_or_default()
    };
    let expected: std::collections::BTreeMap<String, String> =
        [("dataset", "march"), ("epochs", "3")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(recorded(&n), expected);
    step(
        &mut n,
        &[pod("train-v1-0", 1, json!({"phase": "Running"}))],
        at(5),
    );
    let report = RunReport::new(Outcome::Succeeded, "all 1 code cells succeeded");
    step(
        &mut n,
        &[finished("train-v1-0", 0, &encode(&report))],
        at(60),
    );
    assert_eq!(phase(&n), Some(Phase::Succeeded));
    assert_eq!(recorded(&n), expected);
}
