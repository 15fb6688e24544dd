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

use nbg_runtime::argocd::{ArgoCdArgs, TrackingSettings};
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
    #[command(flatten)]
    pub argocd: ArgoCdArgs,
    /// An Application is written at most this long after its first unwritten change, with
    /// every change made meanwhile (Go duration; 0: at once).
    #[arg(long, env = "NBG_COALESCE", default_value = "250ms", value_parser = nbg_runtime::cli::parse_duration)]
    pub coalesce: Duration,
}

fn application_namespaces(cli: &Cli) -> Vec<String> {
    cli.argocd.application_namespaces()
}

/// Connects, then runs until SIGTERM.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let namespaces = application_namespaces(&cli);
    let runtime = Runtime::connect(NAME, env!("CARGO_PKG_VERSION"), cli.common).await?;
    let tracking = TrackingSettings::start(&runtime.client, &cli.argocd, &runtime.watches).await;
    let metrics = reconcile::AggregatorMetrics::register(&runtime.registry);
    let reconciler = reconcile::AggregatorReconciler::new(
        runtime.client.clone(),
        runtime.events.clone(),
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
