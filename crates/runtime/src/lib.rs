//! What every notebook-gitops controller binary shares, so the five controllers carry no copies
//! of it: command-line flags with environment fallbacks ([`cli`]), structured logging
//! ([`telemetry`]), the `/metrics` `/healthz` `/readyz` server ([`http`]), leader election on
//! a Lease ([`leader`]), namespace scoping ([`scope`]), the controller runner with per-object
//! backoff and reconcile metrics ([`runner`]), Kubernetes Events ([`events`]), each controller's
//! server-side-apply status writes ([`status`]), watches that recover on their own ([`watch`]), and graceful shutdown ([`shutdown`]). [`Runtime`] ties them together.

pub mod api_requests;
pub mod argocd;
pub mod cli;
pub mod events;
pub mod flux;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod runner;
pub mod scope;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod watch;

mod runtime;

pub use cli::{CommonArgs, LogFormat};
pub use runner::{ReconcileError, Reconciler};
pub use runtime::{Runtime, load_config};

/// Runs a controller binary's `main`: parses nothing itself, but turns any error into one clear
/// line on stderr and a non-zero exit code, never a panic message or a backtrace.
pub fn exit_with(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the chain on one line; Debug would print a backtrace.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The body of every controller binary's `main`: runs `main` on a multi-threaded Tokio runtime
/// and exits as [`exit_with`] does.
pub fn block_on_main(
    main: impl std::future::Future<Output = anyhow::Result<()>>,
) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return exit_with(Err(anyhow::anyhow!("cannot start the async runtime: {e}"))),
    };
    exit_with(runtime.block_on(main))
}
