//! The annotation contract (docs/design.md): the keys, and total parsers for their values.
//! Every parser returns a value or an error that names what is wrong; none panics.

mod notebook_status;
mod trigger;
mod wave;

pub use notebook_status::{MAX_FAILED_JOBS, NotebookStatusError, NotebookStatusSummary};
pub use trigger::{
    MAX_TRIGGER_ANNOTATION_BYTES, MAX_TRIGGERS, RefreshKind, RestartStrategy, TriggerAction,
    TriggerSpecError, TriggerTarget, group_of, parse_on_success_trigger,
};
pub use wave::{WaveParseError, parse_wave};

/// On the NVJ, written by users: YAML list of `{apiVersion, kind, name, namespace?, action}`.
pub const ON_SUCCESS_TRIGGER: &str = "mlops.dev/on-success-trigger";
/// On the NVJ, written by users (Argo CD's own key): the wave the NVJ belongs to.
pub const SYNC_WAVE: &str = "argocd.argoproj.io/sync-wave";
/// On the NVJ, written by users: the wave that must not start until this NVJ succeeded.
pub const BLOCK_WAVE: &str = "mlops.dev/block-wave";
/// On the NVJ, written by wave-marker.
pub const WAVE_COMPLETE: &str = "mlops.dev/wave-complete";
/// On the NVJ, written by wave-marker.
pub const WAVE_FAILED: &str = "mlops.dev/wave-failed";
/// On the NVJ, written by wave-marker beside a mark: the marked run's `status.completionTime`
/// (RFC 3339).
pub const COMPLETION_TIME: &str = "mlops.dev/completion-time";
/// On the NVJ, written by wave-marker beside a mark: the `metadata.generation` the mark
/// describes. A reader trusts a mark only while this equals the NVJ's current generation.
pub const WAVE_GENERATION: &str = "mlops.dev/wave-generation";
/// On the Argo CD Application, written by app-status-aggregator: JSON summary.
pub const NOTEBOOK_STATUS: &str = "mlops.dev/notebook-status";
/// On the Argo CD Application, written by app-status-aggregator: one line of text.
pub const NOTEBOOK_SUMMARY: &str = "mlops.dev/notebook-summary";
/// On a trigger target in another namespace: namespaces (comma-separated, or `*`) whose NVJs
/// may act on it.
pub const ALLOW_TRIGGERS_FROM: &str = "mlops.dev/allow-triggers-from";
/// On a target that has no native refresh: set by a `refresh` trigger to the run identity.
pub const REFRESH_REQUESTED: &str = "mlops.dev/refresh-requested";
/// On a restarted InferenceService (and copied by KServe into the predictor's pod template):
/// the run identity and time of the restart, so re-applying it is a no-op.
pub const RESTARTED_AT: &str = "mlops.dev/restarted-at";
/// Beside [`RESTARTED_AT`] on an InferenceService: the predictor's latest created revision when
/// the restart was asked for, so the restart's own revision can be told from the old one.
pub const RESTARTED_FROM_REVISION: &str = "mlops.dev/restarted-from-revision";
/// On a Flux object a `reconcile` trigger asked to reconcile: `"<run> <time>"`, the run and the
/// `reconcile.fluxcd.io/requestedAt` value written with it, so asking again is a no-op and the
/// request's completion can be told (`status.lastHandledReconcileAt`).
pub const RECONCILE_REQUESTED: &str = "mlops.dev/reconcile-requested";
/// `kubectl rollout restart`'s pod-template annotation on Deployments, StatefulSets, DaemonSets.
pub const KUBECTL_RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// Argo CD's refresh annotation on an Application (`normal` or `hard`).
pub const ARGOCD_REFRESH: &str = "argocd.argoproj.io/refresh";
/// Argo CD's resource-tracking annotation (`<app>:<group>/<kind>:<namespace>/<name>`).
pub const ARGOCD_TRACKING_ID: &str = "argocd.argoproj.io/tracking-id";
/// Event label written by event-notifier.
pub const NOTIFICATION_TYPE_LABEL: &str = "mlops.dev/notification-type";
