//! Where a restarted target's rollout stands, read where each kind reports it (pure). The kinds
//! table names each kind's reader.

use k8s_openapi::jiff::Timestamp;
use nbg_core::annotations;
use nbg_core::foreign::flux::FluxObject;
use nbg_core::foreign::{InferenceService, RestartMarker};
use serde_json::Value;

use crate::live::LiveTarget;

/// Where a target's rollout stands, as the target reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum RolloutState {
    Complete,
    /// Under way; nothing to report yet.
    Rolling,
    /// It will not complete without someone acting (the target says so): why.
    Stuck(String),
}

/// A kind's rollout reading. `predictor` is the predictor Deployment of an InferenceService in
/// KServe's Standard mode, where that is what rolls.
pub type StateFn = fn(&LiveTarget, Option<&LiveTarget>) -> RolloutState;
/// Where a rollout stands in words, for a record that says it has not completed in time.
pub type ProgressFn = fn(&LiveTarget, Option<&LiveTarget>) -> Option<String>;

fn num(live: &LiveTarget, pointer: &str) -> i64 {
    live.int(pointer).unwrap_or(0)
}

/// Kinds that are done once the action is applied (sync, refresh).
pub fn complete_at_once(_: &LiveTarget, _: Option<&LiveTarget>) -> RolloutState {
    RolloutState::Complete
}

pub fn no_progress(_: &LiveTarget, _: Option<&LiveTarget>) -> Option<String> {
    None
}

/// Whether Flux has handled our reconcile request: `status.lastHandledReconcileAt` is the value
/// we wrote, or a later request's (someone's `flux reconcile` after ours serves ours too).
fn flux_handled(live: &LiveTarget, object: &FluxObject) -> bool {
    let Some(requested) = live
        .annotation("/metadata/annotations", annotations::RECONCILE_REQUESTED)
        .map(RestartMarker::parse)
    else {
        return false;
    };
    let Some(handled) = object.last_handled_reconcile_at() else {
        return false;
    };
    handled == requested.time
        || matches!(
            (handled.parse::<Timestamp>(), requested.time.parse::<Timestamp>()),
            (Ok(handled), Ok(requested)) if handled >= requested
        )
}

/// A Flux object asked to reconcile: complete once Flux handled the request and reports the
/// current generation Ready; stuck while it reports it not Ready after handling it (Flux retries
/// on its own, so it may still turn Ready).
pub fn flux_reconcile_state(live: &LiveTarget, _: Option<&LiveTarget>) -> RolloutState {
    let Some(object) = live.flux() else {
        return RolloutState::Rolling;
    };
    let reconciling = object.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Reconciling" && c.status == "True")
    });
    if !flux_handled(live, object) || reconciling {
        return RolloutState::Rolling;
    }
    match object.ready() {
        Some(ready) if ready.status == "True" => RolloutState::Complete,
        Some(ready) if ready.status == "False" => RolloutState::Stuck(format!(
            "Flux reconciled it and reports it not Ready ({}): {}",
            ready.reason, ready.message
        )),
        _ => RolloutState::Rolling,
    }
}

pub fn flux_reconcile_progress(live: &LiveTarget, _: Option<&LiveTarget>) -> Option<String> {
    let object = live.flux()?;
    if !flux_handled(live, object) {
        return Some(format!(
            "Flux has not handled the request yet (status.lastHandledReconcileAt: {}); is its controller running?",
            object.last_handled_reconcile_at().unwrap_or("none")
        ));
    }
    Some(match object.ready() {
        Some(ready) => format!(
            "Ready {} ({}): {}",
            ready.status, ready.reason, ready.message
        ),
        None => "Flux has not reported Ready for the current generation".to_string(),
    })
}

/// A Deployment's progress deadline passed, as its condition says.
fn deployment_deadline(live: &LiveTarget) -> Option<String> {
    if !live.observed() {
        // The condition is about an older generation until the controller observes this one.
        return None;
    }
    let conditions = live.object.pointer("/status/conditions")?.as_array()?;
    let c = conditions.iter().find(|c| {
        c.get("type").and_then(Value::as_str) == Some("Progressing")
            && c.get("status").and_then(Value::as_str) == Some("False")
            && c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
    })?;
    Some(format!(
        "the Deployment reports ProgressDeadlineExceeded: {}",
        c.get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message")
    ))
}

pub fn deployment_state(live: &LiveTarget, _: Option<&LiveTarget>) -> RolloutState {
    let want = live.int("/spec/replicas").unwrap_or(1);
    let complete = live.observed()
        && num(live, "/status/updatedReplicas") == want
        && num(live, "/status/availableReplicas") == want
        && num(live, "/status/replicas") == want;
    if complete {
        return RolloutState::Complete;
    }
    deployment_deadline(live).map_or(RolloutState::Rolling, RolloutState::Stuck)
}

/// As `kubectl rollout status` sees it: new replicas, those not available, old ones left.
fn replicas(d: &LiveTarget) -> String {
    let updated = num(d, "/status/updatedReplicas");
    let old = num(d, "/status/replicas") - updated;
    format!(
        "{updated} of {} replicas updated, {} unavailable{}",
        d.int("/spec/replicas").unwrap_or(1),
        num(d, "/status/unavailableReplicas"),
        if old > 0 {
            format!(", {old} old still serving")
        } else {
            String::new()
        }
    )
}

pub fn deployment_progress(live: &LiveTarget, _: Option<&LiveTarget>) -> Option<String> {
    Some(replicas(live))
}

pub fn statefulset_state(live: &LiveTarget, _: Option<&LiveTarget>) -> RolloutState {
    let want = live.int("/spec/replicas").unwrap_or(1);
    let complete = live.observed()
        && live.text("/status/updateRevision") == live.text("/status/currentRevision")
        && num(live, "/status/readyReplicas") == want;
    if complete {
        RolloutState::Complete
    } else {
        RolloutState::Rolling
    }
}

pub fn statefulset_progress(live: &LiveTarget, _: Option<&LiveTarget>) -> Option<String> {
    Some(format!(
        "{} of {} replicas ready",
        num(live, "/status/readyReplicas"),
        live.int("/spec/replicas").unwrap_or(1)
    ))
}

pub fn daemonset_state(live: &LiveTarget, _: Option<&LiveTarget>) -> RolloutState {
    let want = num(live, "/status/desiredNumberScheduled");
    // As `kubectl rollout status`: absent counts are zero (omitted when empty).
    let complete = live.observed()
        && num(live, "/status/updatedNumberScheduled") >= want
        && num(live, "/status/numberAvailable") >= want;
    if complete {
        RolloutState::Complete
    } else {
        RolloutState::Rolling
    }
}

pub fn daemonset_progress(live: &LiveTarget, _: Option<&LiveTarget>) -> Option<String> {
    Some(format!(
        "{} of {} pods updated, {} available",
        num(live, "/status/updatedNumberScheduled"),
        num(live, "/status/desiredNumberScheduled"),
        num(live, "/status/numberAvailable")
    ))
}

pub fn argo_rollout_state(live: &LiveTarget, _: Option<&LiveTarget>) -> RolloutState {
    let Some(rollout) = live.rollout() else {
        return RolloutState::Rolling;
    };
    if rollout.restart_complete() {
        return RolloutState::Complete;
    }
    if !rollout.observed() {
        return RolloutState::Rolling;
    }
    if let Some(c) = rollout.deadline_exceeded() {
        return RolloutState::Stuck(format!(
            "the Rollout reports ProgressDeadlineExceeded: {}",
            c.message.as_deref().unwrap_or("no message")
        ));
    }
    match rollout.phase() {
        Some(phase @ ("Paused" | "Degraded")) => RolloutState::Stuck(
            match rollout.status.as_ref().and_then(|s| s.message.as_deref()) {
                Some(m) => format!("the Rollout is {phase}: {m}"),
                None => format!("the Rollout is {phase}"),
            },
        ),
        _ => RolloutState::Rolling,
    }
}

pub fn argo_rollout_progress(live: &LiveTarget, _: Option<&LiveTarget>) -> Option<String> {
    live.rollout()?
        .phase()
        .map(|phase| format!("the Rollout is {phase}"))
}

/// KServe reports both modes in its status. Serverless: a new ready revision; Standard: see
/// [`standard_state`].
pub fn inference_service_state(live: &LiveTarget, predictor: Option<&LiveTarget>) -> RolloutState {
    let Some(isvc) = live.inference_service() else {
        return RolloutState::Rolling;
    };
    if isvc.standard_mode() {
        return standard_state(isvc, predictor);
    }
    if isvc.rollout_complete() {
        return RolloutState::Complete;
    }
    isvc.rollout_blocked()
        .map_or(RolloutState::Rolling, RolloutState::Stuck)
}

/// Standard mode: what rolls is the predictor Deployment. Complete once that Deployment's pod
/// template carries the InferenceService's restart marker (KServe copied it), the Deployment
/// has rolled out (as any Deployment), and KServe reports Ready. KServe's `observedGeneration`
/// is not read: in this mode it is the Deployment's, not the InferenceService's.
fn standard_state(isvc: &InferenceService, predictor: Option<&LiveTarget>) -> RolloutState {
    if let Some(why) = isvc.rollout_blocked() {
        return RolloutState::Stuck(why);
    }
    let Some(deployment) = predictor else {
        // KServe has not created it (yet).
        return RolloutState::Rolling;
    };
    if !carries_restart(isvc, deployment) {
        // KServe has not copied this restart into the predictor yet.
        return RolloutState::Rolling;
    }
    match deployment_state(deployment, None) {
        RolloutState::Complete if isvc.ready() => RolloutState::Complete,
        RolloutState::Complete | RolloutState::Rolling => RolloutState::Rolling,
        RolloutState::Stuck(why) => RolloutState::Stuck(format!(
            "predictor Deployment {}: {why}",
            isvc.predictor_deployment_name()
        )),
    }
}

/// Whether the predictor Deployment's pod template carries the InferenceService's restart.
fn carries_restart(isvc: &InferenceService, deployment: &LiveTarget) -> bool {
    let carried = deployment.annotation(
        "/spec/template/metadata/annotations",
        annotations::RESTARTED_AT,
    );
    isvc.restart_marker()
        .is_none_or(|m| carried == Some(m.value))
}

pub fn inference_service_progress(
    live: &LiveTarget,
    predictor: Option<&LiveTarget>,
) -> Option<String> {
    let isvc = live.inference_service()?;
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
        Some(d) => {
            if carries_restart(isvc, d) {
                format!("predictor Deployment {name}: {}; {ready}", replicas(d))
            } else {
                format!("KServe has not rolled the restart into predictor Deployment {name}")
            }
        }
    })
}

#[cfg(test)]
mod tests;
