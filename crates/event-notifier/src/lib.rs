//! Emits Kubernetes Events per NotebookValidationJob outcome and feeds Argo CD notifications.

use nbg_runtime::{CommonArgs, Runtime};

/// The controller's name: field manager, metric label and Event reporter.
pub const NAME: &str = "event-notifier";

#[derive(clap::Parser, Debug)]
#[command(
    name = "event-notifier",
    version,
    about = "Emits Kubernetes Events per NotebookValidationJob outcome and feeds Argo CD notifications.",
    long_about = "Emits Kubernetes Events per NotebookValidationJob outcome and feeds Argo CD notifications.\n\nNot implemented yet: this build connects to the API server and runs the shared runtime (metrics, health, leader election) but emits no Event."
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
