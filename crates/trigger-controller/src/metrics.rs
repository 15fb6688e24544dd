//! trigger-controller's metrics.

use nbg_core::nvj::TriggerRecord;
use nbg_runtime::metrics::{OutcomeMetrics, SharedRegistry};
use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    kind: String,
    action: String,
    /// `Succeeded`, `Failed`, `Denied`.
    result: String,
}

impl ActionLabels {
    pub fn of(r: &TriggerRecord) -> Self {
        Self {
            kind: r.kind.clone(),
            action: r.action.clone(),
            result: r.outcome.as_str().to_string(),
        }
    }
}

/// Actions by kind, action and result (`nbg_trigger_actions_total`); latency from the run's
/// completion to the action applied (`nbg_trigger_latency_seconds`).
pub type TriggerMetrics = OutcomeMetrics<ActionLabels>;

/// Registers trigger-controller's metrics.
pub fn register(registry: &SharedRegistry) -> TriggerMetrics {
    OutcomeMetrics::register(
        registry,
        (
            "trigger_actions",
            "Trigger outcomes, by target kind, action and result",
        ),
        (
            "trigger_latency_seconds",
            "From the NVJ's completion to the trigger's action being applied",
        ),
    )
}
