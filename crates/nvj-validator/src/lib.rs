//! Runs NotebookValidationJobs: executes the notebook from git, compares it with a golden notebook and reports every cell in the NVJ status.

use nbg_runtime::{CommonArgs, Runtime};

/// The controller's name: field manager, metric label and Event reporter.
pub const NAME: &str = "nvj-validator";

#[derive(clap::Parser, Debug)]
#[command(
    name = "nvj-validator",
    version,
    about = "Runs NotebookValidationJobs: executes the notebook from git, compares it with a golden notebook and reports every cell in the NVJ status.",
    long_about = "Runs NotebookValidationJobs: executes the notebook from git, compares it with a golden notebook and reports every cell in the NVJ status.\n\nNot implemented yet: this build connects to the API server and runs the shared runtime (metrics, health, leader election) but does not reconcile NotebookValidationJobs."
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
