//! Writes the aggregate NotebookValidationJob status onto the owning Argo CD Application.

use nbg_runtime::{CommonArgs, Runtime};

/// The controller's name: field manager, metric label and Event reporter.
pub const NAME: &str = "app-status-aggregator";

#[derive(clap::Parser, Debug)]
#[command(
    name = "app-status-aggregator",
    version,
    about = "Writes the aggregate NotebookValidationJob status onto the owning Argo CD Application.",
    long_about = "Writes the aggregate NotebookValidationJob status onto the owning Argo CD Application.\n\nNot implemented yet: this build connects to the API server and runs the shared runtime (metrics, health, leader election) but writes no Application annotation."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Connects, then runs until SIGTERM.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = Runtime::connect(NAME, env!("CARGO_PKG_VERSION"), cli.common).await?;
    runtime.run_idle().await
}
