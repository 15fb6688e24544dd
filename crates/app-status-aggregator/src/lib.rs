//! app-status-aggregator: writes the aggregate NotebookValidationJob status onto the GitOps
//! object that manages them - an Argo CD Application, a Flux Kustomization, or both engines'.
//!
//! - [`engine`]: what differs between Argo CD and Flux (how an NVJ names its owner, where the
//!   owner lists what it applied, where owners live);
//! - [`facts`]: what is kept of each NVJ, indexed by the owner its metadata names;
//! - [`aggregate`]: the annotations an owner should carry - a pure decision, unit-tested;
//! - [`reconcile`]: the watches and the server-side apply of the annotations.

pub mod aggregate;
pub mod coalesce;
pub mod engine;
pub mod facts;
pub mod reconcile;

use std::time::Duration;

use nbg_runtime::argocd::{ArgoCdArgs, TrackingSettings};
use nbg_runtime::flux::FluxArgs;
use nbg_runtime::{CommonArgs, Runtime};

use engine::argocd::ArgoCd;
use engine::flux::Flux;
use reconcile::AggregatorReconciler;

/// The controller's name: field manager, metric label and Event reporter.
pub const NAME: &str = "app-status-aggregator";

#[derive(clap::Parser, Debug)]
#[command(
    name = "app-status-aggregator",
    version,
    about = "Writes the aggregate NotebookValidationJob status onto the Argo CD Application or Flux Kustomization that manages them.",
    long_about = "Writes the aggregate NotebookValidationJob status onto the Argo CD Application or Flux Kustomization that manages them.\n\nFor each Application (--engines argocd), the NVJs whose Argo CD tracking names it and that its status.resources lists, and for each Kustomization (--engines flux), the NVJs whose kustomize.toolkit.fluxcd.io labels name it and that its status.inventory lists, are counted into mlops.dev/notebook-status (JSON: total, succeeded, failed, running, lastUpdate, failedJobs), mlops.dev/notebook-summary (one line), and mlops.dev/last-failed-run / last-succeeded-run (the latest run that ended so, for notification triggers that fire once per run). A run behind its spec generation counts as running. Written with server-side apply as field manager app-status-aggregator, annotations only, and only when they change; changes within --coalesce are written together. --namespaces / --namespace-selector scope the NVJs; Applications are read in --application-namespaces, Kustomizations in --flux-namespaces."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The GitOps engines whose objects carry the aggregate, comma-separated: argocd
    /// (Applications), flux (Kustomizations), or both.
    #[arg(
        long,
        env = "NBG_ENGINES",
        value_delimiter = ',',
        default_value = "argocd"
    )]
    pub engines: Vec<EngineName>,
    #[command(flatten)]
    pub argocd: ArgoCdArgs,
    #[command(flatten)]
    pub flux: FluxArgs,
    /// An Application or Kustomization is written at most this long after its first unwritten
    /// change, with every change made meanwhile (Go duration; 0: at once).
    #[arg(long, env = "NBG_COALESCE", default_value = "250ms", value_parser = nbg_runtime::cli::parse_duration)]
    pub coalesce: Duration,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineName {
    /// Argo CD Applications.
    Argocd,
    /// Flux Kustomizations.
    Flux,
}

fn application_namespaces(cli: &Cli) -> Vec<String> {
    cli.argocd.application_namespaces()
}

/// The reconciler of one engine, on `runtime`'s client, Events and metrics.
fn reconciler<E: engine::Engine>(
    runtime: &Runtime,
    engine: E,
    coalesce: Duration,
) -> AggregatorReconciler<E> {
    AggregatorReconciler::new(
        runtime.client.clone(),
        runtime.events.clone(),
        engine,
        coalesce,
        &runtime.registry,
    )
}

/// Connects, then runs until SIGTERM: one reconciler per engine, under one Lease.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let application_namespaces = application_namespaces(&cli);
    let flux_namespaces = cli.flux.namespaces();
    let runtime = Runtime::connect(NAME, env!("CARGO_PKG_VERSION"), cli.common).await?;
    let argocd = match cli.engines.contains(&EngineName::Argocd) {
        true => Some(ArgoCd {
            tracking: TrackingSettings::start(&runtime.client, &cli.argocd, &runtime.watches).await,
            application_namespaces,
        }),
        false => None,
    };
    let flux = cli.engines.contains(&EngineName::Flux).then_some(Flux {
        namespaces: flux_namespaces,
    });
    let argocd = argocd.map(|e| reconciler(&runtime, e, cli.coalesce));
    let flux = flux.map(|e| reconciler(&runtime, e, cli.coalesce));
    match (argocd, flux) {
        (Some(argocd), Some(flux)) => runtime.run_pair(argocd, flux).await,
        (Some(argocd), None) => runtime.run(argocd).await,
        (None, Some(flux)) => runtime.run(flux).await,
        (None, None) => anyhow::bail!("--engines names no engine: give argocd, flux or both"),
    }
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

    #[test]
    fn engines_default_to_argocd_and_take_flux_beside_it() {
        let engines = |args: &[&str]| {
            Cli::try_parse_from([&["app-status-aggregator"], args].concat())
                .map(|c| c.engines)
                .map_err(|e| e.to_string())
        };
        assert_eq!(engines(&[]), Ok(vec![EngineName::Argocd]));
        assert_eq!(
            engines(&["--engines", "flux,argocd"]),
            Ok(vec![EngineName::Flux, EngineName::Argocd])
        );
        let err = engines(&["--engines", "fluxcd"]).err().unwrap_or_default();
        assert!(err.contains("invalid value 'fluxcd'"), "{err}");
        assert!(err.contains("argocd, flux"), "names the choices: {err}");
    }
}
