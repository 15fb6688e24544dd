//! The reconciler: for a Succeeded run, act on each trigger target once and record it.
//!
//! For each entry of `mlops.dev/on-success-trigger`: if `status.triggers` already has a final
//! record for this run, nothing happens; otherwise the target is fetched, authorized, and the
//! planned patch (which carries the run's identity) applied; the record is written with this
//! controller's field manager. A crash between the patch and the record is harmless: the next
//! reconcile finds the marker on the target (`Plan::AlreadyApplied`) and only records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use nbg_core::annotations::{self, TriggerTarget};
use nbg_core::foreign::Application;
use nbg_core::nvj::{NotebookValidationJob, Phase, TriggerOutcome, TriggerRecord};
use nbg_runtime::ReconcileError;
use nbg_runtime::events::Events;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::NAME;
use crate::actions::{self, Plan};
use crate::authorize::{self, Policy};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        "Kube"
    }
    fn is_transient(&self) -> bool {
        true
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    kind: String,
    action: String,
    /// `Succeeded`, `Failed`, `Denied`.
    result: String,
}

/// Actions by kind, action and result; latency from the run's completion to the action applied.
#[derive(Clone)]
pub struct TriggerMetrics {
    actions: Family<ActionLabels, Counter>,
    latency: Histogram,
}

impl TriggerMetrics {
    pub fn register(registry: &nbg_runtime::metrics::SharedRegistry) -> Self {
        let this = Self {
            actions: Family::default(),
            latency: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
        };
        if let Ok(mut r) = registry.write() {
            r.register(
                "trigger_actions",
                "Trigger outcomes, by target kind, action and result",
                this.actions.clone(),
            );
            r.register(
                "trigger_latency_seconds",
                "From the NVJ's completion to the trigger's action being applied",
                this.latency.clone(),
            );
        }
        this
    }
}

pub struct TriggerReconciler {
    client: Client,
    events: Events,
    policy: Policy,
    metrics: TriggerMetrics,
}

impl TriggerReconciler {
    pub fn new(client: Client, events: Events, policy: Policy, metrics: TriggerMetrics) -> Self {
        Self {
            client,
            events,
            policy,
            metrics,
        }
    }

    async fn api_for(
        &self,
        t: &TriggerTarget,
        namespace: &str,
    ) -> Result<Api<DynamicObject>, kube::Error> {
        let (group, version) = t
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", t.api_version.as_str()));
        let gvk = GroupVersionKind::gvk(group, version, &t.kind);
        let (resource, _) = kube::discovery::pinned_kind(&self.client, &gvk).await?;
        Ok(Api::namespaced_with(
            self.client.clone(),
            namespace,
            &resource,
        ))
    }

    /// Acts on one target; returns the record to write (None: nothing to record yet).
    async fn act(
        &self,
        nvj: &NotebookValidationJob,
        t: &TriggerTarget,
        run: &str,
        now: &Time,
    ) -> Result<(TriggerRecord, bool), Error> {
        let nvj_ns = nvj.namespace().unwrap_or_default();
        let ns = t.namespace_or(&nvj_ns).to_string();
        let record = |outcome, message: String| TriggerRecord {
            api_version: t.api_version.clone(),
            kind: t.kind.clone(),
            namespace: ns.clone(),
            name: t.name.clone(),
            action: t.action.as_str().to_string(),
            run: run.to_string(),
            outcome,
            message: Some(message),
            time: now.clone(),
        };
        let api = match self.api_for(t, &ns).await {
            Ok(api) => api,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Ok((
                    record(
                        TriggerOutcome::Failed,
                        format!("{} is not served by this cluster", t.api_version),
                    ),
                    false,
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let live = match api.get_opt(&t.name).await {
            Ok(live) => live,
            // The controller's RBAC does not reach there: nothing can be done, say so.
            Err(kube::Error::Api(s)) if s.code == 403 => {
                let why = format!(
                    "this controller may not read {} in namespace {ns} (RBAC)",
                    t.kind
                );
                return Ok((record(TriggerOutcome::Denied, why), false));
            }
            Err(e) => return Err(e.into()),
        };
        let Some(live) = live else {
            return Ok((
                record(
                    TriggerOutcome::Failed,
                    format!("{} {ns}/{} not found", t.kind, t.name),
                ),
                false,
            ));
        };
        let managing_app = if t.group() == "argoproj.io" && t.kind == "Application" {
            let app: Application =
                serde_json::from_value(serde_json::to_value(&live).unwrap_or_default())
                    .unwrap_or_default();
            authorize::application_manages(&app, live.data.get("status"), nvj)
        } else {
            false
        };
        if let Err(denied) = authorize::authorize(
            &self.policy,
            nvj,
            t,
            live.metadata.annotations.as_ref(),
            managing_app,
        ) {
            return Ok((record(TriggerOutcome::Denied, denied.to_string()), false));
        }
        let value = serde_json::to_value(&live).unwrap_or_default();
        let stamp = now.0.to_string();
        match actions::plan(t, &value, run, &stamp) {
            Plan::AlreadyApplied => {}
            Plan::Wait(why) => return Ok((record(TriggerOutcome::InProgress, why), true)),
            Plan::Unsupported(why) => return Ok((record(TriggerOutcome::Failed, why), false)),
            Plan::Patch(patch) => {
                api.patch(
                    &t.name,
                    &PatchParams {
                        field_manager: Some(NAME.into()),
                        ..PatchParams::default()
                    },
                    &Patch::Merge(&patch),
                )
                .await?;
                let refreshed = api.get(&t.name).await?;
                let done = actions::rollout_complete(
                    t.group(),
                    &t.kind,
                    &serde_json::to_value(&refreshed).unwrap_or_default(),
                );
                let (outcome, message) = if done {
                    (TriggerOutcome::Succeeded, format!("{} applied", t.action))
                } else {
                    (
                        TriggerOutcome::InProgress,
                        format!("{} applied; waiting for the rollout to complete", t.action),
                    )
                };
                return Ok((record(outcome, message), !done));
            }
        }
        let done = actions::rollout_complete(t.group(), &t.kind, &value);
        if done {
            Ok((
                record(
                    TriggerOutcome::Succeeded,
                    format!("{} applied; rollout complete", t.action),
                ),
                false,
            ))
        } else {
            Ok((
                record(
                    TriggerOutcome::InProgress,
                    format!("{} applied; waiting for the rollout to complete", t.action),
                ),
                true,
            ))
        }
    }
}

/// The condition trigger-controller owns on the NVJ.
pub const CONDITION_TRIGGERS_VALID: &str = "TriggersValid";

fn triggers_valid(
    nvj: &NotebookValidationJob,
    valid: bool,
    reason: &str,
    message: &str,
) -> Condition {
    let now = Time(Timestamp::now());
    let mut c = nbg_core::conditions::condition(
        CONDITION_TRIGGERS_VALID,
        valid,
        reason,
        message,
        nvj.metadata.generation,
        &now,
    );
    // The transition time moves only when the status does.
    if let Some(old) = nvj
        .status
        .as_ref()
        .and_then(|s| s.condition(CONDITION_TRIGGERS_VALID))
        .filter(|o| o.status == c.status)
    {
        c.last_transition_time = old.last_transition_time.clone();
    }
    c
}

fn condition_changed(nvj: &NotebookValidationJob, c: &Condition) -> bool {
    let old = nvj
        .status
        .as_ref()
        .and_then(|s| s.condition(CONDITION_TRIGGERS_VALID));
    old.is_none_or(|o| {
        o.status != c.status
            || o.message != c.message
            || o.observed_generation != c.observed_generation
    })
}

impl TriggerReconciler {
    /// Everything this controller owns in the status, in one apply: with server-side apply,
    /// what a manager omits from its next apply is removed.
    async fn apply_status(
        &self,
        nvj: &NotebookValidationJob,
        triggers: Vec<TriggerRecord>,
        condition: Condition,
    ) -> Result<(), Error> {
        let status = serde_json::json!({"triggers": triggers, "conditions": [condition]});
        nbg_runtime::status::apply_status(&self.client, nvj, NAME, &status, false).await?;
        Ok(())
    }
}

fn final_outcome(o: TriggerOutcome) -> bool {
    !matches!(o, TriggerOutcome::InProgress)
}

impl nbg_runtime::Reconciler for TriggerReconciler {
    type Object = NotebookValidationJob;
    type Error = Error;

    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, nvj: Arc<NotebookValidationJob>) -> Result<Action, Error> {
        if nvj.current_phase() != Some(Phase::Succeeded) {
            return Ok(Action::await_change());
        }
        let Some(run) = nvj.run_id() else {
            return Ok(Action::await_change());
        };
        let Some(value) = nvj
            .annotations()
            .get(annotations::ON_SUCCESS_TRIGGER)
            .cloned()
        else {
            return Ok(Action::await_change());
        };
        let reference = nvj.object_ref(&());
        let existing: Vec<TriggerRecord> = nvj
            .status
            .as_ref()
            .map(|s| s.triggers.clone())
            .unwrap_or_default();
        let targets = match annotations::parse_on_success_trigger(&value) {
            Ok(t) => t,
            Err(e) => {
                // Never acted on: a condition and a Warning Event say why, naming entry and field.
                let condition = triggers_valid(&nvj, false, "InvalidTrigger", &e.to_string());
                if condition_changed(&nvj, &condition) {
                    self.apply_status(&nvj, existing, condition).await?;
                    self.events
                        .warning(
                            &reference,
                            "TriggerDenied",
                            "ParseTriggers",
                            format!("run {run}: {e}"),
                        )
                        .await;
                }
                return Ok(Action::await_change());
            }
        };
        let now = Time(Timestamp::now());
        let nvj_ns = nvj.namespace().unwrap_or_default();
        let mut records: BTreeMap<(String, String, String, String), TriggerRecord> = existing
            .into_iter()
            .map(|r| {
                (
                    (
                        r.kind.clone(),
                        r.namespace.clone(),
                        r.name.clone(),
                        r.action.clone(),
                    ),
                    r,
                )
            })
            .collect();
        let mut again = false;
        let mut changed = Vec::new();
        for t in &targets {
            let key = (
                t.kind.clone(),
                t.namespace_or(&nvj_ns).to_string(),
                t.name.clone(),
                t.action.as_str().to_string(),
            );
            if records
                .get(&key)
                .is_some_and(|r| r.run == run && final_outcome(r.outcome))
            {
                continue;
            }
            let (record, pending) = self.act(&nvj, t, &run, &now).await?;
            again |= pending;
            let before = records.get(&key).map(|r| (r.run.clone(), r.outcome));
            if before != Some((record.run.clone(), record.outcome)) {
                changed.push(record.clone());
            }
            records.insert(key, record);
        }
        let condition = triggers_valid(
            &nvj,
            true,
            "Valid",
            &format!("{} trigger targets", targets.len()),
        );
        if !changed.is_empty() || condition_changed(&nvj, &condition) {
            self.apply_status(&nvj, records.into_values().collect(), condition)
                .await?;
            let completed = nvj.status.as_ref().and_then(|s| s.completion_time.clone());
            for r in changed {
                if r.outcome != TriggerOutcome::InProgress {
                    let labels = ActionLabels {
                        kind: r.kind.clone(),
                        action: r.action.clone(),
                        result: format!("{:?}", r.outcome),
                    };
                    self.metrics.actions.get_or_create(&labels).inc();
                }
                if let (Some(c), true) = (
                    &completed,
                    matches!(
                        r.outcome,
                        TriggerOutcome::Succeeded | TriggerOutcome::InProgress
                    ),
                ) {
                    self.metrics
                        .latency
                        .observe(now.0.duration_since(c.0).as_secs_f64().max(0.0));
                }
                let target = format!("{} {} {}/{}", r.action, r.kind, r.namespace, r.name);
                let note = format!(
                    "{target} for run {run}: {}",
                    r.message.clone().unwrap_or_default()
                );
                match r.outcome {
                    TriggerOutcome::Succeeded => {
                        self.events
                            .normal(&reference, "TriggerSucceeded", "Trigger", note)
                            .await
                    }
                    TriggerOutcome::Denied => {
                        self.events
                            .warning(&reference, "TriggerDenied", "Trigger", note)
                            .await
                    }
                    TriggerOutcome::Failed => {
                        self.events
                            .warning(&reference, "TriggerFailed", "Trigger", note)
                            .await
                    }
                    TriggerOutcome::InProgress => {}
                }
            }
        }
        Ok(if again {
            Action::requeue(Duration::from_secs(5))
        } else {
            Action::await_change()
        })
    }
}
