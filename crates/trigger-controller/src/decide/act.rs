//! Per target: what to do now and the outcome that follows once it is done (pure).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use nbg_core::annotations::{RestartStrategy, TriggerAction, TriggerTarget};
use nbg_core::nvj::{NotebookValidationJob, TriggerOutcome, TriggerRecord};
use serde_json::{Value, json};

use super::{completion_time, served};
use crate::actions::{self, RunStamp};
use crate::authorize::{self, Policy};
use crate::eviction::{self, EvictionStep, SelectorError};
use crate::kinds;
use crate::live::{LiveTarget, Unreadable};
use crate::rollout::RolloutState;
use crate::waiting::TargetKey;

/// How often an eviction in progress looks at the pods (they are not watched).
pub const EVICTION_POLL: Duration = Duration::from_secs(2);

/// One open target as the reconcile found it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub target: TriggerTarget,
    /// The target (its namespace the NVJ's when the entry names none).
    pub key: TargetKey,
    /// What rolls when it restarts, which the NVJ waits on too (KServe's predictor Deployment).
    pub rolls_with: Option<TargetKey>,
    pub found: Found,
    /// Since when the NVJ waits on this target (its first look: now).
    pub waiting_since: Timestamp,
    /// Whether the target's changes reach this controller through a watch.
    pub watched: bool,
    /// Whether a read after the run completed found no target (so it was created after).
    pub seen_missing: bool,
}

#[derive(Debug, Clone)]
pub enum Found {
    /// The cluster does not serve the kind.
    NotServed,
    /// This controller may not read it (RBAC).
    ReadDenied,
    Missing,
    Unreadable(Unreadable),
    Live {
        live: Box<LiveTarget>,
        predictor: Predictor,
        /// For `strategy: evict`, once authorized: the target's pods.
        pods: Option<PodList>,
    },
}

/// The object that rolls for the target (KServe's predictor Deployment in Standard mode).
#[derive(Debug, Clone, PartialEq)]
pub enum Predictor {
    NotApplicable,
    Read(Option<LiveTarget>),
    /// This controller may not read it (RBAC): its name.
    Denied(String),
}

#[derive(Debug, Clone)]
pub enum PodList {
    Listed(Vec<Pod>),
    Unselectable(SelectorError),
    Denied,
}

/// What to do on the target now.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    Nothing,
    /// A JSON merge patch guarded by the resourceVersion it was planned from.
    Patch(Value),
    /// Evict this pod through the Eviction API.
    Evict(String),
    /// Ask the new predictor of a restarted model ([`super::served`]); the answer makes the
    /// step.
    AskModel(Box<super::served::Ask>),
}

/// What acting on one target comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Record this outcome; when it is not final, look again as `Wake` says.
    Record(Box<TriggerRecord>, Wake),
    /// The restart is applied (now or earlier) and rolling out, with where it stands as the
    /// target reports it. Recorded only when it completes, is stuck, or outlasts the deadline.
    Rolling(Box<TriggerRecord>, Option<String>),
    /// The target does not exist (yet): a later sync wave, or the same sync, may create it.
    /// This record (`InProgress`, saying so) is written once the wait outlasts the grace
    /// period; after the deadline the outcome is `Failed`.
    Missing(Box<TriggerRecord>),
}

/// When to look at a target again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The outcome is final.
    Never,
    /// When the target changes (its watch), or every few seconds when it is not watched.
    OnTargetChange,
    /// After this long (eviction: the target's pods are not watched).
    After(Duration),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub act: Act,
    /// The outcome once `act` is done.
    pub step: Step,
}

/// A refused eviction, as the API server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 429: a PodDisruptionBudget does not allow it now.
    Budget,
    /// 404: the pod is gone already.
    Gone,
    /// 403: RBAC.
    Forbidden,
}

/// Whole seconds, as `kubectl rollout restart` writes them (RFC 3339).
fn stamp(now: Timestamp) -> String {
    Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

pub(super) fn record(
    obs: &Observed,
    run: &str,
    now: Timestamp,
    outcome: TriggerOutcome,
    message: String,
) -> Box<TriggerRecord> {
    let t = &obs.target;
    Box::new(TriggerRecord {
        api_version: t.api_version.clone(),
        kind: t.kind.clone(),
        namespace: obs.key.namespace.clone(),
        name: t.name.clone(),
        action: t.action.as_str().to_string(),
        run: run.to_string(),
        outcome,
        message: Some(message),
        time: Time(now),
        rollout_complete_time: None,
        served_model: None,
    })
}

/// What a Succeeded record says.
fn succeeded(action: TriggerAction) -> String {
    match action {
        TriggerAction::Restart => "restart applied; rollout complete",
        TriggerAction::Sync => "sync operation requested",
        TriggerAction::Refresh => "refresh requested",
        TriggerAction::Reconcile => "reconcile requested; Flux reconciled it and reports it Ready",
    }
    .into()
}

/// Decides what to do on one observed target for `run`, at `now`.
pub fn decide_target(
    nvj: &NotebookValidationJob,
    run: &str,
    obs: &Observed,
    policy: &Policy,
    now: Timestamp,
) -> Decision {
    let t = &obs.target;
    let ns = &obs.key.namespace;
    let only = |step| Decision {
        act: Act::Nothing,
        step,
    };
    let record = |outcome, message| record(obs, run, now, outcome, message);
    let done = |outcome, message| only(Step::Record(record(outcome, message), Wake::Never));
    let waiting = |message| {
        only(Step::Record(
            record(TriggerOutcome::InProgress, message),
            Wake::OnTargetChange,
        ))
    };
    let (live, predictor, pods) = match &obs.found {
        Found::NotServed => {
            return done(
                TriggerOutcome::Failed,
                format!("{} {} is not served by this cluster", t.api_version, t.kind),
            );
        }
        Found::ReadDenied => {
            return done(
                TriggerOutcome::Denied,
                format!(
                    "this controller may not read {} in namespace {ns} (RBAC)",
                    t.kind
                ),
            );
        }
        Found::Missing => {
            return only(Step::Missing(record(
                TriggerOutcome::InProgress,
                format!(
                    "{} {ns}/{} not found; waiting for it to be created",
                    t.kind, t.name
                ),
            )));
        }
        Found::Unreadable(e) => return done(TriggerOutcome::Failed, e.to_string()),
        Found::Live {
            live,
            predictor,
            pods,
        } => (live.as_ref(), predictor, pods),
    };
    if let Err(denied) = authorized(policy, nvj, t, live) {
        return done(TriggerOutcome::Denied, denied.to_string());
    }
    // Created after the run completed (a later sync wave applied it once this run was healthy):
    // it starts with this run's output, so restarting it would only roll it a second time.
    // Known from a read after the run that found none, or from its creationTimestamp.
    let created_after_run =
        t.action == TriggerAction::Restart && (obs.seen_missing || created_after(live, nvj));
    let applied = if created_after_run {
        "created after the run completed (not restarted)".to_string()
    } else if t.action == TriggerAction::Reconcile {
        "reconcile requested".to_string()
    } else {
        format!("{} applied", t.action)
    };
    let underway = if t.action == TriggerAction::Reconcile {
        "waiting for Flux to reconcile it"
    } else {
        "rolling out"
    };
    let kind = kinds::find(t.group(), &t.kind);
    if !created_after_run {
        if t.strategy == RestartStrategy::Evict {
            return evict(nvj, run, obs, live, pods.as_ref(), now);
        }
        let stamp = stamp(now);
        let at = RunStamp {
            run,
            now: &stamp,
            completed: completion_time(nvj),
        };
        match actions::plan(t, kind, live, &at) {
            actions::Plan::AlreadyApplied => {}
            actions::Plan::Wait(why) => return waiting(why.to_string()),
            actions::Plan::Unsupported(why) => {
                return done(TriggerOutcome::Failed, why.to_string());
            }
            actions::Plan::Patch(mut patch) => {
                // Applies only to the version planned from (409 otherwise): a stale cached copy
                // can never act twice.
                patch["metadata"]["resourceVersion"] = json!(live.resource_version());
                // A sync or refresh is done once requested; a restart once rolled out, a
                // reconcile once Flux has handled it.
                let step = if matches!(t.action, TriggerAction::Restart | TriggerAction::Reconcile)
                {
                    Step::Rolling(
                        record(TriggerOutcome::InProgress, format!("{applied}; {underway}")),
                        None,
                    )
                } else {
                    Step::Record(
                        record(TriggerOutcome::Succeeded, succeeded(t.action)),
                        Wake::Never,
                    )
                };
                return Decision {
                    act: Act::Patch(patch),
                    step,
                };
            }
        }
    }
    let predictor = match predictor {
        Predictor::NotApplicable => None,
        Predictor::Read(deployment) => deployment.as_ref(),
        Predictor::Denied(name) => {
            return waiting(format!(
                "{applied}; this controller may not read KServe's predictor Deployment {ns}/{name} (RBAC), so it cannot tell when it has rolled out"
            ));
        }
    };
    let Some(kind) = kind else {
        // Kinds outside the table are only refreshed: done once applied.
        return done(TriggerOutcome::Succeeded, succeeded(t.action));
    };
    match (kind.rollout)(live, predictor) {
        RolloutState::Complete => {
            let complete = if created_after_run {
                format!("{applied}; rollout complete")
            } else {
                succeeded(t.action)
            };
            if let Some(ask) = ask_model(nvj, run, obs, live, &complete, now) {
                return ask;
            }
            let mut r = record(TriggerOutcome::Succeeded, complete);
            if t.action == TriggerAction::Restart {
                r.rollout_complete_time = Some(Time(now));
            }
            only(Step::Record(r, Wake::Never))
        }
        RolloutState::Rolling => only(Step::Rolling(
            record(TriggerOutcome::InProgress, format!("{applied}; {underway}")),
            (kind.progress)(live, predictor),
        )),
        RolloutState::Stuck(why) => waiting(format!("{applied}; {why}")),
    }
}

/// A restart of a model `spec.modelValidation` checks, rolled out: the question to its new
/// predictor (or why it cannot be asked). `None`: no model check for this target.
fn ask_model(
    nvj: &NotebookValidationJob,
    run: &str,
    obs: &Observed,
    live: &LiveTarget,
    complete: &str,
    now: Timestamp,
) -> Option<Decision> {
    let t = &obs.target;
    if !served::restarts_a_model(t) {
        return None;
    }
    let ns = &obs.key.namespace;
    let since = served::since(nvj, run, obs, now);
    let failed = |why: String| {
        let mut r = record(
            obs,
            run,
            now,
            TriggerOutcome::Failed,
            format!("{complete}; the served model cannot be checked: {why}"),
        );
        r.rollout_complete_time = Some(Time(since));
        Decision {
            act: Act::Nothing,
            step: Step::Record(r, Wake::Never),
        }
    };
    let checks = match served::checks(nvj) {
        Ok(Some(checks)) if checks.covers(ns, &t.name) => checks,
        Ok(_) => return None,
        Err(e) => return Some(failed(e.to_string())),
    };
    let request = match crate::served_model::request(
        &checks,
        ns,
        &t.name,
        live.object.get("spec"),
        live.object.get("status"),
    ) {
        Ok(request) => request,
        Err(why) => return Some(failed(why)),
    };
    let ask = served::Ask {
        request,
        checks,
        since,
        done: complete.to_string(),
    };
    // The step is the answer's (the reconcile asks); until then, nothing is recorded.
    let step = Step::Record(
        record(
            obs,
            run,
            now,
            TriggerOutcome::InProgress,
            complete.to_string(),
        ),
        Wake::After(served::ASK_AGAIN),
    );
    Some(Decision {
        act: Act::AskModel(Box::new(ask)),
        step,
    })
}

/// Whether the target was created after the run completed (whole seconds, as both are
/// stored: one created in the same second may have started before, so it is restarted).
fn created_after(live: &LiveTarget, nvj: &NotebookValidationJob) -> bool {
    let created = live
        .text("/metadata/creationTimestamp")
        .and_then(|t| t.parse::<Timestamp>().ok());
    match (created, completion_time(nvj)) {
        (Some(created), Some(completed)) => created.as_second() > completed.as_second(),
        _ => false,
    }
}

/// Whether `nvj` may act on the live target (an Application or Kustomization elsewhere: if it
/// manages the NVJ).
pub fn authorized(
    policy: &Policy,
    nvj: &NotebookValidationJob,
    t: &TriggerTarget,
    live: &LiveTarget,
) -> Result<(), authorize::Denied> {
    let manager = match (live.application(), live.flux()) {
        (Some(app), _) => Some(authorize::Manager::Application(
            authorize::application_attribution(&policy.tracking, app, nvj),
        )),
        (_, Some(k)) => Some(authorize::Manager::Kustomization(
            authorize::kustomization_attribution(k, nvj),
        )),
        _ => None,
    };
    authorize::authorize(policy, nvj, t, Some(&live.annotations()), manager.as_ref())
}

/// `restart` with `strategy: evict`: one eviction at a time, planned from the pods.
fn evict(
    nvj: &NotebookValidationJob,
    run: &str,
    obs: &Observed,
    live: &LiveTarget,
    pods: Option<&PodList>,
    now: Timestamp,
) -> Decision {
    let t = &obs.target;
    let step = |outcome, message: String, wake| {
        Step::Record(record(obs, run, now, outcome, message), wake)
    };
    let only = |step| Decision {
        act: Act::Nothing,
        step,
    };
    let failed = |why: String| only(step(TriggerOutcome::Failed, why, Wake::Never));
    let Some(completed) = completion_time(nvj) else {
        return failed("the run has no completion time to evict pods against".into());
    };
    let pods = match pods {
        Some(PodList::Listed(pods)) => pods,
        Some(PodList::Unselectable(why)) => return failed(why.to_string()),
        Some(PodList::Denied) => {
            return only(step(
                TriggerOutcome::Denied,
                format!(
                    "this controller may not list pods in namespace {} (RBAC)",
                    obs.key.namespace
                ),
                Wake::Never,
            ));
        }
        None => return failed("the target's pods were not listed".into()),
    };
    let wait = |why: String| step(TriggerOutcome::InProgress, why, Wake::After(EVICTION_POLL));
    match eviction::plan(t.group(), &t.kind, live, pods, completed) {
        EvictionStep::Done(how) => only(step(
            TriggerOutcome::Succeeded,
            format!("restarted by eviction: {how}"),
            Wake::Never,
        )),
        EvictionStep::Wait(why) => only(wait(why.to_string())),
        EvictionStep::Evict(pod) => Decision {
            step: wait(format!("evicted pod {pod}; waiting for its replacement")),
            act: Act::Evict(pod),
        },
    }
}

/// The outcome when the eviction of `pod` is refused.
pub fn refused_eviction(
    obs: &Observed,
    run: &str,
    now: Timestamp,
    pod: &str,
    refusal: Refusal,
) -> Step {
    let (outcome, message, wake) = match refusal {
        Refusal::Budget => (
            TriggerOutcome::InProgress,
            format!("a PodDisruptionBudget does not allow evicting pod {pod} now"),
            Wake::After(EVICTION_POLL),
        ),
        Refusal::Gone => (
            TriggerOutcome::InProgress,
            format!("pod {pod} is gone"),
            Wake::After(EVICTION_POLL),
        ),
        Refusal::Forbidden => (
            TriggerOutcome::Denied,
            format!(
                "this controller may not evict pods in namespace {} (RBAC)",
                obs.key.namespace
            ),
            Wake::Never,
        ),
    };
    Step::Record(record(obs, run, now, outcome, message), wake)
}

/// The namespace the NVJ lives in.
pub fn nvj_namespace(nvj: &NotebookValidationJob) -> String {
    nvj.namespace().unwrap_or_default()
}
