//! `local-kubelet`: the e2e kubelet double as a standalone process, for the demo and for anyone
//! trying the controllers by hand on the local control plane (`just local-kubelet`).

use std::path::PathBuf;

use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use nbg_e2e::harness::kubelet::{self, KubeletConfig, PodHandling};

/// Plays the kubelet for pods on the local control plane: binds them to a local Node, then
/// either runs their containers' commands as local processes (the default) or only marks them
/// Running and Ready.
#[derive(Parser, Debug)]
#[command(name = "local-kubelet", version)]
struct Cli {
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Name of the Node this double registers.
    #[arg(long, env = "NBG_KUBELET_NODE", default_value = "local-kubelet")]
    node_name: String,
    /// Namespaces to serve, comma-separated; all when empty.
    #[arg(long, env = "NBG_KUBELET_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Only mark pods Running and Ready; never run their commands.
    #[arg(long)]
    ready_only: bool,
    /// Environment every container starts with, like a node's own (repeatable KEY=VALUE).
    #[arg(long = "node-env", value_parser = parse_env)]
    node_env: Vec<(String, String)>,
    /// Directory for pods' volumes, logs and termination messages.
    #[arg(long, env = "NBG_KUBELET_DIR", default_value = "target/local-kubelet")]
    work_dir: PathBuf,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = async {
        let kc = Kubeconfig::read_from(&cli.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        let client = kube::Client::try_from(config)?;
        let work_dir = std::path::absolute(&cli.work_dir)?;
        let handling = if cli.ready_only { PodHandling::MakeReady } else { PodHandling::RunCommands };
        tracing::info!(node = %cli.node_name, ?handling, dir = %work_dir.display(), "local kubelet double running");
        tokio::select! {
            r = kubelet::run(client, KubeletConfig { node_name: cli.node_name, namespaces: cli.namespaces, handling, work_dir, node_env: cli.node_env, held_unready: Default::default(), ready_only_labels: Vec::new(), deployed: None, keep_terminated_volumes: false }) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
