//! event-notifier: one Kubernetes Event per NotebookValidationJob run that ends, and the
//! install material for Argo CD notifications and Prometheus alerts on the same outcomes.
//!
//! - [`notify`]: whether a run gets its Event and what it says - a pure decision, unit-tested;
//! - [`flux_event`]: the same notification as an event for Flux's notification-controller;
//! - [`reconcile`]: creating the Event under a name derived from the run, recording the run.

pub mod flux_event;
pub mod notify;
pub mod reconcile;

use nbg_runtime::{CommonArgs, Runtime};

/// The controller's name: field manager, metric label and Event reporter.
pub const NAME: &str = "event-notifier";

#[derive(clap::Parser, Debug)]
#[command(
    name = "event-notifier",
    version,
    about = "Emits one Kubernetes Event per NotebookValidationJob run that ends.",
    long_about = "Emits one Kubernetes Event per NotebookValidationJob run that ends.\n\nFor each run (<uid>/<generation>) that reaches Succeeded or Failed it creates one Event on the NVJ: reason ValidationSucceeded (Normal) or ValidationFailed (Warning), label mlops.dev/notification-type=validation-success or validation-failure, reporting controller event-notifier, and a note naming the NVJ, the run, the notebook's git ref, the failing cell or the golden mismatch, the retries and a next step. The Event's name is derived from the run, and the run is then recorded on the NVJ (mlops.dev/notified-run), so crashes, restarts and re-lists never repeat it. Runs that ended before event-notifier was first installed (remembered in the ConfigMap event-notifier-state in its own namespace) get no Event unless --notify-earlier-runs. Argo CD notifications for the same outcomes are triggered from app-status-aggregator's annotations on the Application (docs/event-notifier.md). With --flux-events-addr, a run of an NVJ that Flux applied is also posted to Flux's notification-controller as an event about its Kustomization, before the run is recorded (docs/flux.md)."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Also emit Events for runs that ended before event-notifier was first installed.
    #[arg(long, env = "NBG_NOTIFY_EARLIER_RUNS")]
    pub notify_earlier_runs: bool,
    /// Namespace of the state ConfigMap; defaults to POD_NAMESPACE, then `default`.
    #[arg(long, env = "NBG_STATE_NAMESPACE")]
    pub state_namespace: Option<String>,
    /// Flux's notification-controller events address (e.g.
    /// http://notification-controller.flux-system.svc.cluster.local./): each run of an NVJ
    /// that Flux applied is also posted there as an event about its Kustomization, for Flux's
    /// Alerts. Empty: not posted.
    #[arg(long, env = "NBG_FLUX_EVENTS_ADDR", default_value = "")]
    pub flux_events_addr: String,
}

/// Connects, then runs until SIGTERM.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // A wrong address is refused at start, not found at the first failed run.
    let flux_events = match cli.flux_events_addr.trim() {
        "" => None,
        url => Some(flux_event::EventsAddress::parse(url)?),
    };
    let runtime = Runtime::connect(NAME, env!("CARGO_PKG_VERSION"), cli.common).await?;
    let state_namespace = cli
        .state_namespace
        .clone()
        .unwrap_or_else(|| runtime.lease_namespace());
    let installed_at = reconcile::installed_at(&runtime.client, &state_namespace).await?;
    tracing::info!(%installed_at, earlier_runs = cli.notify_earlier_runs, "notifying runs that ended since installation");
    let since = notify::Since {
        installed_at,
        earlier_runs: cli.notify_earlier_runs,
    };
    let metrics = reconcile::register_metrics(&runtime.registry);
    let reconciler = reconcile::NotifierReconciler::new(
        runtime.client.clone(),
        since,
        runtime.identity(),
        metrics,
        flux_events,
    );
    runtime.run(reconciler).await
}
