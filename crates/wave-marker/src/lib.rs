//! wave-marker: marks Argo CD sync waves complete or failed on NotebookValidationJobs, and lets
//! hooks wait for them.
//!
//! - [`marks`]: what is written on an NVJ - a pure decision, unit-tested;
//! - [`reconcile`]: the controller's I/O (server-side apply as `wave-marker`, Events, metrics);
//! - [`wait`]: `wave-marker wait`, a watch that exits when the marks say so.

pub mod marks;
pub mod reconcile;
pub mod wait;

use std::process::ExitCode;

use nbg_runtime::{CommonArgs, Runtime};

/// The controller's name: field manager, metric label and Event reporter.
pub const NAME: &str = "wave-marker";

#[derive(clap::Parser, Debug)]
#[command(
    name = "wave-marker",
    version,
    about = "Marks Argo CD sync waves complete or failed on NotebookValidationJobs, and lets hooks wait for them.",
    long_about = "Marks Argo CD sync waves complete or failed on NotebookValidationJobs, and lets hooks wait for them.\n\nWithout a subcommand it runs the controller. For each NVJ, with wave = its argocd.argoproj.io/sync-wave (0 when absent): when the current generation's run Succeeded it writes mlops.dev/wave-complete: \"<wave>\"; when it Failed, mlops.dev/wave-failed: \"<wave>\"; beside either, mlops.dev/completion-time (the run's completionTime) and mlops.dev/wave-generation (the generation the mark describes). While a run is in progress, or after a spec change, neither mark is present. It writes with server-side apply as field manager wave-marker and touches no other annotation. A malformed sync-wave or block-wave gets no mark, a WavesValid=False condition and a Warning Event naming the annotation.\n\n`wave-marker wait` waits for NVJs to be marked, for hooks and pipeline steps that Argo CD cannot gate."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Wait until the matching NVJs are marked complete for their current generation.
    #[command(
        long_about = "Wait until the matching NVJs are marked complete for their current generation, with a watch (no polling). A mark left from an earlier generation never counts.\n\nExit codes:\n  0  every matching NVJ is complete for its current generation (and at least --require match)\n  1  a matching NVJ failed, or its sync-wave/block-wave is malformed: printed at once with its name and message, without waiting for the rest\n  2  timeout: names what is still pending and where it stands\n  3  usage, RBAC or connection error: names what was refused (verb and resource) or unreachable\n\nNeeds get/list/watch on notebookvalidationjobs.mlops.mlops.dev (the chart's waiter Role).",
        after_help = "Examples:\n  wave-marker wait --block-wave 2 -n ml-training\n  wave-marker wait --name fraud-model --timeout 45m\n  wave-marker wait --application training --wave 1 -A --require 3 --output json"
    )]
    Wait(wait::WaitArgs),
}

/// Entry point of the binary. Usage errors exit 3, as `wait` documents.
pub fn main() -> ExitCode {
    use clap::Parser;
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { wait::exit::ERROR } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        None => nbg_runtime::block_on_main(run_controller(cli.common)),
        Some(Command::Wait(args)) => match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => ExitCode::from(rt.block_on(wait::run(args))),
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                ExitCode::from(wait::exit::ERROR)
            }
        },
    }
}

/// Connects, then runs the controller until SIGTERM.
async fn run_controller(common: CommonArgs) -> anyhow::Result<()> {
    let runtime = Runtime::connect(NAME, env!("CARGO_PKG_VERSION"), common).await?;
    let metrics = reconcile::register_metrics(&runtime.registry);
    let reconciler =
        reconcile::WaveReconciler::new(runtime.client.clone(), runtime.events.clone(), metrics);
    runtime.run(reconciler).await
}
