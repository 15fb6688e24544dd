//! Stopping a run on SIGTERM (the kubelet deleting or evicting the pod) or SIGINT (Ctrl-C on
//! `nvj-validator run`). The runner is PID 1 of its container, and PID 1 has no default signal
//! actions: without a handler the kubelet's SIGTERM is ignored and the pod lingers for its whole
//! grace period, its notebook still running. While papermill runs, a signal stops papermill and
//! its kernel and the run reports what it had done; at any other moment the runner exits at once
//! (a git fetch or a comparison has nothing to save).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

/// Exit status of a process ended by SIGTERM (128 + 15), as a shell reports it.
pub const EXIT_ON_SIGNAL: i32 = 143;

#[derive(Debug, Clone)]
pub struct Stop {
    /// A stop signal arrived.
    requested: Arc<AtomicBool>,
    /// Exit at once on a signal (true outside papermill).
    exit_at_once: Arc<AtomicBool>,
}

impl Stop {
    /// Handles SIGTERM and SIGINT from now on.
    pub fn on_signals() -> std::io::Result<Self> {
        let stop = Stop {
            requested: Arc::new(AtomicBool::new(false)),
            exit_at_once: Arc::new(AtomicBool::new(true)),
        };
        for signal in [SIGTERM, SIGINT] {
            // Order matters: the flag is set before the conditional exit runs.
            signal_hook::flag::register(signal, Arc::clone(&stop.requested))?;
            signal_hook::flag::register_conditional_shutdown(
                signal,
                EXIT_ON_SIGNAL,
                Arc::clone(&stop.exit_at_once),
            )?;
        }
        Ok(stop)
    }

    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Runs `f` with signals turned into [`Stop::requested`] instead of an exit: `f` stops
    /// what it runs and returns.
    pub fn graceful<T>(&self, f: impl FnOnce() -> T) -> T {
        self.exit_at_once.store(false, Ordering::SeqCst);
        let out = f();
        self.exit_at_once.store(!self.requested(), Ordering::SeqCst);
        out
    }
}
