//! The reconciler's I/O: fetch the NVJ's pods, decide, apply. Status is written with
//! server-side apply as `nvj-validator`, with only the fields this controller owns (never
//! `status.triggers`, never other writers' conditions).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use nbg_core::conditions;
use nbg_core::nvj::{NotebookValidationJob, NotebookValidationJobStatus, Phase};
use nbg_runtime::ReconcileError;
use nbg_runtime::events::Events;
use nbg_runtime::runner::WatchContext;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use super::decide::{self, CONDITION_UNSUPPORTED, Plan, Settings};
use super::pod::{self, LABEL_NVJ_UID, PodSettings};
use crate::NAME;

/// Errors of one reconcile; the variant name is the metric label and Event reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot build the validation pod: {0}")]
    PodSpec(#[from] pod::BuildError),
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "Kube",
            Error::PodSpec(_) => "PodSpec",
        }
    }
    fn is_transient(&self) -> bool {
        matches!(self, Error::Kube(_))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    /// `ValidationSucceeded`, `CellFailed`, `GoldenMismatch`, `Timeout`, `RetriesExhausted`, ...
    result: String,
}

/// Validations by result, their duration, and runs in progress.
#[derive(Clone)]
pub struct ValidationMetrics {
    validations: Family<ResultLabels, Counter>,
    duration: Histogram,
    in_progress: Gauge,
    running: Arc<Mutex<HashSet<String>>>,
}

impl ValidationMetrics {
    pub fn register(registry: &nbg_runtime::metrics::SharedRegistry) -> Self {
        let this = Self {
            validations: Family::default(),
            duration: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            in_progress: Gauge::default(),
            running: Arc::default(),
        };
        if let Ok(mut r) = registry.write() {
            r.register(
                "validations",
                "Finished validation runs, by result",
                this.validations.clone(),
            );
            r.register(
                "validation_duration_seconds",
                "Duration of finished validation runs",
                this.duration.clone(),
            );
            r.register(
                "validations_in_progress",
                "Validation runs in progress",
                this.in_progress.clone(),
            );
        }
        this
    }

    /// Counts a status written for the NVJ with `uid` (at most one run of an NVJ is in
    /// progress: a spec change replaces the run, it does not add one).
    fn observe(&self, uid: &str, before: Option<Phase>, after: &NotebookValidationJobStatus) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        match after.phase {
            Some(p) if p.is_terminal() => {
                running.remove(uid);
                if before.is_none_or(|b| !b.is_terminal()) {
                    let result = after
                        .condition(conditions::READY)
                        .map(|c| c.reason.clone())
                        .unwrap_or_default();
                    self.validations
                        .get_or_create(&ResultLabels { result })
                        .inc();
                    if let (Some(s), Some(e)) = (&after.start_time, &after.completion_time) {
                        self.duration
                            .observe(e.0.duration_since(s.0).as_secs_f64().max(0.0));
                    }
                }
            }
            Some(_) => {
                running.insert(uid.to_string());
            }
            None => {}
        }
        self.in_progress
            .set(i64::try_from(running.len()).unwrap_or(i64::MAX));
    }

    /// A deleted NVJ's run is no longer in progress.
    fn forget(&self, uid: &str) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(uid);
            self.in_progress
                .set(i64::try_from(running.len()).unwrap_or(i64::MAX));
        }
    }
}

pub struct NvjReconciler {
    client: Client,
    events: Events,
    settings: Settings,
    pod_settings: PodSettings,
    metrics: ValidationMetrics,
}

impl NvjReconciler {
    pub fn new(
        client: Client,
        events: Events,
        settings: Settings,
        pod_settings: PodSettings,
        metrics: ValidationMetrics,
    ) -> Self {
        Self {
            client,
            events,
            settings,
            pod_settings,
            metrics,
        }
    }
}

/// The status fields this controller owns, as an apply patch body.
fn owned_status(status: &NotebookValidationJobStatus) -> NotebookValidationJobStatus {
    let mine = [
        conditions::READY,
        conditions::RECONCILING,
        conditions::STALLED,
        conditions::VALIDATION_COMPLETE,
        CONDITION_UNSUPPORTED,
    ];
    let mut status = status.clone();
    status.triggers.clear();
    status
        .conditions
        .retain(|c| mine.contains(&c.type_.as_str()));
    status
}

impl nbg_runtime::Reconciler for NvjReconciler {
    type Object = NotebookValidationJob;
    type Error = Error;

    fn name(&self) -> &'static str {
        NAME
    }

    fn forget(&self, nvj: &NotebookValidationJob) {
        if let Some(uid) = nvj.metadata.uid.as_deref() {
            self.metrics.forget(uid);
        }
    }

    async fn reconcile(&self, nvj: Arc<NotebookValidationJob>) -> Result<Action, Error> {
        if nvj.metadata.deletion_timestamp.is_some() {
            // Its pods are owned by it: the garbage collector removes them.
            return Ok(Action::await_change());
        }
        let namespace = nvj.namespace().unwrap_or_default();
        let uid = nvj.metadata.uid.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let owned = pods
            .list(&ListParams::default().labels(&format!("{LABEL_NVJ_UID}={uid}")))
            .await?
            .items;
        let plan: Plan = decide::decide(&nvj, &owned, Timestamp::now(), &self.settings);
        let reference = nvj.object_ref(&());

        // Status first, conditioned on the version this decision was made from: a reconcile
        // working from a stale copy (the watch lags behind our own writes) fails here with a
        // conflict and is retried on fresh data, before it can touch any pod.
        if let Some(status) = &plan.status {
            nbg_runtime::status::apply_status(
                &self.client,
                nvj.as_ref(),
                NAME,
                &owned_status(status),
                true,
            )
            .await?;
            let before = nvj.status.as_ref().and_then(|s| s.phase).filter(|_| {
                nvj.status.as_ref().and_then(|s| s.observed_generation) == nvj.metadata.generation
            });
            let run = format!("{uid}/{}", nvj.metadata.generation.unwrap_or(0));
            self.metrics.observe(&uid, before, status);
            if before != status.phase {
                let object = format!("{namespace}/{}", nvj.name_any());
                let phase = status.phase.map(|p| p.as_str()).unwrap_or_default();
                let message = status.message.as_deref().unwrap_or_default();
                if status.phase == Some(Phase::Failed) {
                    tracing::warn!(object, run, phase, "{message}");
                } else {
                    tracing::info!(object, run, phase, "{message}");
                }
            }
        }
        for pod_name in &plan.delete_pods {
            match pods.delete(pod_name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(attempt) = plan.create_attempt {
            let seconds = i64::try_from(plan.timeout.as_secs().max(1)).unwrap_or(i64::MAX / 2);
            let pod =
                pod::build(&nvj, attempt, seconds, &self.pod_settings).map_err(Error::PodSpec)?;
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            match pods
                .create(
                    &PostParams {
                        field_manager: Some(NAME.into()),
                        ..PostParams::default()
                    },
                    &pod,
                )
                .await
            {
                Ok(_) => {
                    let note = format!("created validation pod {pod_name} (attempt {attempt})");
                    self.events
                        .normal(&reference, "PodCreated", "CreatePod", note)
                        .await;
                }
                // Created before a crash or by an earlier reconcile: the same pod, adopted.
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        for e in &plan.events {
            if e.warning {
                self.events
                    .warning(&reference, e.reason, "Validate", e.note.clone())
                    .await;
            } else {
                self.events
                    .normal(&reference, e.reason, "Validate", e.note.clone())
                    .await;
            }
        }
        Ok(plan
            .requeue
            .map_or_else(Action::await_change, Action::requeue))
    }

    fn configure(
        &self,
        controller: Controller<NotebookValidationJob>,
        watch: &WatchContext<'_>,
    ) -> Controller<NotebookValidationJob> {
        // Metadata only: ownership is all the mapping needs.
        let pods = watcher(
            watch.api::<PartialObjectMeta<Pod>>(),
            watcher::Config::default().labels("app.kubernetes.io/managed-by=nvj-validator"),
        );
        controller.owns_stream(watch.resilient("pods", pods).touched_objects())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: Phase) -> NotebookValidationJobStatus {
        NotebookValidationJobStatus {
            phase: Some(phase),
            ..NotebookValidationJobStatus::default()
        }
    }

    fn in_progress(registry: &nbg_runtime::metrics::SharedRegistry) -> String {
        nbg_runtime::metrics::encode(registry)
            .lines()
            .find(|l| l.starts_with("nbg_validations_in_progress "))
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn the_in_progress_gauge_follows_nvjs_not_runs_and_forgets_deleted_ones() {
        let registry = nbg_runtime::metrics::new_registry();
        let m = ValidationMetrics::register(&registry);
        m.observe("a", None, &status(Phase::Initializing));
        // A spec change: a new run of the same NVJ replaces the old one.
        m.observe("a", None, &status(Phase::ValidationRunning));
        m.observe("b", None, &status(Phase::ValidationRunning));
        assert_eq!(in_progress(&registry), "nbg_validations_in_progress 2");
        m.observe(
            "b",
            Some(Phase::ValidationRunning),
            &status(Phase::Succeeded),
        );
        assert_eq!(in_progress(&registry), "nbg_validations_in_progress 1");
        // Deleted while running.
        m.forget("a");
        assert_eq!(in_progress(&registry), "nbg_validations_in_progress 0");
    }
}
