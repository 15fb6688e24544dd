//! Our binaries as a user meets them: `--help`, `--version`, one clear line when the API server
//! is unreachable, and, under a ServiceAccount token with only the RBAC they need, leader
//! election on a Lease: one leader, a standby that takes over when the leader is killed.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use nbg_e2e::harness::cluster::{eventually, workspace_binary};
use nbg_e2e::harness::process::{LocalProcess, free_port, service_account_kubeconfig};
use nbg_e2e::{Cluster, TestNamespace};

const BINARIES: [&str; 5] = [
    "nvj-validator",
    "trigger-controller",
    "wave-marker",
    "app-status-aggregator",
    "event-notifier",
];

#[test]
fn every_binary_answers_help_and_version() {
    for name in BINARIES {
        let bin = workspace_binary(name);
        let help = Command::new(&bin)
            .arg("--help")
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(
            help.status.success() && text.contains("Usage:") && text.contains("--namespaces"),
            "{name} --help: {text}"
        );
        let version = Command::new(&bin)
            .arg("--version")
            .output()
            .expect("run --version");
        let text = String::from_utf8_lossy(&version.stdout);
        assert!(
            version.status.success()
                && text.trim() == format!("{name} {}", env!("CARGO_PKG_VERSION")),
            "{name} --version: {text}"
        );
    }
}

#[test]
fn an_unreachable_api_server_is_one_clear_line_and_a_non_zero_exit() {
    let dir = std::env::temp_dir().join(format!("nbg-unreachable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n",
    )
    .expect("write kubeconfig");
    for name in BINARIES {
        let out = Command::new(workspace_binary(name))
            .args([
                "--kubeconfig",
                &kubeconfig.to_string_lossy(),
                "--connect-timeout",
                "3s",
                "--http-addr",
                "127.0.0.1:0",
            ])
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LOG", "off")
            .output()
            .expect("run binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} exited 0");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: expected one line, got {stderr}");
        assert!(
            lines[0].starts_with(
                "error: cannot reach the Kubernetes API server at https://127.0.0.1:1/"
            ),
            "{name}: {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{name}: {stderr}"
        );
    }
}

fn lease_rbac(ns: &str, sa: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: leases, namespace: {ns}}}\nrules:\n- apiGroups: [coordination.k8s.io]\n  resources: [leases]\n  verbs: [get, create, update]\n- apiGroups: [events.k8s.io]\n  resources: [events]\n  verbs: [create, patch]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: leases, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: leases}}\nsubjects:\n- {{kind: ServiceAccount, name: {sa}, namespace: {ns}}}\n"
    )
}

#[tokio::test]
async fn leader_election_under_a_service_account_token() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "lease").await;
    let kubeconfig = service_account_kubeconfig(
        &cluster,
        &ns.name,
        "wave-marker",
        &lease_rbac(&ns.name, "wave-marker"),
    )
    .await;
    let port_b = free_port();
    let start = |identity: &str, port: u16| {
        let mut cmd = Command::new(workspace_binary("wave-marker"));
        cmd.args([
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
            "--namespaces",
            &ns.name,
            "--leader-election",
        ])
        .args([
            "--lease-namespace",
            &ns.name,
            "--leader-identity",
            identity,
            "--lease-duration",
            "3s",
        ])
        .args(["--http-addr", &format!("127.0.0.1:{port}")]);
        LocalProcess::spawn(identity, cmd)
    };
    let leases: Api<Lease> = Api::namespaced(cluster.client().await, &ns.name);
    let holder = |leases: Api<Lease>| async move {
        leases
            .get_opt("wave-marker")
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity
            .filter(|h| !h.is_empty())
    };

    let mut first = start("replica-a", free_port());
    let leader = eventually(
        Duration::from_secs(20),
        "replica-a to take the lease",
        || holder(leases.clone()),
    )
    .await;
    assert_eq!(leader, "replica-a", "{}", first.output());
    let mut second = start("replica-b", port_b);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        holder(leases.clone()).await.as_deref(),
        Some("replica-a"),
        "the standby must not take a held lease"
    );
    assert!(second.is_running(), "{}", second.output());

    first.kill();
    eventually(
        Duration::from_secs(20),
        "replica-b to take over after replica-a was killed",
        || {
            let leases = leases.clone();
            async move { holder(leases).await.filter(|h| h == "replica-b") }
        },
    )
    .await;
    assert!(second.is_running(), "{}", second.output());

    // The shared HTTP endpoints.
    let get = |path: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                &format!("http://127.0.0.1:{port_b}{path}"),
            ])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    assert!(
        get("/readyz").ends_with("200"),
        "readyz: {}",
        get("/readyz")
    );
    assert!(get("/healthz").ends_with("200"));
    let metrics = get("/metrics");
    assert!(
        metrics.contains("nbg_leader{controller=\"wave-marker\"} 1")
            && metrics.contains("nbg_build_info{")
            && metrics.ends_with("200"),
        "{metrics}"
    );

    // SIGTERM: a clean exit that hands the lease back at once.
    second.terminate();
    let status = second
        .wait_exit(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}: {}",
        second.output()
    );
    assert_eq!(
        holder(leases.clone()).await,
        None,
        "the lease is released on shutdown"
    );
}
