//! Structured logging with `tracing`: a RUST_LOG-style filter, text or JSON lines.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::cli::LogFormat;

/// Checks a filter without installing it.
pub fn validate(filter: &str) -> anyhow::Result<()> {
    EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("invalid --log-filter {filter:?}: {e}"))
}

/// Installs the global subscriber. An invalid filter is an error naming the flag.
pub fn init(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid --log-filter {filter:?}: {e}"))?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        // Colours only for a terminal, not in a log file or a container's log.
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
    Ok(())
}
