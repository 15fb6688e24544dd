//! How each kind restarts (pure; named in the kinds table).
//!
//! - Deployment / StatefulSet / DaemonSet: `kubectl rollout restart`'s pod-template annotation,
//!   with `mlops.dev/restarted-by-run` beside it in the template;
//! - InferenceService: `mlops.dev/restarted-at: "<run> <time>"` on the InferenceService, which
//!   KServe copies into the predictor's pod template (editing KServe's Deployment would be
//!   reverted). Serverless mode: with the predictor's revision at that moment, so completion
//!   waits for a new one; Standard mode: complete once the predictor Deployment carries the
//!   marker and has rolled out, and KServe reports Ready. A restart by another run at least a
//!   second after this run completed serves this run too (its model is loaded by it);
//! - Argo Rollout: `spec.restartAt`, with the marker annotation.

use k8s_openapi::jiff::Timestamp;
use nbg_core::annotations;
use nbg_core::foreign::RestartMarker;
use serde_json::{Value, json};

use super::{Plan, RESTARTED_BY_RUN, RunStamp};
use crate::live::LiveTarget;

pub fn pod_template(live: &LiveTarget, run: &RunStamp<'_>) -> Plan {
    if live.annotation("/spec/template/metadata/annotations", RESTARTED_BY_RUN) == Some(run.run) {
        return Plan::AlreadyApplied;
    }
    Plan::Patch(json!({"spec": {"template": {"metadata": {"annotations": {
        annotations::KUBECTL_RESTARTED_AT: run.now, RESTARTED_BY_RUN: run.run
    }}}}}))
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

pub fn inference_service(live: &LiveTarget, run: &RunStamp<'_>) -> Plan {
    let marker = live
        .annotation("/metadata/annotations", annotations::RESTARTED_AT)
        .map(RestartMarker::parse);
    if marker.is_some_and(|m| m.run == run.run || restarted_after(m.time, run.completed)) {
        return Plan::AlreadyApplied;
    }
    let mut a = serde_json::Map::new();
    a.insert(
        annotations::RESTARTED_AT.into(),
        json!(format!("{} {}", run.run, run.now)),
    );
    // Serverless mode: completion waits for a revision newer than this one. Standard mode has
    // no revisions: an earlier restart's is removed, none is written.
    let revision = live
        .inference_service()
        .and_then(|i| i.predictor_revision());
    match revision {
        Some(revision) => {
            a.insert(annotations::RESTARTED_FROM_REVISION.into(), json!(revision));
        }
        None if live
            .annotation(
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

pub fn argo_rollout(live: &LiveTarget, run: &RunStamp<'_>) -> Plan {
    if live.annotation("/metadata/annotations", RESTARTED_BY_RUN) == Some(run.run) {
        return Plan::AlreadyApplied;
    }
    Plan::Patch(json!({
        "metadata": {"annotations": {RESTARTED_BY_RUN: run.run}},
        "spec": {"restartAt": run.now}
    }))
}
