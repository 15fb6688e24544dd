use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::harness::cluster::{Cluster, repo_root};

/// Runs a command with `--kubeconfig`, feeding `stdin`; returns (success, stdout, stderr).
pub fn run_with_input(
    bin: &Path,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut cmd = Command::new(bin);
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return (
                false,
                String::new(),
                format!("cannot start {}: {e}", bin.display()),
            );
        }
    };
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(input.as_bytes());
    }
    match child.wait_with_output() {
        Ok(out) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Err(e) => (false, String::new(), e.to_string()),
    }
}

/// A local process that is killed when dropped, so a failing test leaves nothing behind.
/// Its output goes to `target/e2e-logs/<name>-<pid>.log`.
pub struct LocalProcess {
    child: Child,
    pub log: PathBuf,
}

impl LocalProcess {
    pub fn spawn(name: &str, mut cmd: Command) -> Self {
        let dir = repo_root().join("target/e2e-logs");
        let _ = std::fs::create_dir_all(&dir);
        let log = dir.join(format!("{name}-{}-{}.log", std::process::id(), unique()));
        let file = std::fs::File::create(&log).expect("create process log");
        let err = file.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self { child, log }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The process's output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON log lines of its output so far (other lines skipped).
    pub fn json_log(&self) -> Vec<serde_json::Value> {
        self.output()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM, as the kubelet does on pod deletion.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits up to `timeout` for the process to exit; its exit status if it did.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// What a test takes from a rendered chart: its ServiceAccount and RBAC documents, so a test
/// grants a controller exactly what its chart grants, and the controller container's literal
/// environment, so it runs as configured by the chart.
pub struct RenderedChart {
    pub rbac: String,
    pub env: Vec<(String, String)>,
    /// The Deployment's ServiceAccount (`<release>-<chart>` unless the release names the chart).
    pub service_account: String,
}

/// Renders a chart with `helm template`: each YAML document parsed.
pub fn render_chart_documents(
    cluster: &Cluster,
    chart: &Path,
    release: &str,
    namespace: &str,
    set: &[&str],
) -> Vec<serde_json::Value> {
    helm_template(cluster, chart, release, namespace, set)
        .iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str(d).expect("helm renders YAML"))
        .collect()
}

/// `helm template`'s output, one string per document.
fn helm_template(
    cluster: &Cluster,
    chart: &Path,
    release: &str,
    namespace: &str,
    set: &[&str],
) -> Vec<String> {
    let mut cmd = Command::new(&cluster.helm);
    cmd.args(["template", release])
        .arg(chart)
        .args(["--namespace", namespace]);
    for s in set {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("run helm template");
    assert!(
        out.status.success(),
        "helm template {} failed: {}",
        chart.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8_lossy(&out.stdout);
    let mut docs: Vec<String> = vec![String::new()];
    for line in rendered.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs
}

/// Renders a chart with `helm template`.
pub fn render_chart(
    cluster: &Cluster,
    chart: &Path,
    release: &str,
    namespace: &str,
    set: &[&str],
) -> RenderedChart {
    let docs = helm_template(cluster, chart, release, namespace, set);
    let kind_of = |doc: &str| {
        doc.lines()
            .find_map(|l| l.strip_prefix("kind: ").map(|k| k.trim().to_string()))
    };
    let rbac_kinds = [
        "ServiceAccount",
        "Role",
        "ClusterRole",
        "RoleBinding",
        "ClusterRoleBinding",
    ];
    let rbac = docs
        .iter()
        .filter(|doc| kind_of(doc).is_some_and(|k| rbac_kinds.contains(&k.as_str())))
        .map(|doc| format!("---\n{doc}"))
        .collect();
    let deployments: Vec<serde_json::Value> = docs
        .iter()
        .filter(|doc| kind_of(doc).as_deref() == Some("Deployment"))
        .filter_map(|doc| serde_saphyr::from_str::<serde_json::Value>(doc).ok())
        .collect();
    let service_account = deployments
        .iter()
        .find_map(|d| {
            d.pointer("/spec/template/spec/serviceAccountName")?
                .as_str()
        })
        .expect("the chart's Deployment names its ServiceAccount")
        .to_string();
    let env = deployments
        .iter()
        .flat_map(|d| {
            d.pointer("/spec/template/spec/containers/0/env")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|e| {
            // Literal values only: `valueFrom` (the pod's own name) has no meaning here.
            Some((
                e.get("name")?.as_str()?.to_string(),
                e.get("value")?.as_str()?.to_string(),
            ))
        })
        .collect();
    RenderedChart {
        rbac,
        env,
        service_account,
    }
}

/// A kubeconfig that authenticates as a ServiceAccount through a TokenRequest token. Creates
/// the ServiceAccount when missing; applies `rbac_yaml` (which may be empty) first.
pub async fn service_account_kubeconfig(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    rbac_yaml: &str,
) -> PathBuf {
    let client = cluster.client().await;
    if !rbac_yaml.trim().is_empty() {
        let (ok, _, err) = cluster.kubectl(&["apply", "-f", "-"], Some(rbac_yaml));
        assert!(ok, "applying RBAC failed: {err}");
    }
    let sas: Api<ServiceAccount> = Api::namespaced(client, namespace);
    if sas
        .get_opt(name)
        .await
        .expect("read service account")
        .is_none()
    {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        sas.create(&PostParams::default(), &sa)
            .await
            .expect("create service account");
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let issued: TokenRequest = sas
        .create_subresource("token", name, &PostParams::default(), &request)
        .await
        .expect("TokenRequest");
    let token = issued.status.map(|s| s.token).expect("token issued");
    let admin = std::fs::read_to_string(&cluster.kubeconfig).expect("admin kubeconfig");
    // Same server and CA as the admin kubeconfig; only the user differs.
    let mut out = String::new();
    let mut in_users = false;
    for line in admin.lines() {
        if line.starts_with("users:") {
            in_users = true;
            out.push_str(&format!(
                "users:\n- name: sa\n  user:\n    token: {token}\n"
            ));
            continue;
        }
        if in_users && !line.starts_with(' ') && !line.starts_with('-') {
            in_users = false;
        }
        if in_users {
            continue;
        }
        out.push_str(&line.replace("user: admin", "user: sa"));
        out.push('\n');
    }
    let path = service_account_kubeconfig_path(&cluster.kubeconfig, namespace, name);
    let _ = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")));
    std::fs::write(&path, out).expect("write service account kubeconfig");
    path
}

/// Beside the control plane's own kubeconfig: the same ServiceAccount on two control planes
/// (tests side by side, chaos runs side by side) must not share one file, or a controller
/// started again would talk to the other plane.
fn service_account_kubeconfig_path(admin: &Path, namespace: &str, name: &str) -> PathBuf {
    admin
        .parent()
        .unwrap_or(Path::new("."))
        .join("service-accounts")
        .join(format!("{namespace}-{name}.kubeconfig"))
}

/// Clears cargo's variables for this test (CARGO_PKG_*, its library path) from `command`, so it
/// runs as from a user's shell: with them, a cargo build it starts (the images' release build)
/// would look changed and rebuild whole.
pub fn as_from_a_shell(command: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let cargo_own =
            key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_TARGET_DIR";
        if cargo_own || key == "CARGO" || key == "LD_LIBRARY_PATH" || key == "OUT_DIR" {
            command.env_remove(&key);
        }
    }
    command
}

/// Waits up to 60 s until `ready` holds (`what` says what it waits for), failing at once with
/// the process's output when it exits.
pub fn wait_until_ready(
    process: &mut LocalProcess,
    name: &str,
    what: &str,
    ready: impl Fn() -> bool,
) -> anyhow::Result<()> {
    for _ in 0..600 {
        if ready() {
            return Ok(());
        }
        if !process.is_running() {
            anyhow::bail!("{name} exited: {}", process.output());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    anyhow::bail!("{name} did not {what} within 60 s: {}", process.output())
}

/// Runs `hack/build-binaries.sh` with `args` (building what is missing); its output, a path.
pub fn build_binaries(args: &[&str]) -> anyhow::Result<PathBuf> {
    let out = Command::new(repo_root().join("hack/build-binaries.sh"))
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("hack/build-binaries.sh: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "hack/build-binaries.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The cached binary of a pinned tool (`kubectl`, `argocd`, `promtool`, ...), built first when
/// it is missing.
pub fn built_tool(name: &str) -> anyhow::Result<PathBuf> {
    let path = build_binaries(&["--path", name])?;
    if !path.exists() {
        build_binaries(&[name])?;
    }
    Ok(path)
}

/// Where [`free_port`] looks: below the kernel's ephemeral range (32768-60999 by default), so
/// no outgoing connection's source port takes a port between the check and the server's bind -
/// with many tests side by side, a port the kernel had handed out for `:0` was taken that way -
/// and above the shared plane's fixed ports (16443, 23790, 23800).
const PORT_RANGE: std::ops::Range<u32> = 24_000..32_000;

/// A TCP port free on 127.0.0.1 right now (for a process's --http-addr, a control plane's
/// ports): never one this process or another running test process handed out before
/// ([`reserve_port`]), and spread by process id so test processes side by side start far apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static HANDED_OUT: AtomicU32 = AtomicU32::new(0);
    let span = PORT_RANGE.end - PORT_RANGE.start;
    let offset = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let n = HANDED_OUT.fetch_add(1, Ordering::SeqCst);
        let port = PORT_RANGE.start + (offset + n.wrapping_mul(7)) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && reserve_port(port) {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:{PORT_RANGE:?}")
}

/// The lock files of the ports [`reserve_port`] holds, by port.
static HELD_PORTS: std::sync::OnceLock<std::sync::Mutex<Vec<(u16, std::fs::File)>>> =
    std::sync::OnceLock::new();

/// Holds `port` for this process until it exits: a lock on `target/e2e-ports/<port>`, which the
/// test processes of this checkout all take. A port free when checked is not yet bound by the
/// server it is for; two test processes checking at once both found it free (a control plane
/// and another test's trigger-controller were once handed the same port). False when another
/// process holds it; true when no lock can be taken at all (the bind check alone then).
fn reserve_port(port: u16) -> bool {
    use std::fs::{File, TryLockError};
    use std::sync::Mutex;
    let held = HELD_PORTS.get_or_init(Mutex::default);
    let dir = repo_root().join("target/e2e-ports");
    let file = std::fs::create_dir_all(&dir).and_then(|()| {
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
    });
    let Ok(file) = file else {
        return true;
    };
    match file.try_lock() {
        Ok(()) => {
            held.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((port, file));
            true
        }
        Err(TryLockError::WouldBlock) => false,
        Err(TryLockError::Error(_)) => true,
    }
}

/// Lets another process take `port` (closing its lock file releases the lock).
#[cfg(test)]
fn release_port(port: u16) {
    if let Some(held) = HELD_PORTS.get() {
        held.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(p, _)| *p != port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_handed_out_is_held_against_other_processes_and_theirs_against_this_one() {
        let port = free_port();
        let lock = repo_root().join(format!("target/e2e-ports/{port}"));
        let flock = |args: &[&str]| {
            // --close: the lock is flock's own, not its command's (killed with flock).
            std::process::Command::new("flock")
                .arg("--close")
                .args(args)
                .arg(&lock)
                .args(["sleep", "30"])
                .spawn()
                .expect("flock(1)")
        };
        // Another test process cannot take it while this one lives.
        let refused = flock(&["--nonblock", "--conflict-exit-code", "75"])
            .wait()
            .expect("flock(1) ends");
        assert_eq!(refused.code(), Some(75), "another process took port {port}");

        // And a port another process holds is not handed out here.
        release_port(port);
        let mut holder = flock(&[]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while reserve_port(port) {
            release_port(port);
            assert!(
                std::time::Instant::now() < deadline,
                "flock(1) never took {lock:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        holder.kill().ok();
        holder.wait().ok();
        assert!(
            reserve_port(port),
            "port {port} is free again once its holder exited"
        );
    }

    #[test]
    fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(
            ports
                .iter()
                .all(|p| (24_000..32_000).contains(&u32::from(*p)))
        );
    }

    #[test]
    fn a_service_accounts_kubeconfig_belongs_to_its_control_plane() {
        let shared = Path::new("/repo/target/local-cluster/kubeconfig");
        let private = Path::new("/repo/target/chaos-42/kubeconfig");
        let a = service_account_kubeconfig_path(shared, "nbg-system", "tc");
        let b = service_account_kubeconfig_path(private, "nbg-system", "tc");
        assert_ne!(a, b);
        assert!(b.starts_with("/repo/target/chaos-42"), "{b:?}");
        assert_ne!(
            service_account_kubeconfig_path(shared, "nbg-system", "tc"),
            service_account_kubeconfig_path(shared, "nbg-system", "wm")
        );
    }
}
