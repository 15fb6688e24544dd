//! The reconciler's I/O: decide ([`crate::marks::decide`]) from the NVJ in the watch cache and the
//! clock, then apply with server-side apply as `wave-marker`: the annotations it owns on the
//! NVJ (never anyone else's), then its condition, then the Event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use nbg_core::nvj::NotebookValidationJob;
use nbg_runtime::events::Events;
use nbg_runtime::metrics::OutcomeMetrics;
use prometheus_client::encoding::EncodeLabelSet;

use crate::NAME;
use crate::marks::{self, ConditionChange, Plan};

/// Its reconciles fail only on API requests.
pub type Error = nbg_runtime::runner::ApiError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `WaveComplete` or `WaveFailed`.
    result: String,
}

/// Marks written by result (`nbg_wave_marks_total{result}`), and the lag from a run's
/// completion to its mark (`nbg_wave_mark_lag_seconds`).
pub type WaveMetrics = OutcomeMetrics<ResultLabels>;

/// Registers wave-marker's metrics.
pub fn register_metrics(registry: &nbg_runtime::metrics::SharedRegistry) -> WaveMetrics {
    OutcomeMetrics::register(
        registry,
        ("wave_marks", "Wave marks written, by result"),
        (
            "wave_mark_lag_seconds",
            "Time from a run's completionTime to its wave mark",
        ),
    )
}

/// Marks the sync waves of NVJs.
pub struct WaveReconciler {
    client: Client,
    events: Events,
    metrics: WaveMetrics,
    /// When one plan writes both the annotations and the status, the resourceVersion between
    /// the two writes, by `namespace/name`: a reconcile of that version would see the first
    /// write without the second and write the second again. It is skipped; the second write's
    /// own watch event follows.
    halfway: Mutex<HashMap<String, String>>,
}

fn key_of(nvj: &NotebookValidationJob) -> String {
    format!("{}/{}", nvj.namespace().unwrap_or_default(), nvj.name_any())
}

impl WaveReconciler {
    pub fn new(client: Client, events: Events, metrics: WaveMetrics) -> Self {
        Self {
            client,
            events,
            metrics,
            halfway: Mutex::default(),
        }
    }

    async fn apply(&self, nvj: &NotebookValidationJob, plan: &Plan) -> Result<(), Error> {
        let conditions = match &plan.condition {
            ConditionChange::Keep => None,
            ConditionChange::Set(c) => Some(vec![c.clone()]),
            ConditionChange::Remove => Some(Vec::new()),
        };
        if let Some(annotations) = &plan.annotations {
            let written =
                nbg_runtime::status::apply_annotations(&self.client, nvj, NAME, annotations)
                    .await?;
            if conditions.is_some()
                && let (Ok(mut halfway), Some(rv)) =
                    (self.halfway.lock(), written.resource_version())
            {
                halfway.insert(key_of(nvj), rv);
            }
        }
        if let Some(conditions) = conditions {
            let status = serde_json::json!({ "conditions": conditions });
            nbg_runtime::status::apply_status(&self.client, nvj, NAME, &status, false).await?;
        }
        Ok(())
    }
}

impl nbg_runtime::Reconciler for WaveReconciler {
    type Object = NotebookValidationJob;
    type Error = Error;

    fn name(&self) -> &'static str {
        NAME
    }

    fn forget(&self, nvj: &NotebookValidationJob) {
        if let Ok(mut halfway) = self.halfway.lock() {
            halfway.remove(&key_of(nvj));
        }
    }

    async fn reconcile(&self, nvj: Arc<NotebookValidationJob>) -> Result<Action, Error> {
        if let Ok(mut halfway) = self.halfway.lock()
            && let Some(rv) = halfway.remove(&key_of(&nvj))
            && nvj.resource_version() == Some(rv)
        {
            return Ok(Action::await_change());
        }
        let plan = marks::decide(&nvj, Timestamp::now());
        if plan.is_noop() {
            return Ok(Action::await_change());
        }
        self.apply(&nvj, &plan).await?;
        if let Some((result, lag)) = plan.marked {
            self.metrics.count(&ResultLabels {
                result: result.reason().to_string(),
            });
            if let Some(lag) = lag {
                self.metrics.observe_since_completion(lag);
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
