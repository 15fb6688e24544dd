//! app-status-aggregator: writes the aggregate NotebookValidationJob status onto the Argo CD
//! Application that manages them.
//!
//! - [`facts`]: what is kept of each NVJ, indexed by the Application its tracking names;
//! - [`aggregate`]: the annotations an Application should carry - a pure decision, unit-tested;
//! - [`reconcile`]: the watches and the server-side apply of the annotations.

pub mod aggregate;
pub mod coalesce;
pub mod facts;
pub mod reconcile;

use std::time::Duration;

use nbg_core::foreign::tracking::{Tracking, TrackingMethod};
use nbg_runtime::{CommonArgs, Runtime};

/// The controller's name: field manager, metric label and Event reporter.
pub const NAME: &str = "app-status-aggregator";

#[derive(clap::Parser, Debug)]
#[command(
    name = "app-status-aggregator",
    version,
    about = "Writes the aggregate NotebookValidationJob status onto the Argo CD Application that manages them.",
    long_about = "Writes the aggregate NotebookValidationJob status onto the Argo CD Application that manages them.\n\nFor each Application, the NVJs whose Argo CD tracking names it and that its status.resources lists are counted into mlops.dev/notebook-status (JSON: total, succeeded, failed, running, lastUpdate, failedJobs), mlops.dev/notebook-summary (one line), and mlops.dev/last-failed-run / last-succeeded-run (the latest run that ended so, for notification triggers that fire once per run). A run behind its spec generation counts as running. Written with server-side apply as field manager app-status-aggregator, annotations only, and only when they change; changes within --coalesce are written together. --namespaces / --namespace-selector scope the NVJs; Applications are read in --application-namespaces."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Argo CD's own namespace: where an Application named without a namespace (tracking id
    /// `<app>:...`, or the tracking label) lives.
    #[arg(long, env = "NBG_ARGOCD_NAMESPACE", default_value = "argocd")]
    pub argocd_namespace: String,
    /// Namespaces whose Applications are read and written, comma-separated (Argo CD's
    /// apps-in-any-namespace); `*` for all. Default: --argocd-namespace.
    #[arg(long, env = "NBG_APPLICATION_NAMESPACES", value_delimiter = ',')]
    pub application_namespaces: Vec<String>,
    /// How Argo CD tracks resources (its application.resourceTrackingMethod):
    /// annotation (Argo CD 3.x's default), label, or annotation+label.
    #[arg(long, env = "NBG_TRACKING_METHOD", default_value = "annotation")]
    pub tracking_method: TrackingMethod,
    /// The tracking label's key (Argo CD's application.instanceLabelKey).
    #[arg(
        long,
        env = "NBG_TRACKING_LABEL",
        default_value = "app.kubernetes.io/instance"
    )]
    pub tracking_label: String,
    /// An Application is written at most this long after its first unwritten change, with
    /// every change made meanwhile (Go duration; 0: at once).
    #[arg(long, env = "NBG_COALESCE", default_value = "250ms", value_parser = nbg_runtime::cli::parse_duration)]
    pub coalesce: Duration,
}

/// The namespaces to watch Applications in: empty means all.
fn application_namespaces(cli: &Cli) -> Vec<String> {
    let listed: Vec<String> = cli
        .application_namespaces
        .iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    if listed.iter().any(|n| n == "*") {
        Vec::new()
    } else if listed.is_empty() {
        vec![cli.argocd_namespace.clone()]
    } else {
        listed
    }
}

/// Connects, then runs until SIGTERM.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let namespaces = application_namespaces(&cli);
    let tracking = Tracking {
        method: cli.tracking_method,
        label_key: cli.tracking_label.clone(),
        argocd_namespace: cli.argocd_namespace.clone(),
    };
    let runtime = Runtime::connect(NAME, env!("CARGO_PKG_VERSION"), cli.common).await?;
    let metrics = reconcile::AggregatorMetrics::register(&runtime.registry);
    let reconciler = reconcile::AggregatorReconciler::new(
        runtime.client.clone(),
        tracking,
        namespaces,
        cli.coalesce,
        metrics,
    );
    runtime.run(reconciler).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn application_namespaces_default_to_argocds_and_star_means_all() {
        let parse = |args: &[&str]| {
            let cli =
                Cli::try_parse_from([&["app-status-aggregator"], args].concat()).expect("flags");
            application_namespaces(&cli)
        };
        assert_eq!(parse(&[]), vec!["argocd"]);
        assert_eq!(
            parse(&["--argocd-namespace", "openshift-gitops"]),
            vec!["openshift-gitops"]
        );
        assert_eq!(
            parse(&["--application-namespaces", "argocd,team-a"]),
            vec!["argocd", "team-a"]
        );
        assert!(parse(&["--application-namespaces", "*"]).is_empty());
        let err = Cli::try_parse_from(["x", "--tracking-method", "labels"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown tracking method \"labels\""), "{err}");
    }
}
