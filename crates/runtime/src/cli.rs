//! Flags every controller accepts. Each has an environment-variable fallback so Helm charts can
//! set them through `env:`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Log output format.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A flag's Go duration (`30s`, `10m`, `1h30m`), for `value_parser`: every duration flag of
/// every binary reads the same way.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    nbg_core::duration::parse_go_duration(s).map_err(|e| e.to_string())
}

/// The shared flags, flattened into each binary's own `clap` parser.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Kubeconfig file; without it the in-cluster config or ~/.kube/config is used.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Namespaces to act in, comma-separated; all namespaces when empty. With a list the
    /// controller only needs namespaced RBAC (Roles) in those namespaces.
    #[arg(long, env = "NBG_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Only act in namespaces whose labels match this selector, e.g. `mlops.dev/enabled=true`,
    /// so a feature can be enabled per namespace. Needs list/watch on namespaces.
    #[arg(long, env = "NBG_NAMESPACE_SELECTOR")]
    pub namespace_selector: Option<String>,

    /// Log filter in RUST_LOG syntax, e.g. `info,kube=warn`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,

    /// Log format.
    #[arg(long, env = "NBG_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Address of the /metrics, /healthz and /readyz server.
    #[arg(long, env = "NBG_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Take a coordination.k8s.io Lease before acting, so several replicas are safe: only the
    /// leader writes; a replica that cannot renew the lease in time stops acting and stands by.
    #[arg(long, env = "NBG_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Namespace of the Lease; defaults to POD_NAMESPACE, then `default`.
    #[arg(long, env = "NBG_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Identity written into the Lease; defaults to POD_NAME, then the host name.
    #[arg(long, env = "NBG_LEADER_IDENTITY")]
    pub leader_identity: Option<String>,

    /// How long a Lease is valid without renewal (Go duration).
    #[arg(long, env = "NBG_LEASE_DURATION", value_parser = parse_duration, default_value = "15s")]
    pub lease_duration: Duration,

    /// At most this many objects are reconciled at the same time (bounds memory and API load).
    #[arg(long, env = "NBG_MAX_CONCURRENT_RECONCILES", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,

    /// How long to wait for the API server at start-up before giving up (Go duration).
    #[arg(long, env = "NBG_CONNECT_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,
}

/// Namespaces as a flag lists them (comma-separated; trimmed, empty entries dropped); `None`
/// when `*` is among them: every namespace.
pub fn listed_namespaces(values: &[String]) -> Option<Vec<String>> {
    let listed: Vec<String> = values
        .iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    (!listed.iter().any(|n| n == "*")).then_some(listed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    #[test]
    fn defaults_and_lists() {
        let cli = Cli::try_parse_from([
            "x",
            "--namespaces",
            "a,b",
            "--log-format",
            "json",
            "--lease-duration",
            "30s",
        ])
        .expect("valid flags");
        assert_eq!(cli.common.namespaces, vec!["a", "b"]);
        assert_eq!(cli.common.log_format, LogFormat::Json);
        assert_eq!(cli.common.lease_duration, Duration::from_secs(30));
        assert!(!cli.common.leader_election);
    }

    #[test]
    fn bad_values_are_named() {
        let err = Cli::try_parse_from(["x", "--lease-duration", "soon"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--lease-duration"), "{err}");
    }
}
