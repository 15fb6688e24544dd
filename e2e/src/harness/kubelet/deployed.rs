//! Pods run as a chart deploys them. A container without a `command` runs its image's
//! entrypoint: the workspace binary the image is mapped to (as `just images` builds it), with
//! the container's args and env as rendered. The pod gets what a kubelet gives it: its
//! projected volumes (the ServiceAccount token from a TokenRequest bound to the pod, the
//! cluster CA, its namespace) mounted at their paths, the in-cluster environment
//! (KUBERNETES_SERVICE_HOST/PORT, HOSTNAME) and nothing of this machine's (no KUBECONFIG),
//! its own network (see [`pod_sandbox`]), httpGet/tcpSocket probes that decide Ready and
//! restart a container that fails liveness, and restarts per `restartPolicy`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, Pod, Probe, ProjectedVolumeSource, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};

use super::{State, now};
use crate::harness::pod_sandbox::{self, BindMount, Forward, SandboxSpec};

/// Which images run as deployed, and how their pods reach the API server.
#[derive(Clone, Debug)]
pub struct DeployedPods {
    /// Image repository (without tag or digest) and the binary that is its entrypoint, e.g.
    /// `ghcr.io/notebook-gitops/trigger-controller` -> `target/debug/trigger-controller`.
    pub images: Vec<(String, PathBuf)>,
    /// The API server on this machine; pods reach it as 127.0.0.1 on its port.
    pub api_server: SocketAddr,
    /// The `pod-sandbox` binary.
    pub sandbox: PathBuf,
    /// Where the node's sockets go (short: a socket path has at most 107 bytes).
    pub socket_dir: PathBuf,
}

impl DeployedPods {
    /// The charts' default images of `binaries` (`ghcr.io/notebook-gitops/<binary>`) mapped to
    /// this workspace's builds, for pods on `cluster`; sockets in a directory of this process
    /// named after `purpose`.
    pub fn workspace(cluster: &crate::Cluster, binaries: &[&str], purpose: &str) -> Self {
        use crate::harness::cluster::workspace_binary;
        Self {
            images: binaries
                .iter()
                .map(|b| (format!("ghcr.io/notebook-gitops/{b}"), workspace_binary(b)))
                .collect(),
            api_server: cluster.api_server(),
            sandbox: workspace_binary("pod-sandbox"),
            socket_dir: std::env::temp_dir()
                .join(format!("nbg-pods-{purpose}-{}", std::process::id())),
        }
    }

    /// The entrypoint of `image` (`repo:tag` or `repo@digest`), when it is mapped.
    pub fn entrypoint(&self, image: &str) -> Option<&Path> {
        let repository =
            image
                .split_once('@')
                .map(|(r, _)| r)
                .unwrap_or_else(|| match image.rsplit_once(':') {
                    Some((r, tag)) if !tag.contains('/') => r,
                    _ => image,
                });
        self.images
            .iter()
            .find(|(r, _)| r == repository)
            .map(|(_, binary)| binary.as_path())
    }

    pub(super) fn api_server_socket(&self, node: &str) -> PathBuf {
        self.socket_dir.join(format!("{node}-api.sock"))
    }
}

/// Where a pod's port socket lives on the node.
fn port_socket(dir: &Path, pod_uid: &str, port: i32) -> PathBuf {
    dir.join(format!("{}-{port}.sock", &pod_uid[..pod_uid.len().min(13)]))
}

impl State {
    pub(super) fn runs_as_deployed(&self, pod: &Pod) -> bool {
        let Some(deployed) = &self.config.deployed else {
            return false;
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let all = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        all.clone().count() > 0
            && all.clone().all(|c| {
                c.command.is_none()
                    && deployed
                        .entrypoint(c.image.as_deref().unwrap_or(""))
                        .is_some()
            })
    }

    /// A projected volume's files, as the kubelet writes them.
    pub(super) async fn project(
        &self,
        pod: &Pod,
        projected: &ProjectedVolumeSource,
        dir: &Path,
    ) -> anyhow::Result<()> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        for source in projected.sources.iter().flatten() {
            if let Some(t) = &source.service_account_token {
                let account = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.clone())
                    .unwrap_or_else(|| "default".into());
                let request = TokenRequest {
                    spec: TokenRequestSpec {
                        audiences: t.audience.iter().cloned().collect(),
                        expiration_seconds: t.expiration_seconds,
                        bound_object_ref: Some(BoundObjectReference {
                            api_version: Some("v1".into()),
                            kind: Some("Pod".into()),
                            name: pod.metadata.name.clone(),
                            uid: pod.metadata.uid.clone(),
                        }),
                    },
                    ..TokenRequest::default()
                };
                let issued: TokenRequest =
                    Api::<ServiceAccount>::namespaced(self.client.clone(), &ns)
                        .create_subresource("token", &account, &PostParams::default(), &request)
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!("token for ServiceAccount {ns}/{account}: {e}")
                        })?;
                let token = issued.status.map(|s| s.token).unwrap_or_default();
                std::fs::write(dir.join(&t.path), token)?;
            }
            if let Some(c) = &source.config_map {
                self.config_map_files(
                    &ns,
                    &c.name,
                    c.optional,
                    c.items.as_deref(),
                    dir,
                    "a projected volume",
                )
                .await?;
            }
            if let Some(d) = &source.downward_api {
                for item in d.items.iter().flatten() {
                    let value = match item.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                        Some("metadata.namespace") => ns.clone(),
                        Some("metadata.name") => pod.metadata.name.clone().unwrap_or_default(),
                        Some("metadata.uid") => pod.metadata.uid.clone().unwrap_or_default(),
                        other => anyhow::bail!(
                            "downwardAPI field {other:?} is not supported by the kubelet double"
                        ),
                    };
                    std::fs::write(dir.join(&item.path), value)?;
                }
            }
        }
        Ok(())
    }

    /// Runs a deployed pod's one container until the pod is deleted (or, without
    /// `restartPolicy: Always`, until it ends).
    pub(super) async fn run_deployed(&self, pod: Pod) -> anyhow::Result<()> {
        let Some(deployed) = self.config.deployed.clone() else {
            return Ok(());
        };
        let key = super::pod_key(&pod);
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        if spec.containers.len() != 1
            || spec.init_containers.as_ref().is_some_and(|i| !i.is_empty())
        {
            anyhow::bail!(
                "the kubelet double runs deployed pods of exactly one container and no init containers"
            );
        }
        let c = spec.containers[0].clone();
        let image = c.image.clone().unwrap_or_default();
        let program = deployed
            .entrypoint(&image)
            .map(Path::to_path_buf)
            .ok_or_else(|| anyhow::anyhow!("image {image} is not mapped to a binary"))?;
        let dir = self.config.work_dir.join(&ns).join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("volumes"))?;
        std::fs::create_dir_all(&deployed.socket_dir)?;
        let volumes = self.prepare_volumes(&pod, &dir).await?;

        let mounts = c
            .volume_mounts
            .iter()
            .flatten()
            .filter_map(|m| {
                let base = volumes.get(&m.name)?;
                let source = match m.sub_path.as_deref() {
                    Some(sub) if !sub.is_empty() => base.join(sub),
                    _ => base.clone(),
                };
                Some(BindMount {
                    source,
                    target: PathBuf::from(&m.mount_path),
                    read_only: m.read_only == Some(true),
                })
            })
            .collect();
        let ports: Vec<Forward> = c
            .ports
            .iter()
            .flatten()
            .map(|p| Forward {
                port: u16::try_from(p.container_port).unwrap_or(0),
                socket: port_socket(&deployed.socket_dir, &uid, p.container_port),
            })
            .collect();
        let sandbox = SandboxSpec {
            mounts,
            api_server: Forward {
                port: deployed.api_server.port(),
                socket: deployed.api_server_socket(&self.config.node_name),
            },
            ports,
            program,
            args: c.args.clone().unwrap_or_default(),
            working_dir: c.working_dir.as_ref().map(PathBuf::from),
            read_only_root: c
                .security_context
                .as_ref()
                .and_then(|s| s.read_only_root_filesystem)
                .unwrap_or(false),
        };
        let spec_file = dir.join("sandbox.json");
        std::fs::write(&spec_file, serde_json::to_vec_pretty(&sandbox)?)?;

        let port = deployed.api_server.port();
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
            ("HOSTNAME".into(), name.clone()),
            ("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()),
            ("KUBERNETES_SERVICE_PORT".into(), port.to_string()),
            ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.to_string()),
            ("KUBERNETES_PORT".into(), format!("tcp://127.0.0.1:{port}")),
        ];
        env.extend(self.env_of(&ns, &name, &c).await?);

        let started = now();
        let mut restarts = 0;
        // The previous run's terminated state, after a restart.
        let mut last: Option<ContainerState> = None;
        loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("{}.log", c.name)))?;
            let mut cmd = pod_sandbox::command(&deployed.sandbox, &spec_file);
            cmd.env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .current_dir("/")
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true);
            let mut child = cmd.spawn()?;
            if let (Some(pid), Ok(mut running)) = (child.id(), self.running.lock()) {
                running.insert(key.clone(), vec![pid]);
            }
            let container_started = now();
            let status = |ready: bool| {
                let mut cs = Self::running_status(&c, ready, &container_started);
                cs.restart_count = restarts;
                cs.last_state = last.clone();
                Self::base_status("Running", ready, vec![cs], started.clone())
            };
            self.write_status(&pod, status(false)).await?;
            let probing = async {
                let mut ready = false;
                let mut liveness_failures = 0;
                let period = |p: &Option<Probe>| {
                    Duration::from_secs(
                        p.as_ref()
                            .and_then(|p| p.period_seconds)
                            .and_then(|s| u64::try_from(s).ok())
                            .unwrap_or(10)
                            .max(1),
                    )
                };
                let delay = |p: &Option<Probe>| {
                    Duration::from_secs(
                        p.as_ref()
                            .and_then(|p| p.initial_delay_seconds)
                            .and_then(|s| u64::try_from(s).ok())
                            .unwrap_or(0),
                    )
                };
                let (ready_period, live_period) =
                    (period(&c.readiness_probe), period(&c.liveness_probe));
                let mut next_ready = tokio::time::Instant::now() + delay(&c.readiness_probe);
                let mut next_live = tokio::time::Instant::now() + delay(&c.liveness_probe);
                loop {
                    tokio::time::sleep_until(next_ready.min(next_live)).await;
                    let now_ = tokio::time::Instant::now();
                    if now_ >= next_ready {
                        next_ready = now_ + ready_period;
                        // Without a readiness probe a started container is ready.
                        let ok = match &c.readiness_probe {
                            None => true,
                            Some(p) => self.probe(&deployed, &uid, &c, p).await,
                        };
                        if ok != ready {
                            ready = ok;
                            let _ = self.write_status(&pod, status(ready)).await;
                        }
                    }
                    if now_ >= next_live {
                        next_live = now_ + live_period;
                        if let Some(p) = &c.liveness_probe {
                            if self.probe(&deployed, &uid, &c, p).await {
                                liveness_failures = 0;
                            } else {
                                liveness_failures += 1;
                                if liveness_failures >= p.failure_threshold.unwrap_or(3) {
                                    return;
                                }
                            }
                        }
                    }
                }
            };
            let exit = tokio::select! {
                exit = child.wait() => exit?,
                () = probing => {
                    tracing::info!(pod = %key, "kubelet double: liveness probe failed; restarting the container");
                    let _ = child.start_kill();
                    child.wait().await?
                }
            };
            let code = pod_sandbox::exit_code(exit);
            // Deleted (its processes killed) or replaced: nothing more to run or report.
            let current = self.pods(&ns).get_opt(&name).await?;
            if self.stopped(&key)
                || !current.as_ref().is_some_and(|p| {
                    p.metadata.uid.as_deref() == Some(uid.as_str())
                        && p.metadata.deletion_timestamp.is_none()
                })
            {
                return Ok(());
            }
            let mut cs =
                super::terminated_status(&c, (code, String::new(), container_started, now()));
            cs.restart_count = restarts;
            let policy = spec.restart_policy.as_deref().unwrap_or("Always");
            if policy == "Always" || (policy == "OnFailure" && code != 0) {
                restarts += 1;
                last = cs.state;
                // The kubelet's crash-loop back-off, shortened: 1 s, doubling, at most 10 s.
                let backoff = Duration::from_secs(1 << restarts.clamp(1, 4).saturating_sub(1))
                    .min(Duration::from_secs(10));
                tokio::time::sleep(backoff).await;
                if self.stopped(&key) {
                    return Ok(());
                }
                continue;
            }
            let phase = if code == 0 { "Succeeded" } else { "Failed" };
            self.write_status(&pod, Self::base_status(phase, false, vec![cs], started))
                .await?;
            return Ok(());
        }
    }

    /// Whether the pod's processes were taken out of `running` (the pod is being deleted).
    fn stopped(&self, key: &str) -> bool {
        self.running
            .lock()
            .map(|r| !r.contains_key(key))
            .unwrap_or(true)
    }

    /// A deleted deployed pod stops as on a kubelet: SIGTERM to its process, SIGKILL after the
    /// grace period.
    pub(super) async fn stop_gracefully(&self, pod: &Pod) {
        let key = super::pod_key(pod);
        // Taking the pids out tells `run_deployed` the pod is gone (no restart).
        let pids = self
            .running
            .lock()
            .ok()
            .and_then(|mut r| r.remove(&key))
            .unwrap_or_default();
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        for pid in &pids {
            // `unshare` does not pass signals on: signal the sandbox, its child.
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                super::signal("-TERM", child);
            }
        }
        let alive = |pid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| !stat.contains(") Z "))
        };
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(u64::try_from(grace).unwrap_or(0));
        while pids.iter().any(alive) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for pid in pids {
            super::signal("-KILL", pid);
        }
    }

    /// One httpGet or tcpSocket probe through the container port's socket.
    async fn probe(&self, deployed: &DeployedPods, uid: &str, c: &Container, p: &Probe) -> bool {
        let port_of = |port: &IntOrString| match port {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(name) => c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port),
        };
        if let Some(get) = &p.http_get {
            let Some(port) = port_of(&get.port) else {
                return false;
            };
            let socket = port_socket(&deployed.socket_dir, uid, port);
            let path = get.path.as_deref().unwrap_or("/");
            return pod_sandbox::http_get(&socket, path)
                .await
                .is_some_and(|code| (200..400).contains(&code));
        }
        if let Some(tcp) = &p.tcp_socket {
            let Some(port) = port_of(&tcp.port) else {
                return false;
            };
            let socket = port_socket(&deployed.socket_dir, uid, port);
            return tokio::net::UnixStream::connect(socket).await.is_ok();
        }
        // exec and gRPC probes are not played: they pass.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_map_by_repository_whatever_the_tag_or_digest() {
        let d = DeployedPods {
            images: vec![(
                "ghcr.io/x/trigger-controller".into(),
                PathBuf::from("/bin/t"),
            )],
            api_server: "127.0.0.1:6443".parse().expect("address"),
            sandbox: PathBuf::from("/bin/sandbox"),
            socket_dir: PathBuf::from("/tmp"),
        };
        assert_eq!(
            d.entrypoint("ghcr.io/x/trigger-controller:0.1.0"),
            Some(Path::new("/bin/t"))
        );
        assert_eq!(
            d.entrypoint("ghcr.io/x/trigger-controller@sha256:ab"),
            Some(Path::new("/bin/t"))
        );
        assert_eq!(
            d.entrypoint("ghcr.io/x/trigger-controller"),
            Some(Path::new("/bin/t"))
        );
        assert_eq!(d.entrypoint("localhost:5000/x/other:1"), None);
        assert_eq!(d.entrypoint("ghcr.io/x/wave-marker:0.1.0"), None);
    }
}
