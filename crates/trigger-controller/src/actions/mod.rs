//! What each action writes on its target, planned from the live object (pure). Exactly once
//! rests on one rule: the run's identity (`<uid>/<generation>`) is written in the same patch as
//! the action itself, so a controller that crashes anywhere and tries again finds the marker and
//! does nothing - the action is idempotent on the target.
//!
//! - [`restart`]: Deployments, StatefulSets, DaemonSets, InferenceServices, Argo Rollouts;
//! - [`sync`]: Argo CD Applications;
//! - [`reconcile`]: Flux's Kustomizations, HelmReleases, GitRepositories, OCIRepositories;
//! - refresh (every kind): `argocd.argoproj.io/refresh` on an Application, else
//!   `mlops.dev/refresh-requested`;
//! - restart with `strategy: evict` is planned from the pods, in [`crate::eviction`].
//!
//! Which kind supports what is the kinds table's ([`crate::kinds`]).

pub mod reconcile;
pub mod restart;
pub mod sync;

use k8s_openapi::jiff::Timestamp;
use nbg_core::annotations::{self, RefreshKind, RestartStrategy, TriggerAction, TriggerTarget};
use serde_json::{Value, json};

use crate::kinds::TargetKind;
use crate::live::LiveTarget;

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
    Unsupported(Unsupported),
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

/// An entry this controller cannot act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    #[error("{action} is not supported for {group}/{kind}")]
    Action {
        action: TriggerAction,
        group: String,
        kind: String,
    },
    /// Eviction is planned from the target's pods, never as a rollout restart.
    #[error("restart by eviction is planned from the target's pods")]
    Eviction,
    /// A suspended Flux object: Flux reconciles nothing on it until it is resumed.
    #[error(
        "{kind} {namespace}/{name} is suspended (spec.suspend: true), so Flux would not reconcile it; resume it (flux resume {command} {name} -n {namespace}) or drop it from the trigger"
    )]
    Suspended {
        kind: String,
        namespace: String,
        name: String,
        /// `flux resume`'s word for the kind.
        command: &'static str,
    },
    /// The kinds table pairs an action with a reader that does not produce what it needs.
    #[error("the target was not read as {0}")]
    NotRead(&'static str),
}

/// The run an action is for: its identity, the time stamped (RFC 3339, whole seconds) and when
/// it completed.
#[derive(Debug, Clone, Copy)]
pub struct RunStamp<'a> {
    pub run: &'a str,
    pub now: &'a str,
    pub completed: Option<Timestamp>,
}

/// Plans `target.action` on `live`, a target of `kind` (`None`: a kind outside the table, which
/// only refresh supports).
pub fn plan(
    target: &TriggerTarget,
    kind: Option<&TargetKind>,
    live: &LiveTarget,
    run: &RunStamp<'_>,
) -> Plan {
    if target.strategy == RestartStrategy::Evict {
        return Plan::Unsupported(Unsupported::Eviction);
    }
    let how = match target.action {
        TriggerAction::Restart => kind.and_then(|k| k.restart),
        TriggerAction::Sync => kind.and_then(|k| k.sync),
        TriggerAction::Reconcile => kind.and_then(|k| k.reconcile),
        TriggerAction::Refresh => return refresh(target, live, run.run),
    };
    match how {
        Some(act) => act(live, run),
        None => Plan::Unsupported(Unsupported::Action {
            action: target.action,
            group: target.group().to_string(),
            kind: target.kind.clone(),
        }),
    }
}

/// `mlops.dev/refresh-requested: <run>` on any kind; an Application gets Argo CD's own refresh
/// annotation too.
fn refresh(target: &TriggerTarget, live: &LiveTarget, run: &str) -> Plan {
    if live.annotation("/metadata/annotations", annotations::REFRESH_REQUESTED) == Some(run) {
        return Plan::AlreadyApplied;
    }
    let mut a = serde_json::Map::new();
    a.insert(annotations::REFRESH_REQUESTED.into(), json!(run));
    if live.application().is_some() {
        let how = match target.refresh {
            RefreshKind::Normal => "normal",
            RefreshKind::Hard => "hard",
        };
        a.insert(annotations::ARGOCD_REFRESH.into(), json!(how));
    }
    Plan::Patch(json!({"metadata": {"annotations": a}}))
}

#[cfg(test)]
pub(crate) mod tests;
