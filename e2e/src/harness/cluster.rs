use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The repository root (the e2e crate lives one level below it).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of a built binary of this workspace (same profile and target dir as the test), or of
/// `$NBG_E2E_BIN_DIR/<name>` when that is set (to measure another build the same way).
/// `name`, or `name-<cell>` in an Argo CD configuration of the matrix (`NBG_ARGOCD_CELL`):
/// hack/test.sh runs the same tests in several configurations side by side, so what a test
/// keeps under `target/` by a fixed name (its control plane, the kubelet double's pods) is
/// each configuration's own.
pub fn per_argocd_cell(name: &str) -> String {
    match std::env::var("NBG_ARGOCD_CELL") {
        Ok(cell) if !cell.is_empty() => format!("{name}-{cell}"),
        _ => name.to_string(),
    }
}

pub fn workspace_binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("NBG_E2E_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    // Test executables live in <target>/<profile>/deps; binaries in <target>/<profile>.
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let profile_dir = if dir.ends_with("deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        dir
    };
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` first (hack/test.sh does)",
        path.display()
    );
    path
}

/// A running local control plane.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    pub helm: PathBuf,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

fn boot() -> anyhow::Result<Cluster> {
    let root = repo_root();
    let dir = std::env::var_os("NBG_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/local-cluster"));
    // `up` is idempotent: it returns at once when the cluster is already running.
    let status = Command::new(root.join("hack/local-cluster.sh"))
        .arg("up")
        .status()
        .context("running hack/local-cluster.sh up")?;
    if !status.success() {
        bail!("hack/local-cluster.sh up failed");
    }
    let status = Command::new(root.join("hack/build-binaries.sh"))
        .arg("helm")
        .status()?;
    if !status.success() {
        bail!("building helm failed");
    }
    Cluster::at(&dir)
}

impl Cluster {
    /// The running control plane whose state is in `dir`, with our CRDs (and KServe's) installed.
    pub(crate) fn at(dir: &Path) -> anyhow::Result<Cluster> {
        let cluster = Cluster {
            kubeconfig: dir.join("kubeconfig"),
            kubectl: crate::harness::process::build_binaries(&["--path", "kubectl"])?,
            helm: crate::harness::process::build_binaries(&["--path", "helm"])?,
        };
        cluster.install_crds()?;
        Ok(cluster)
    }

    /// The control plane's directory (its state, certificates and kubeconfig): where what belongs
    /// to this plane alone goes, so two planes on one machine do not share it.
    pub fn dir(&self) -> &Path {
        self.kubeconfig.parent().unwrap_or(Path::new("."))
    }

    /// Boots the control plane once per test process, or reuses the running one.
    pub fn get() -> Cluster {
        // Logs of in-process helpers (the kubelet double) show with a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn,kube_client=error".into()),
            )
            .with_test_writer()
            .try_init();
        match CLUSTER.get_or_init(|| boot().map_err(|e| format!("{e:#}"))) {
            Ok(c) => c.clone(),
            Err(e) => panic!("the local control plane is not available: {e}"),
        }
    }

    /// Boots the control plane, or reuses the running one, without the test harness's logging
    /// (for tools such as the demo); errors instead of panicking.
    pub fn boot_or_reuse() -> anyhow::Result<Cluster> {
        boot()
    }

    /// The API server's address on this machine (from the kubeconfig's server URL).
    pub fn api_server(&self) -> std::net::SocketAddr {
        let kc = Kubeconfig::read_from(&self.kubeconfig).expect("readable kubeconfig");
        let server = kc
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .and_then(|c| c.server.clone())
            .expect("the kubeconfig names a server");
        let authority = server.trim_start_matches("https://").trim_end_matches('/');
        authority
            .parse()
            .unwrap_or_else(|e| panic!("server {server} is not an address: {e}"))
    }

    /// An admin client.
    pub async fn client(&self) -> Client {
        self.client_for(&self.kubeconfig).await
    }

    /// A client from any kubeconfig file.
    pub async fn client_for(&self, kubeconfig: &Path) -> Client {
        let kc = Kubeconfig::read_from(kubeconfig).expect("readable kubeconfig");
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("valid kubeconfig");
        Client::try_from(config).expect("client")
    }

    /// Runs kubectl as admin; returns (success, stdout, stderr).
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        crate::harness::process::run_with_input(&self.kubectl, &self.kubeconfig, args, stdin)
    }

    /// Runs helm against this control plane as admin; returns (success, stdout and stderr).
    pub fn helm_run(&self, args: &[&str]) -> (bool, String) {
        let (ok, out, err) =
            crate::harness::process::run_with_input(&self.helm, &self.kubeconfig, args, None);
        (ok, format!("{out}{err}"))
    }

    /// Runs kubectl as admin; its output, or an error naming the command and kubectl's message.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let (ok, out, err) = self.kubectl(args, stdin);
        if !ok {
            bail!("kubectl {args:?} failed: {err}");
        }
        Ok(out)
    }

    /// Waits until these CRDs (by name) are Established. Right after they are applied `kubectl
    /// wait` fails at once, until the API server has written their first status: tried again.
    pub fn wait_established(&self, crds: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
        let names: Vec<String> = crds.iter().map(|c| format!("crd/{c}")).collect();
        args.extend(names.iter().map(String::as_str));
        let mut result = self.kubectl_ok(&args, None);
        for _ in 0..60 {
            if result.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
            result = self.kubectl_ok(&args, None);
        }
        result.map(|_| ())
    }

    /// Starts deleting a namespace and removes its pods at once: pods bound to a kubelet double
    /// that is gone would otherwise wait for a kubelet forever (the namespace is terminating,
    /// so nothing recreates them). Does not wait.
    pub fn delete_namespace(&self, name: &str) {
        self.kubectl(&["delete", "namespace", name, "--wait=false"], None);
        self.kubectl(
            &[
                "delete",
                "pods",
                "--all",
                "-n",
                name,
                "--grace-period=0",
                "--force",
                "--wait=false",
            ],
            None,
        );
    }

    pub(crate) fn install_crds(&self) -> anyhow::Result<()> {
        let root = repo_root();
        for dir in [root.join("manifests/crds"), root.join("e2e/crds")] {
            let (ok, _, err) = self.kubectl(
                &[
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "-f",
                    &dir.to_string_lossy(),
                ],
                None,
            );
            if !ok {
                bail!("kubectl apply -f {} failed: {err}", dir.display());
            }
        }
        crate::harness::kserve::install_crds(self)?;
        // `kubectl wait` fails at once while a new CRD has no conditions yet: poll instead.
        let jsonpath = r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Established")].status}{"\n"}{end}"#;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (ok, out, err) = self.kubectl(&["get", "crd", "-o", jsonpath], None);
            if ok && !out.trim().is_empty() && out.lines().all(|l| l == "True") {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("CRDs not established within 60 s: {err}{out}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `count` Leases in `leases`' namespace have a holder (each controller of a
/// release leads); their holders.
pub async fn lease_holders(
    leases: &kube::Api<k8s_openapi::api::coordination::v1::Lease>,
    count: usize,
    within: Duration,
) -> Vec<String> {
    eventually(within, "every controller to hold its Lease", || {
        let leases = leases.clone();
        async move {
            let list = leases.list(&kube::api::ListParams::default()).await.ok()?;
            let holders: Vec<String> = list
                .items
                .iter()
                .filter_map(|l| l.spec.as_ref()?.holder_identity.clone())
                .collect();
            (holders.len() == count).then_some(holders)
        }
    })
    .await
}

/// The bin directory of the project's notebook Python environment (hack/python-env.sh).
pub fn notebook_python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new(repo_root().join("hack/python-env.sh"))
            .output()
            .expect("run hack/python-env.sh");
        assert!(
            out.status.success(),
            "python env: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("python")
    })
    .clone()
}

/// An API for a kind our types do not cover (KServe's InferenceService, the test-only Rollout
/// and Application CRDs), in one namespace.
pub fn dynamic_api(
    client: &Client,
    namespace: &str,
    group: &str,
    version: &str,
    kind: &str,
) -> kube::Api<kube::api::DynamicObject> {
    let resource =
        kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(group, version, kind));
    kube::Api::namespaced_with(client.clone(), namespace, &resource)
}

/// The holder of the Lease `name`, if it exists and is held.
pub async fn lease_holder(
    leases: &kube::Api<k8s_openapi::api::coordination::v1::Lease>,
    name: &str,
) -> Option<String> {
    leases
        .get_opt(name)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}
