//! Marks Argo CD sync waves complete or failed on NotebookValidationJobs, and lets hooks wait for them.

use nbg_runtime::{CommonArgs, Runtime};

/// The controller's name: field manager, metric label and Event reporter.
pub const NAME: &str = "wave-marker";

#[derive(clap::Parser, Debug)]
#[command(
    name = "wave-marker",
    version,
    about = "Marks Argo CD sync waves complete or failed on NotebookValidationJobs, and lets hooks wait for them.",
    long_about = "Marks Argo CD sync waves complete or failed on NotebookValidationJobs, and lets hooks wait for them.\n\nNot implemented yet: this build connects to the API server and runs the shared runtime (metrics, health, leader election) but marks no wave."
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
