//! `pod-sandbox <spec.json>`: the first process of a deployed pod run by the kubelet double,
//! started inside its own namespaces by `unshare` (see `nbg_e2e::harness::pod_sandbox`).

use nbg_e2e::harness::pod_sandbox::{self, SandboxSpec};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let result = async {
        let path = std::env::args()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("usage: pod-sandbox <spec.json>"))?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read the sandbox spec {path}: {e}"))?;
        let spec: SandboxSpec = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid sandbox spec {path}: {e}"))?;
        pod_sandbox::run(spec).await
    }
    .await;
    match result {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("pod-sandbox: {e:#}");
            // As a container runtime reports a container it could not start.
            std::process::ExitCode::from(128)
        }
    }
}
