//! The pod sandbox: what a container runtime gives a pod, for the kubelet double's deployed pods
//! (pods run as a chart deploys them, from their image's entrypoint).
//!
//! A deployed pod runs as `unshare --net --mount --pid --fork --kill-child -- pod-sandbox
//! <spec.json>`: its own network namespace (two replicas both listen on :8080, as in a
//! cluster), its own mount namespace (its volumes bind-mounted at their mount paths - the
//! projected ServiceAccount token at /var/run/secrets/kubernetes.io/serviceaccount, exactly
//! where in-cluster clients read it) and its own PID namespace whose first process is the
//! sandbox: killing it (or `unshare`) kills everything the pod started, like a container.
//! The root file system is this machine's, read-only in the pod when the container asks for it
//! (`readOnlyRootFilesystem`); missing mount points are created as empty directories on it.
//!
//! Inside, the sandbox brings up loopback, makes the API server reachable at
//! 127.0.0.1:<port> (through a socket the double serves on the node), makes each container port
//! reachable from the node through a socket (the double's probes use it), then runs the
//! container's process, passes SIGTERM on to it and exits with its exit code.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// What the sandbox sets up and runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub mounts: Vec<BindMount>,
    /// Inside the pod, 127.0.0.1:`port` reaches the API server through `socket`.
    pub api_server: Forward,
    /// Each container port, reachable from the node through its socket.
    pub ports: Vec<Forward>,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub working_dir: Option<PathBuf>,
    /// `securityContext.readOnlyRootFilesystem`: the root file system read-only in the pod
    /// (its volumes stay as mounted).
    pub read_only_root: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forward {
    pub port: u16,
    pub socket: PathBuf,
}

/// The command that starts a sandbox with this spec file.
pub fn command(sandbox_binary: &Path, spec_file: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("unshare");
    cmd.args([
        "--net",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "--propagation",
        "private",
        "--",
    ])
    .arg(sandbox_binary)
    .arg(spec_file);
    cmd
}

/// Sets the sandbox up and runs the container's process; returns its exit code.
pub async fn run(spec: SandboxSpec) -> anyhow::Result<i32> {
    run_tool("ip", &["link", "set", "lo", "up"])?;
    for m in &spec.mounts {
        bind(m)?;
    }
    let api = TcpListener::bind(("127.0.0.1", spec.api_server.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{} in the pod",
                spec.api_server.port
            )
        })?;
    tokio::spawn(forward_tcp_to_unix(api, spec.api_server.socket.clone()));
    for p in &spec.ports {
        let _ = std::fs::remove_file(&p.socket);
        let listener = UnixListener::bind(&p.socket)
            .with_context(|| format!("cannot listen on {}", p.socket.display()))?;
        tokio::spawn(forward_unix_to_tcp(listener, p.port));
    }
    // Last: the node's sockets above live on the root file system.
    if spec.read_only_root {
        run_tool("mount", &["-o", "remount,bind,ro", "/"])?;
    }
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args).stdin(std::process::Stdio::null());
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("exec: {:?}", spec.program))?;
    let pid = child.id();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = term.recv() => {
                if let Some(pid) = pid {
                    let _ = run_tool("kill", &["-TERM", &pid.to_string()]);
                }
            }
        }
    };
    Ok(exit_code(status))
}

/// A process's exit code as a container runtime reports it: 128 + the signal that ended it.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(128)
}

fn run_tool(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn bind(m: &BindMount) -> anyhow::Result<()> {
    if m.source.is_dir() {
        std::fs::create_dir_all(&m.target)
            .with_context(|| format!("mount point {}", m.target.display()))?;
    } else if !m.target.exists() {
        if let Some(parent) = m.target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&m.target, b"")
            .with_context(|| format!("mount point {}", m.target.display()))?;
    }
    let (source, target) = (m.source.to_string_lossy(), m.target.to_string_lossy());
    run_tool("mount", &["--bind", &source, &target])?;
    if m.read_only {
        run_tool("mount", &["-o", "remount,bind,ro", &target])?;
    }
    Ok(())
}

async fn forward_tcp_to_unix(listener: TcpListener, socket: PathBuf) {
    while let Ok((mut tcp, _)) = listener.accept().await {
        let socket = socket.clone();
        tokio::spawn(async move {
            if let Ok(mut unix) = UnixStream::connect(&socket).await {
                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
            }
        });
    }
}

async fn forward_unix_to_tcp(listener: UnixListener, port: u16) {
    while let Ok((mut unix, _)) = listener.accept().await {
        tokio::spawn(async move {
            if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)).await {
                let _ = tokio::io::copy_bidirectional(&mut unix, &mut tcp).await;
            }
        });
    }
}

/// On the node: serves `socket`, each connection forwarded to the API server at `address`.
pub async fn serve_api_server_socket(
    socket: PathBuf,
    address: std::net::SocketAddr,
) -> anyhow::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    while let Ok((mut unix, _)) = listener.accept().await {
        tokio::spawn(async move {
            if let Ok(mut tcp) = TcpStream::connect(address).await {
                let _ = tokio::io::copy_bidirectional(&mut unix, &mut tcp).await;
            }
        });
    }
    Ok(())
}

/// On the node: an HTTP GET of `path` on a container port's socket, as a kubelet's httpGet
/// probe; the status code, or None when nothing answers within a second.
pub async fn http_get(socket: &Path, path: &str) -> Option<u16> {
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await.ok()?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response);
        text.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(std::time::Duration::from_secs(1), exchange)
        .await
        .ok()
        .flatten()
}
