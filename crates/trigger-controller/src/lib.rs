//! Restarts model servers and syncs or refreshes Argo CD Applications, exactly once, when a NotebookValidationJob succeeds.
//!
//! Built so far, and unit-tested: [`authorize`] (who may act on what) and [`actions`] (what each
//! action writes, idempotent per run). The controller does not use them yet: it runs the shared
//! runtime and acts on no trigger, as its `--help` says.

pub mod actions;
pub mod authorize;

use nbg_runtime::{CommonArgs, Runtime};

/// The controller's name: field manager, metric label and Event reporter.
pub const NAME: &str = "trigger-controller";

#[derive(clap::Parser, Debug)]
#[command(
    name = "trigger-controller",
    version,
    about = "Restarts model servers and syncs or refreshes Argo CD Applications, exactly once, when a NotebookValidationJob succeeds.",
    long_about = "Restarts model servers and syncs or refreshes Argo CD Applications, exactly once, when a NotebookValidationJob succeeds.\n\nNot implemented yet: this build connects to the API server and runs the shared runtime (metrics, health, leader election) but acts on no trigger."
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
