//! The real Flux where the tests need its own engine: source-controller and kustomize-controller
//! of the pinned builds (`hack/build-binaries.sh`), run as local processes against a control
//! plane of the test's own, with Flux's own CRDs. Their events go to `--events-addr`, where
//! notification-controller listens in a cluster (it cannot be built here: the module proxy
//! serves only its API module); a test's receiver stands in for it.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use kube::api::DynamicObject;
use serde_json::{Value, json};

use crate::Cluster;
use crate::harness::argocd::{Received, receiver};
use crate::harness::cluster::{dynamic_api, eventually, repo_root};
use crate::harness::control_plane::PrivateControlPlane;
use crate::harness::git_server::{GitRepo, GitServer};
use crate::harness::process::{
    LocalProcess, build_binaries, built_tool, free_port, wait_until_ready,
};

/// Where Flux's controllers run and its sources live, as `flux install` puts them.
pub const FLUX_NAMESPACE: &str = "flux-system";

/// How often a Kustomization whose dependency is not ready looks again (`--requeue-dependency`;
/// Flux's default is 30 s, shortened so the tests wait less; the same mechanism).
pub const REQUEUE_DEPENDENCY: &str = "2s";

/// Flux's source-controller and kustomize-controller as local processes; stopped when dropped.
pub struct RealFlux {
    pub source_controller: LocalProcess,
    pub kustomize_controller: LocalProcess,
}

fn wait_ready(port: u16, process: &mut LocalProcess, name: &str) -> anyhow::Result<()> {
    // controller-runtime's checks answer "ok" once ready.
    wait_until_ready(process, name, &format!("turn ready on {port}"), || {
        crate::harness::controller::http_get(port, "/readyz").is_some_and(|b| b.trim() == "ok")
    })
}

impl RealFlux {
    /// Installs Flux's CRDs (server-side: they are large) and its namespace, then starts
    /// source-controller (its artifact server on 127.0.0.1) and kustomize-controller, both
    /// posting their events to 127.0.0.1:`events_port`.
    pub fn start(cluster: &Cluster, events_port: u16) -> anyhow::Result<Self> {
        let crds = |component: &str| -> anyhow::Result<std::path::PathBuf> {
            Ok(build_binaries(&["--source", component])?.join("config/crd/bases"))
        };
        // Every CRD of both controllers: each refuses to start without all of its kinds.
        let mut names = Vec::new();
        // helm-controller's HelmRelease too (generated from its API module): trigger targets.
        for component in [
            "flux-source-controller",
            "flux-kustomize-controller",
            "flux-helm-controller",
        ] {
            let dir = crds(component)?;
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .with_context(|| format!("{}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .collect();
            files.sort();
            for file in files {
                cluster
                    .kubectl_ok(
                        &["apply", "--server-side", "-f", &file.display().to_string()],
                        None,
                    )
                    .with_context(|| format!("Flux's CRD {}", file.display()))?;
                // <group>_<plural>.yaml: the CRD's name is <plural>.<group>.
                if let Some((group, plural)) = file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.split_once('_'))
                {
                    names.push(format!("{plural}.{group}"));
                }
            }
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        cluster
            .wait_established(&names)
            .context("Flux's CRDs established")?;
        let _ = cluster.kubectl(&["create", "namespace", FLUX_NAMESPACE], None);

        let dir = repo_root()
            .join("target/flux")
            .join(std::process::id().to_string());
        std::fs::create_dir_all(dir.join("artifacts")).context("source-controller's storage")?;
        // Without `..`: source-controller's storage links its latest artifact by a path it
        // derives from this one, and a `..` in it made that path empty.
        let dir = dir.canonicalize().context("Flux's directory")?;
        let storage = dir.join("artifacts");
        let events = format!("http://127.0.0.1:{events_port}/");
        let spawn =
            |name: &str, component: &str, args: &[String]| -> anyhow::Result<LocalProcess> {
                let mut cmd = Command::new(built_tool(component)?);
                let health = free_port();
                cmd.env("KUBECONFIG", &cluster.kubeconfig)
                    .env("RUNTIME_NAMESPACE", FLUX_NAMESPACE)
                    .env("HOME", &dir)
                    .env("TMPDIR", &dir)
                    .args(["--events-addr", &events])
                    .args([
                        "--enable-leader-election=false",
                        "--watch-all-namespaces=true",
                    ])
                    .args(["--log-encoding", "console", "--log-level", "info"])
                    .args(["--health-addr", &format!("127.0.0.1:{health}")])
                    .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
                    .args(args);
                let mut process = LocalProcess::spawn(name, cmd);
                wait_ready(health, &mut process, name)?;
                Ok(process)
            };
        // Its artifact server, advertised where kustomize-controller fetches from.
        let storage_addr = format!("127.0.0.1:{}", free_port());
        let source_controller = spawn(
            "source-controller",
            "flux-source-controller",
            &[
                format!("--storage-path={}", storage.display()),
                format!("--storage-addr={storage_addr}"),
                format!("--storage-adv-addr={storage_addr}"),
            ],
        )?;
        let kustomize_controller = spawn(
            "kustomize-controller",
            "flux-kustomize-controller",
            &[format!("--requeue-dependency={REQUEUE_DEPENDENCY}")],
        )?;
        Ok(Self {
            source_controller,
            kustomize_controller,
        })
    }
}

/// What a Flux test runs on: a control plane of its own with the real Flux, the namespace `ml`
/// Flux applies into, repository `ml` on a git server, and a receiver at Flux's events address.
pub struct FluxPlane {
    pub plane: PrivateControlPlane,
    pub flux: RealFlux,
    /// What was posted to the events address, and its port.
    pub events: Received,
    pub events_port: u16,
    pub server: GitServer,
    pub repo: GitRepo,
}

impl FluxPlane {
    /// Starts it under `target/<name>`.
    pub async fn start(name: &str) -> Self {
        let plane = PrivateControlPlane::start(name, &[]).expect("control plane");
        let (events_port, events) = receiver().await;
        let flux = RealFlux::start(&plane.cluster, events_port).expect("the real Flux");
        let (ok, _, err) = plane.cluster.kubectl(&["create", "namespace", "ml"], None);
        assert!(ok, "{err}");
        let git_root = repo_root()
            .join("target/flux-git")
            .join(format!("{name}-{}", std::process::id()));
        let server = GitServer::start(&git_root, None).await;
        let repo = GitRepo::create(&server, "ml");
        Self {
            plane,
            flux,
            events,
            events_port,
            server,
            repo,
        }
    }

    /// `kubectl apply` of one object.
    pub fn apply(&self, object: &Value) {
        let (ok, _, err) = self
            .plane
            .cluster
            .kubectl(&["apply", "-f", "-"], Some(&object.to_string()));
        assert!(ok, "{err}");
    }

    /// Waits for NVJ `name` in `ml`, as kustomize-controller applies it.
    pub async fn applied_nvj(
        &self,
        nvjs: &kube::Api<nbg_core::nvj::NotebookValidationJob>,
        name: &str,
    ) -> nbg_core::nvj::NotebookValidationJob {
        eventually(
            Duration::from_secs(60),
            "the NVJ applied by kustomize-controller",
            || async { nvjs.get_opt(name).await.ok().flatten() },
        )
        .await
    }

    /// Asks source-controller to fetch repository `ml` now, as `flux reconcile source git` does.
    pub fn fetch_now(&self, value: &str) {
        let (ok, _, err) = self.plane.cluster.kubectl(
            &[
                "annotate",
                "--overwrite",
                "-n",
                FLUX_NAMESPACE,
                "gitrepository/ml",
                &format!("reconcile.fluxcd.io/requestedAt={value}"),
            ],
            None,
        );
        assert!(ok, "{err}");
    }
}

/// helm-controller's documented contract for what trigger-controller reads, played for the
/// HelmReleases in [`FLUX_NAMESPACE`] (helm-controller cannot be built here): a
/// `reconcile.fluxcd.io/requestedAt` it has not handled is handled - `status.lastHandledReconcileAt`
/// set to it, with `Ready` True for the current generation, as helm-controller reports a
/// successful upgrade. Runs until the test ends.
pub fn play_helm_controller(client: &kube::Client) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let api = dynamic_api(
        client,
        FLUX_NAMESPACE,
        "helm.toolkit.fluxcd.io",
        "v2",
        "HelmRelease",
    );
    tokio::spawn(async move {
        let mut stream = watcher(api.clone(), watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(release)) = stream.next().await {
            let requested = release
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("reconcile.fluxcd.io/requestedAt"))
                .cloned();
            let handled = release
                .data
                .pointer("/status/lastHandledReconcileAt")
                .and_then(Value::as_str)
                .map(String::from);
            let Some(requested) = requested.filter(|r| Some(r) != handled.as_ref()) else {
                continue;
            };
            let generation = release.metadata.generation;
            let name = release.metadata.name.clone().unwrap_or_default();
            let status = json!({"status": {
                "observedGeneration": generation,
                "lastHandledReconcileAt": requested,
                "conditions": [{"type": "Ready", "status": "True", "reason": "UpgradeSucceeded",
                    "message": format!("Helm upgrade succeeded for release flux-system/{name}"),
                    "observedGeneration": generation,
                    "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}]}});
            let _ = api
                .patch_status(
                    &name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&status),
                )
                .await;
        }
    });
}

/// Kustomizations in [`FLUX_NAMESPACE`].
pub fn kustomizations(client: &kube::Client) -> kube::Api<DynamicObject> {
    dynamic_api(
        client,
        FLUX_NAMESPACE,
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "Kustomization",
    )
}

/// GitRepositories in [`FLUX_NAMESPACE`].
pub fn git_repositories(client: &kube::Client) -> kube::Api<DynamicObject> {
    dynamic_api(
        client,
        FLUX_NAMESPACE,
        "source.toolkit.fluxcd.io",
        "v1",
        "GitRepository",
    )
}

/// A Kustomization applying `path` of GitRepository `source` into `target_namespace`, looking
/// again every `retryInterval` 2 s after a failure; `spec` adds to (or overrides) that.
pub fn kustomization(
    name: &str,
    source: &str,
    path: &str,
    target_namespace: &str,
    spec: Value,
) -> Value {
    let mut k = json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": name, "namespace": FLUX_NAMESPACE},
        "spec": {"sourceRef": {"kind": "GitRepository", "name": source}, "path": path,
                 "targetNamespace": target_namespace, "prune": true,
                 "interval": "10m", "retryInterval": "2s"}});
    if let (Some(base), Value::Object(extra)) = (k["spec"].as_object_mut(), spec) {
        base.extend(extra);
    }
    k
}

/// `status.conditions[type=Ready]` of a Flux object: `(status, reason, message)`.
pub fn ready(object: &DynamicObject) -> Option<(String, String, String)> {
    let conditions = object.data.pointer("/status/conditions")?.as_array()?;
    let ready = conditions.iter().find(|c| c["type"] == "Ready")?;
    let text = |k: &str| ready[k].as_str().unwrap_or_default().to_string();
    Some((text("status"), text("reason"), text("message")))
}

/// A GitRepository reading `url`'s `main` every `interval`.
pub fn git_repository(name: &str, url: &str, interval: &str) -> Value {
    json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": name, "namespace": FLUX_NAMESPACE},
        "spec": {"url": url, "interval": interval, "ref": {"branch": "main"}, "timeout": "20s"}})
}
