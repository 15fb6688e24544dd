//! The real Argo CD where the tests need its own engine (`github.com/argoproj/argo-cd/v3`, one
//! multi-call binary built by `hack/build-binaries.sh argocd`): its notifications controller,
//! run as a local process against the local control plane.

use std::process::Command;

use crate::Cluster;
use crate::harness::process::{LocalProcess, built_tool, free_port};

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

/// An Application as Argo CD would show it after a sync that applied these NVJs
/// (`(namespace, name)`): Synced, Healthy, each NVJ in `status.resources`. The test plays Argo CD
/// here; add annotations as needed.
pub fn application(name: &str, nvjs: &[(&str, &str)]) -> serde_json::Value {
    let resources: Vec<serde_json::Value> = nvjs
        .iter()
        .map(|(ns, n)| serde_json::json!({"group": "mlops.mlops.dev", "version": "v1alpha1", "kind": "NotebookValidationJob", "namespace": ns, "name": n, "status": "Synced"}))
        .collect();
    serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name},
        "spec": {"project": "default", "source": {"repoURL": "https://git.example/ml.git", "path": name, "targetRevision": "main"},
                 "destination": {"server": "https://kubernetes.default.svc"}},
        "status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}, "resources": resources}
    })
}

/// Applications in `namespace` through a dynamic API: our `Application` type reads only what
/// the controllers read, and leaves apiVersion and kind to its Api, so tests write them this way.
pub fn applications(client: &kube::Client, namespace: &str) -> kube::Api<kube::api::DynamicObject> {
    kube::Api::namespaced_with(
        client.clone(),
        namespace,
        &kube::api::ApiResource::erase::<nbg_core::foreign::Application>(&()),
    )
}
