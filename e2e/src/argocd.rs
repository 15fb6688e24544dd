//! The real Argo CD where the tests need its own engine (`github.com/argoproj/argo-cd/v3`, one
//! multi-call binary built by `hack/build-binaries.sh argocd`): its notifications controller,
//! run as a local process against the local control plane.

use std::process::Command;

use crate::Cluster;
use crate::process::{LocalProcess, built_tool, free_port};

/// `argocd-notifications` for Applications in `namespace`, with the admin kubeconfig. It reads
/// `argocd-notifications-cm` and `argocd-notifications-secret` from that namespace. No
/// repo-server runs: our templates call no `repo.*` function.
pub fn start_notifications(cluster: &Cluster, namespace: &str) -> anyhow::Result<LocalProcess> {
    let mut cmd = Command::new(built_tool("argocd")?);
    cmd.env("ARGOCD_BINARY_NAME", "argocd-notifications")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["--namespace", namespace])
        .args(["--metrics-port", &free_port().to_string()])
        .args([
            "--argocd-repo-server",
            "127.0.0.1:1",
            "--argocd-repo-server-plaintext",
        ])
        .args(["--loglevel", "debug", "--logformat", "text"]);
    Ok(LocalProcess::spawn("argocd-notifications", cmd))
}
