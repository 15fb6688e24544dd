//! `just chaos`: all five controllers together under faults (see `nbg_e2e::chaos`). Exit 0 when
//! every invariant held.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nbg_e2e::chaos::{self, ChaosConfig};

/// All five controllers on a control plane of their own, under SIGKILLs, API server restarts
/// and etcd pauses, with real notebook runs and hostile objects; then every invariant checked.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// How long the workload and the faults go on.
    #[arg(long, env = "NBG_CHAOS_MINUTES", default_value_t = 30)]
    minutes: u64,
    /// The seed of the workload and the faults (default: the clock); a run prints it.
    #[arg(long, env = "NBG_CHAOS_SEED")]
    seed: Option<u64>,
    /// Team namespaces, each with an Application.
    #[arg(long, env = "NBG_CHAOS_NAMESPACES", default_value_t = 3)]
    namespaces: usize,
    /// Seconds between new NVJs.
    #[arg(long, env = "NBG_CHAOS_CREATE_EVERY", default_value_t = 3.0)]
    create_every: f64,
    /// At most this many NVJs not ended at once: a new one waits (0: no limit).
    #[arg(long, env = "NBG_CHAOS_MAX_RUNNING", default_value_t = 0)]
    max_running: usize,
    /// Seconds between faults, on average.
    #[arg(long, env = "NBG_CHAOS_FAULT_EVERY", default_value_t = 15.0)]
    fault_every: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64)
    });
    let config = ChaosConfig {
        duration: Duration::from_secs(args.minutes * 60),
        seed,
        namespaces: args.namespaces,
        create_every: Duration::from_secs_f64(args.create_every.max(0.1)),
        max_running: args.max_running,
        fault_every: Duration::from_secs_f64(args.fault_every.max(1.0)),
    };
    println!("chaos run: {} minutes, seed {seed}", args.minutes);
    // Interrupted (Ctrl-C, or SIGTERM from CI): the run is dropped, which stops its control
    // plane, the controllers and the notebook runs instead of leaving them behind.
    let mut run = Box::pin(chaos::run(&config));
    let outcome = tokio::select! {
        outcome = &mut run => outcome,
        signal = interrupted() => {
            drop(run);
            eprintln!("{signal}: stopped the chaos run (seed {seed}) and everything it started");
            return ExitCode::from(130);
        }
    };
    match outcome {
        Ok(report) => {
            report.print();
            if report.violations() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The first of SIGINT and SIGTERM, by name.
async fn interrupted() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
