//! The real Argo CD where the tests need its own engine, run as local processes against a
//! control plane: [`RealArgoCd`] (redis, repo-server, application-controller, with Argo CD's
//! own CRDs and config and our `argocd-cm` patch), and the notifications controller - in one of
//! the configurations users run ([`ArgoCdCell`]: v3.2 or v2.14, each with its defaults, or v3.2
//! with label tracking under the key Argo CD's Helm chart sets), chosen by `NBG_ARGOCD_CELL`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde_json::{Value, json};

use crate::Cluster;
use crate::harness::cluster::repo_root;
use crate::harness::process::{
    LocalProcess, build_binaries, built_tool, free_port, wait_until_ready,
};

/// Where Argo CD's components run and read their Applications.
pub const ARGOCD_NAMESPACE: &str = "argocd";

/// The label key Argo CD's own Helm chart sets as `application.instanceLabelKey`.
pub const HELM_CHART_LABEL_KEY: &str = "argocd.argoproj.io/instance";

/// One configuration of the compatibility matrix (docs/argocd.md). Our controllers run with
/// their chart defaults in every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgoCdCell {
    /// v3.2.11 as installed: annotation tracking, resource health not persisted.
    V3Defaults,
    /// v3.2.11 with `application.resourceTrackingMethod: label` and the Helm chart's label key.
    V3LabelTracking,
    /// v2.14.21 as installed: label tracking (`app.kubernetes.io/instance`), health persisted.
    V2Defaults,
}

impl ArgoCdCell {
    /// `NBG_ARGOCD_CELL`: `v3` (default), `v3-label` or `v2`.
    pub fn from_env() -> Self {
        match std::env::var("NBG_ARGOCD_CELL").as_deref() {
            Ok("v3-label") => Self::V3LabelTracking,
            Ok("v2") => Self::V2Defaults,
            Ok("v3") | Ok("") | Err(_) => Self::V3Defaults,
            Ok(other) => panic!("NBG_ARGOCD_CELL={other}: use v3, v3-label or v2"),
        }
    }

    /// The build (`hack/build-binaries.sh` component).
    pub fn component(self) -> &'static str {
        match self {
            Self::V2Defaults => "argocd-v2",
            _ => "argocd",
        }
    }

    /// What argocd-cm says beyond Argo CD's base config and our patch.
    fn argocd_cm(self) -> Value {
        match self {
            Self::V3LabelTracking => json!({"data": {
                "application.resourceTrackingMethod": "label",
                "application.instanceLabelKey": HELM_CHART_LABEL_KEY}}),
            _ => json!({"data": {}}),
        }
    }

    /// Whether the application controller keeps each resource's health in `status.resources`
    /// (2.14's default; 3.x keeps it in the resource tree in redis only).
    pub fn persists_health(self) -> bool {
        self == Self::V2Defaults
    }
}

/// Argo CD's application controller and repo-server, and the redis they share, as local
/// processes; stopped when dropped.
pub struct RealArgoCd {
    pub namespace: String,
    /// The application controller's output.
    pub controller: LocalProcess,
    pub repo_server: LocalProcess,
    _redis: LocalProcess,
    redis_port: u16,
    /// The application controller's Prometheus metrics port (`argocd_app_reconcile_count`, ...).
    pub metrics_port: u16,
    pub cell: ArgoCdCell,
}

/// A free port below the kernel's ephemeral range (32768-60999): Argo CD's components dial
/// each other and the API server from ephemeral ports, which could take a listener's.
pub fn free_low_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 500) as u16 * 20;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::SeqCst) % 2_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The unpacked Argo CD module of the pinned version (its `manifests/`).
pub fn argocd_source() -> anyhow::Result<PathBuf> {
    build_binaries(&["--source", "argocd"])
}

/// A resource's health as Argo CD shows it, from its resource tree: `(status, message)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceHealth {
    pub status: String,
    pub message: String,
}

fn wait_for_port(port: u16, process: &mut LocalProcess, name: &str) -> anyhow::Result<()> {
    wait_until_ready(process, name, &format!("listen on {port}"), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

impl RealArgoCd {
    /// How many times the application controller has reconciled Application `name` so far
    /// (its `Reconciliation completed` log lines; the metric has no per-Application label).
    pub fn reconciles(&self, name: &str) -> usize {
        let app = format!(" application={name} ");
        self.controller
            .output()
            .lines()
            .filter(|l| l.contains("msg=\"Reconciliation completed\"") && l.contains(&app))
            .count()
    }

    /// Installs Argo CD's CRDs (server-side: the Application CRD is too big for a client-side
    /// apply; they replace the test-only ones), its base config with our `argocd-cm` patch and
    /// a `default` AppProject in [`ARGOCD_NAMESPACE`], then starts redis, the repo-server and the
    /// application controller. Run it on a control plane of the test's own.
    pub fn start(cluster: &Cluster) -> anyhow::Result<Self> {
        Self::start_cell(cluster, ArgoCdCell::from_env())
    }

    /// [`RealArgoCd::start`] in one configuration of the matrix.
    pub fn start_cell(cluster: &Cluster, cell: ArgoCdCell) -> anyhow::Result<Self> {
        let source = build_binaries(&["--source", cell.component()])?;
        let manifests = source.join("manifests");
        let path = |p: &Path| p.display().to_string();
        // The test-only CRDs (every plane has e2e/crds) go - an apply would merge their schema
        // into Argo CD's; Argo CD's own, from an earlier run, stay with their Applications. The
        // delete can take minutes on a new plane: the API server's CRD finalizer fails with
        // "storage is (re)initializing" on a CRD created moments before and backs off (284 s).
        let (_, part_of, _) = cluster.kubectl(
            &[
                "get",
                "crd",
                "applications.argoproj.io",
                "-o",
                "jsonpath={.metadata.labels.app\\.kubernetes\\.io/part-of}",
            ],
            None,
        );
        if part_of.trim() != "argocd" {
            let _ = cluster.kubectl(
                &[
                    "delete",
                    "crd",
                    "applications.argoproj.io",
                    "appprojects.argoproj.io",
                    "--ignore-not-found",
                ],
                None,
            );
        }
        for crd in ["application-crd.yaml", "appproject-crd.yaml"] {
            cluster
                .kubectl_ok(
                    &[
                        "apply",
                        "--server-side",
                        "-f",
                        &path(&manifests.join("crds").join(crd)),
                    ],
                    None,
                )
                .context("Argo CD's CRDs")?;
        }
        cluster
            .wait_established(&["applications.argoproj.io", "appprojects.argoproj.io"])
            .context("Argo CD's CRDs established")?;
        let ns = ARGOCD_NAMESPACE;
        let _ = cluster.kubectl(&["create", "namespace", ns], None);
        for file in [
            "argocd-cm.yaml",
            "argocd-cmd-params-cm.yaml",
            "argocd-gpg-keys-cm.yaml",
            "argocd-rbac-cm.yaml",
            "argocd-secret.yaml",
            "argocd-ssh-known-hosts-cm.yaml",
            "argocd-tls-certs-cm.yaml",
        ] {
            cluster
                .kubectl_ok(
                    // Again on a plane where it ran before: over our earlier patch.
                    &[
                        "apply",
                        "--server-side",
                        "--force-conflicts",
                        "-n",
                        ns,
                        "-f",
                        &path(&manifests.join("base/config").join(file)),
                    ],
                    None,
                )
                .context("Argo CD's base config")?;
        }
        // Our patch, with the configuration's own settings merged into it.
        let ours =
            std::fs::read_to_string(repo_root().join("manifests/argocd/argocd-cm-patch.yaml"))
                .context("our argocd-cm patch")?;
        let mut patch: Value = serde_saphyr::from_str(&ours).context("our argocd-cm patch")?;
        if let (Some(data), Value::Object(extra)) = (
            patch["data"].as_object_mut(),
            cell.argocd_cm()["data"].clone(),
        ) {
            data.extend(extra);
        }
        cluster
            .kubectl_ok(
                &[
                    "patch",
                    "configmap",
                    "argocd-cm",
                    "-n",
                    ns,
                    "--type",
                    "merge",
                    "--patch",
                    &patch.to_string(),
                ],
                None,
            )
            .context("our argocd-cm patch and the configuration's settings")?;
        cluster
            .kubectl_ok(&["apply", "-n", ns, "-f", "-"], Some(
                r#"{"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
                    "metadata": {"name": "default"},
                    "spec": {"sourceRepos": ["*"], "destinations": [{"namespace": "*", "server": "*"}],
                             "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}}"#,
            ))
            .context("the default AppProject")?;

        let dir = repo_root()
            .join("target/argocd")
            .join(format!("{}", std::process::id()));
        for sub in ["tls", "ssh", "gpg", "home", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).context("Argo CD's directories")?;
        }
        let redis_port = free_low_port();
        // Debian's redis-server (hack/test.sh installs it when missing).
        let mut redis_cmd = Command::new("redis-server");
        redis_cmd
            .args(["--bind", "127.0.0.1", "--port", &redis_port.to_string()])
            .args(["--save", "", "--appendonly", "no"]);
        let mut redis = LocalProcess::spawn("redis", redis_cmd);
        wait_for_port(
            redis_port,
            &mut redis,
            "redis-server (Debian package redis-server)",
        )?;
        let redis_addr = format!("127.0.0.1:{redis_port}");

        let argocd = built_tool(cell.component())?;
        let component = |name: &str| {
            let mut cmd = Command::new(&argocd);
            cmd.env("ARGOCD_BINARY_NAME", name)
                .env("ARGOCD_GPG_ENABLED", "false")
                .env("ARGOCD_TLS_DATA_PATH", dir.join("tls"))
                .env("ARGOCD_SSH_DATA_PATH", dir.join("ssh"))
                .env("ARGOCD_GNUPGHOME", dir.join("gpg"))
                .env("ARGOCD_ASK_PASS_SOCK", dir.join("askpass.sock"))
                .env("HOME", dir.join("home"))
                .env("TMPDIR", dir.join("tmp"))
                .env("KUBECONFIG", &cluster.kubeconfig);
            cmd
        };
        let repo_port = free_low_port();
        let mut repo_cmd = component("argocd-repo-server");
        repo_cmd
            .args(["--address", "127.0.0.1", "--port", &repo_port.to_string()])
            .args([
                "--metrics-address",
                "127.0.0.1",
                "--metrics-port",
                &free_low_port().to_string(),
            ])
            .args(["--redis", &redis_addr, "--disable-tls"])
            .args(["--loglevel", "info", "--logformat", "text"]);
        let mut repo_server = LocalProcess::spawn("argocd-repo-server", repo_cmd);
        wait_for_port(repo_port, &mut repo_server, "argocd-repo-server")?;

        let metrics_port = free_low_port();
        let mut controller_cmd = component("argocd-application-controller");
        controller_cmd
            // In-cluster destinations read the kubeconfig instead of a pod's service account.
            .env("ARGOCD_FAKE_IN_CLUSTER", "true")
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args(["--namespace", ns, "--redis", &redis_addr])
            .args([
                "--repo-server",
                &format!("127.0.0.1:{repo_port}"),
                "--repo-server-plaintext",
            ])
            .args(["--metrics-port", &metrics_port.to_string()])
            // Periodic refreshes out of the way: a test counts the reconciles its changes cause.
            .args(["--app-resync", "600", "--app-resync-jitter", "0"])
            // Each version's default for keeping resource health in status.resources: the tests
            // read it where it is ([`RealArgoCd::health`]).
            .args(["--loglevel", "info", "--logformat", "text"]);
        let mut controller = LocalProcess::spawn("argocd-application-controller", controller_cmd);
        wait_for_port(
            metrics_port,
            &mut controller,
            "argocd-application-controller",
        )?;
        Ok(Self {
            namespace: ns.to_string(),
            controller,
            repo_server,
            _redis: redis,
            redis_port,
            metrics_port,
            cell,
        })
    }

    /// The health Argo CD gives a resource of Application `app` (in Argo CD's namespace):
    /// where the version keeps it - `status.resources` when persisted, else the resource tree
    /// the application controller writes to redis (what argocd-server serves to the UI and CLI).
    pub async fn health(
        &self,
        apps: &kube::Api<kube::api::DynamicObject>,
        app: &str,
        kind: &str,
        name: &str,
    ) -> Option<ResourceHealth> {
        let of = |v: &Value| {
            Some(ResourceHealth {
                status: v.pointer("/health/status")?.as_str()?.to_string(),
                message: v
                    .pointer("/health/message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            })
        };
        if self.cell.persists_health() {
            let a = apps.get(app).await.ok()?;
            let listed = a.data.pointer("/status/resources")?.as_array()?.clone();
            return listed
                .iter()
                .find(|r| r["kind"] == kind && r["name"] == name)
                .and_then(of);
        }
        let tree = resource_tree(self.redis_port, app).ok()??;
        let nodes = tree.get("nodes")?.as_array()?.clone();
        nodes
            .iter()
            .find(|n| n["kind"] == kind && n["name"] == name)
            .and_then(of)
    }
}

/// Application `app`'s resource tree from redis (key `app|resources-tree|<app>|<cache
/// version>.gz`, gzip-compressed JSON, as Argo CD's redis cache writes it; its first shard); None
/// when not written yet.
fn resource_tree(redis_port: u16, app: &str) -> anyhow::Result<Option<Value>> {
    use std::io::{BufRead, BufReader, Read, Write};
    let key = format!("app|resources-tree|{app}|1.8.3.gz");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", redis_port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len())?;
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    reader.read_line(&mut head)?;
    let len: i64 = head
        .trim()
        .strip_prefix('$')
        .with_context(|| format!("redis answered {head:?}"))?
        .parse()?;
    if len < 0 {
        return Ok(None);
    }
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body)?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(body.as_slice()).read_to_end(&mut json)?;
    Ok(Some(serde_json::from_slice(&json)?))
}

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

/// A git repository Applications sync from, read by the repo-server from disk (`file://`).
pub fn git_repo(name: &str) -> crate::harness::git_server::GitRepo {
    let root = repo_root()
        .join("target/argocd-git")
        .join(std::process::id().to_string());
    crate::harness::git_server::GitRepo::at(&root, name)
}

/// An NVJ as a manifest in git: `nvj::minimal`'s spec, only a name and these annotations.
pub fn nvj_manifest(name: &str, annotations: &[(&str, &str)]) -> Value {
    let nvj = crate::harness::nvj::minimal(name, &crate::harness::nvj::annotations(annotations));
    let mut doc = serde_json::to_value(nvj).unwrap_or_default();
    if let Some(m) = doc["metadata"].as_object_mut() {
        m.retain(|k, _| k == "name" || k == "annotations");
    }
    doc
}

/// An Application's files in waves: ConfigMap `settings` (wave 0), `nvj` (give it wave 1), and
/// Deployment `model` (wave 2; no replicas, so healthy once applied).
pub fn waves_manifests(nvj: Value) -> Vec<(&'static str, String)> {
    let wave = |w: &str| json!({"argocd.argoproj.io/sync-wave": w});
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "annotations": wave("0")}, "data": {"epochs": "3"}});
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "model", "annotations": wave("2")},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "model"}},
                 "template": {"metadata": {"labels": {"app": "model"}},
                              "spec": {"containers": [{"name": "server", "image": "registry.example/model:1"}]}}}});
    vec![
        ("app/configmap.json", config.to_string()),
        ("app/nvj.json", nvj.to_string()),
        ("app/deployment.json", deployment.to_string()),
    ]
}

/// Creates Application `name` of `repo_url`'s `app/` into namespace `destination` (created if
/// missing), with `annotations`, and requests a sync by `user` as `argocd app sync` does.
pub async fn create_and_sync(
    apps: &kube::Api<kube::api::DynamicObject>,
    name: &str,
    repo_url: &str,
    destination: &str,
    annotations: Value,
    user: &str,
) {
    let app: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"project": "default",
                 "source": {"repoURL": repo_url, "path": "app", "targetRevision": "HEAD"},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": destination},
                 "syncPolicy": {"syncOptions": ["CreateNamespace=true"]}},
        "operation": {"sync": {"revision": "HEAD", "syncOptions": ["CreateNamespace=true"]},
                      "initiatedBy": {"username": user}}
    }))
    .expect("an Application");
    apps.create(&kube::api::PostParams::default(), &app)
        .await
        .expect("create the Application");
}

/// A string field of an Application (empty when absent).
pub fn text(app: &kube::api::DynamicObject, pointer: &str) -> String {
    app.data
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Requests a webhook receiver got: (path, body).
pub type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A webhook receiver on 127.0.0.1 that answers 200 and records each request.
pub async fn receiver() -> (u16, Received) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received: Received = Arc::default();
    let rec = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let rec = rec.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // Read the head, then as many body bytes as Content-Length says.
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            let path = head
                                .split_whitespace()
                                .nth(1)
                                .unwrap_or_default()
                                .to_string();
                            if let Ok(mut r) = rec.lock() {
                                r.push((path, body.to_string()));
                            }
                            break;
                        }
                    }
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (port, received)
}

/// The JSON bodies received whose `result` is `result` (panics on a body that is not JSON: the
/// template must render valid JSON).
pub fn bodies(received: &Received, result: &str) -> Vec<Value> {
    received
        .lock()
        .map(|r| r.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>())
        .unwrap_or_default()
        .iter()
        .map(|b| {
            serde_json::from_str::<Value>(b).unwrap_or_else(|e| {
                panic!("the webhook template did not render valid JSON ({e}): {b}")
            })
        })
        .filter(|v| v["result"] == result)
        .collect()
}

/// Installs `argocd-notifications-cm` (our generated patch's keys, and a webhook service
/// `notebook-gitops` posting to 127.0.0.1:`port`) and an empty `argocd-notifications-secret` in
/// `namespace`.
pub fn install_notifications(cluster: &Cluster, namespace: &str, port: u16) {
    let text = std::fs::read_to_string(
        repo_root().join("manifests/argocd/notifications/argocd-notifications-cm-patch.yaml"),
    )
    .expect("the notifications patch");
    let patch: Value = serde_saphyr::from_str(&text).expect("valid YAML");
    let mut data = patch["data"].clone();
    data["service.webhook.notebook-gitops"] =
        json!(format!("url: http://127.0.0.1:{port}/notebook-gitops\n"));
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-notifications-cm"}, "data": data});
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "argocd-notifications-secret"}, "type": "Opaque"});
    for doc in [cm, secret] {
        cluster
            .kubectl_ok(
                &["apply", "-n", namespace, "-f", "-"],
                Some(&doc.to_string()),
            )
            .expect("the notifications config");
    }
}
