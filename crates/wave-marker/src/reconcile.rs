//! The reconciler's I/O: decide ([`crate::marks::decide`]) from the NVJ in the watch cache and the
//! clock, then apply with server-side apply as `wave-marker`: the annotations it owns on the
//! NVJ (never anyone else's), then its condition, then the Event.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use nbg_core::nvj::NotebookValidationJob;
use nbg_runtime::ReconcileError;
use nbg_runtime::events::Events;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::NAME;
use crate::marks::{self, ConditionChange, Plan};

/// Errors of one reconcile; the variant name is the metric label and Event reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "Kube",
        }
    }
    fn is_transient(&self) -> bool {
        true
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    /// `WaveComplete` or `WaveFailed`.
    result: String,
}

/// Marks written by result, and the lag from a run's completion to its mark.
#[derive(Clone)]
pub struct WaveMetrics {
    marks: Family<ResultLabels, Counter>,
    lag: Histogram,
}

impl WaveMetrics {
    pub fn register(registry: &nbg_runtime::metrics::SharedRegistry) -> Self {
        let this = Self {
            marks: Family::default(),
            lag: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
        };
        if let Ok(mut r) = registry.write() {
            r.register(
                "wave_marks",
                "Wave marks written, by result",
                this.marks.clone(),
            );
            r.register(
                "wave_mark_lag_seconds",
                "Time from a run's completionTime to its wave mark",
                this.lag.clone(),
            );
        }
        this
    }
}

/// Marks the sync waves of NVJs.
pub struct WaveReconciler {
    client: Client,
    events: Events,
    metrics: WaveMetrics,
}

impl WaveReconciler {
    pub fn new(client: Client, events: Events, metrics: WaveMetrics) -> Self {
        Self {
            client,
            events,
            metrics,
        }
    }

    async fn apply(&self, nvj: &NotebookValidationJob, plan: &Plan) -> Result<(), Error> {
        if let Some(annotations) = &plan.annotations {
            apply_annotations(&self.client, nvj, annotations).await?;
        }
        let conditions = match &plan.condition {
            ConditionChange::Keep => None,
            ConditionChange::Set(c) => Some(vec![c.clone()]),
            ConditionChange::Remove => Some(Vec::new()),
        };
        if let Some(conditions) = conditions {
            let status = serde_json::json!({ "conditions": conditions });
            nbg_runtime::status::apply_status(&self.client, nvj, NAME, &status, false).await?;
        }
        Ok(())
    }
}

/// Applies `annotations` - every annotation wave-marker owns on `nvj`, so one it owned and
/// omits now is removed - under its field manager. Nothing else of the NVJ is in the body.
async fn apply_annotations(
    client: &Client,
    nvj: &NotebookValidationJob,
    annotations: &BTreeMap<String, String>,
) -> Result<(), kube::Error> {
    let body = serde_json::json!({
        "apiVersion": NotebookValidationJob::api_version(&()),
        "kind": NotebookValidationJob::kind(&()),
        "metadata": {"name": nvj.name_any(), "annotations": annotations},
    });
    let api: Api<NotebookValidationJob> =
        Api::namespaced(client.clone(), &nvj.namespace().unwrap_or_default());
    api.patch(
        &nvj.name_any(),
        &PatchParams::apply(NAME).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

impl nbg_runtime::Reconciler for WaveReconciler {
    type Object = NotebookValidationJob;
    type Error = Error;

    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, nvj: Arc<NotebookValidationJob>) -> Result<Action, Error> {
        let plan = marks::decide(&nvj, Timestamp::now());
        if plan.is_noop() {
            return Ok(Action::await_change());
        }
        self.apply(&nvj, &plan).await?;
        if let Some((result, lag)) = plan.marked {
            self.metrics
                .marks
                .get_or_create(&ResultLabels {
                    result: result.reason().to_string(),
                })
                .inc();
            if let Some(lag) = lag {
                self.metrics.lag.observe(lag.as_secs_f64());
            }
        }
        if let Some(event) = plan.event {
            // The mark is the record and is written; the Event is a notice. Published in the
            // background so the reconcile's slot is free for the next mark at once.
            let (events, reference) = (self.events.clone(), nvj.object_ref(&()));
            tokio::spawn(async move {
                if event.warning {
                    events
                        .warning(&reference, event.reason, "MarkWave", event.note)
                        .await;
                } else {
                    events
                        .normal(&reference, event.reason, "MarkWave", event.note)
                        .await;
                }
            });
        }
        Ok(Action::await_change())
    }
}
