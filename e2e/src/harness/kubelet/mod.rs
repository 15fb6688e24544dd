//! The kubelet double: what is left of it is for the one test a real node cannot run here
//! (`go_operator_samples.rs`: its manifests name hosts of the internet, which the double's
//! node-level git mirror serves - docs/development.md). It plays the kubelet (and the scheduler)
//! for the pods of its namespaces:
//!
//! - it registers a Ready Node and binds unscheduled pods in its namespaces to it;
//! - it runs a pod's init containers, then its containers, as local processes and writes the
//!   real exit codes and termination messages back to the pod status;
//!   `activeDeadlineSeconds` is enforced as the kubelet does;
//! - a pod being deleted has its processes killed and is then removed, as the kubelet confirms
//!   a graceful deletion.
//!
//! Every other pod of the tests runs on the real node (`harness::real_node`).
//!
//! Running a container locally: the image is ignored and the container's `command` + `args`
//! run on this machine. Volumes become directories under the pod's work dir (emptyDir empty,
//! Secret and ConfigMap filled with their keys), and every occurrence of a mount path - and of
//! the termination message path - in the command, args, env values and workingDir is rewritten
//! to the local directory or file. Env `value`, `valueFrom` (secretKeyRef, configMapKeyRef,
//! fieldRef metadata.name/namespace) and `envFrom` are resolved from the API as a kubelet does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    Binding, ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Node, NodeCondition, NodeStatus, ObjectReference, Pod,
    PodCondition, PodIP, PodStatus, ProjectedVolumeSource, Secret, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use tokio::process::Command;

/// The kubelet caps a termination message at 4096 bytes.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;
const FIELD_MANAGER: &str = "nbg-local-kubelet";

#[derive(Clone, Debug)]
pub struct KubeletConfig {
    pub node_name: String,
    /// Namespaces to serve; all when empty.
    pub namespaces: Vec<String>,
    /// Where pods get their directories.
    pub work_dir: PathBuf,
    /// Environment every container starts with, as a node's own environment would be (for
    /// example `GIT_CONFIG_GLOBAL` naming a git mirror); the container's env comes after it.
    pub node_env: Vec<(String, String)>,
}

#[derive(Clone)]
struct State {
    client: Client,
    config: KubeletConfig,
    /// Pods (ns/name/uid) already being handled, so watch replays do not start them twice.
    started: Arc<Mutex<HashSet<String>>>,
    /// Local process ids per pod, to kill on deletion.
    running: Arc<Mutex<HashMap<String, Vec<u32>>>>,
}

/// The exit code container runtimes report for a container whose command could not start.
const START_ERROR_EXIT_CODE: i32 = 128;

/// A finished container's status, as a kubelet writes it.
fn terminated_status(
    c: &Container,
    (code, message, started_at, finished_at): (i32, String, Time, Time),
) -> ContainerStatus {
    let reason = match code {
        0 => "Completed",
        START_ERROR_EXIT_CODE if message.starts_with("exec:") => "StartError",
        _ => "Error",
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        started: Some(false),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                reason: Some(reason.into()),
                message: (!message.is_empty()).then_some(message),
                started_at: Some(started_at),
                finished_at: Some(finished_at),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    }
}

/// Sends `signal` (`-TERM`, `-KILL`) to a process; one already gone is no error.
fn signal(signal: &str, pid: u32) {
    let _ = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// Runs the double until the future is dropped.
pub async fn run(client: Client, config: KubeletConfig) -> anyhow::Result<()> {
    register_node(&client, &config.node_name).await?;
    let state = State {
        client: client.clone(),
        config: config.clone(),
        started: Arc::default(),
        running: Arc::default(),
    };
    let apis: Vec<Api<Pod>> = if config.namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        config
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    let streams = apis
        .into_iter()
        .map(|api| watcher(api, watcher::Config::default()).boxed());
    let mut events = futures::stream::select_all(streams);
    let heartbeat = {
        let client = client.clone();
        let node = config.node_name.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                let _ = register_node(&client, &node).await;
            }
        })
    };
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    let mut pod = pod;
                    while let Err(e) = state.handle(pod.clone()).await {
                        tracing::warn!(error = %e, "kubelet double: handling a pod failed");
                        // As a kubelet does: the pod stays Pending, its container waiting with
                        // the reason, and it tries again (a ConfigMap may appear).
                        state.report_config_error(&pod, &format!("{e:#}")).await;
                        if let Ok(mut started) = state.started.lock() {
                            started.remove(&pod_key(&pod));
                        }
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        let ns = pod.metadata.namespace.clone().unwrap_or_default();
                        let name = pod.metadata.name.clone().unwrap_or_default();
                        match state.pods(&ns).get_opt(&name).await {
                            Ok(Some(current))
                                if current.metadata.uid == pod.metadata.uid
                                    && current.metadata.deletion_timestamp.is_none() =>
                            {
                                pod = current;
                            }
                            _ => break,
                        }
                    }
                });
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "kubelet double: pod watch error");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    heartbeat.abort();
    Ok(())
}

fn node_resources() -> BTreeMap<String, Quantity> {
    [("cpu", "8"), ("memory", "32Gi"), ("pods", "110")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

async fn register_node(client: &Client, name: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/hostname".to_string(),
                name.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    nodes
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&node),
        )
        .await?;
    // The API server taints a new node not-ready; the node lifecycle controller (not run
    // here) lifts it once the node reports Ready, which this double does at once.
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"taints": null}})),
        )
        .await?;
    let status = Node {
        status: Some(NodeStatus {
            // What the scheduler predicates (run by the DaemonSet controller) look at.
            allocatable: Some(node_resources()),
            capacity: Some(node_resources()),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                message: Some("notebook-gitops kubelet double".into()),
                last_heartbeat_time: Some(now()),
                last_transition_time: Some(now()),
            }]),
            ..NodeStatus::default()
        }),
        ..node
    };
    nodes
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await?;
    Ok(())
}

impl State {
    fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    async fn handle(&self, pod: Pod) -> anyhow::Result<()> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let key = pod_key(&pod);
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());

        if pod.metadata.deletion_timestamp.is_some() {
            if node.as_deref() == Some(self.config.node_name.as_str()) {
                self.kill_processes(&key);
                let _ = self
                    .pods(&ns)
                    .delete(
                        &name,
                        &DeleteParams {
                            grace_period_seconds: Some(0),
                            ..DeleteParams::default()
                        },
                    )
                    .await;
            }
            return Ok(());
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            return Ok(());
        }
        match node {
            None => {
                let binding = Binding {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..ObjectMeta::default()
                    },
                    target: ObjectReference {
                        kind: Some("Node".into()),
                        name: Some(self.config.node_name.clone()),
                        ..ObjectReference::default()
                    },
                };
                // A conflict means someone bound it already; the next event brings it back.
                let _: Result<serde_json::Value, _> = self
                    .pods(&ns)
                    .create_subresource("binding", &name, &PostParams::default(), &binding)
                    .await;
                Ok(())
            }
            Some(n) if n == self.config.node_name => {
                if !self
                    .started
                    .lock()
                    .map(|mut s| s.insert(key.clone()))
                    .unwrap_or(false)
                {
                    return Ok(());
                }
                // A finished pod's volumes are kept (the test reads what a notebook wrote).
                self.run_pod(pod).await
            }
            Some(_) => Ok(()),
        }
    }

    async fn report_config_error(&self, pod: &Pod, message: &str) {
        let containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        let statuses: Vec<ContainerStatus> = containers
            .iter()
            .map(|c| ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: String::new(),
                ready: false,
                restart_count: 0,
                state: Some(ContainerState {
                    waiting: Some(k8s_openapi::api::core::v1::ContainerStateWaiting {
                        reason: Some("CreateContainerConfigError".into()),
                        message: Some(message.to_string()),
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            })
            .collect();
        let status = PodStatus {
            phase: Some("Pending".into()),
            container_statuses: Some(statuses),
            ..PodStatus::default()
        };
        let _ = self.write_status(pod, status).await;
    }

    fn kill_processes(&self, key: &str) {
        let pids = self
            .running
            .lock()
            .ok()
            .and_then(|mut r| r.remove(key))
            .unwrap_or_default();
        for pid in pids {
            signal("-KILL", pid);
        }
    }

    async fn write_status(&self, pod: &Pod, status: PodStatus) -> anyhow::Result<()> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let patch = serde_json::json!({ "status": status });
        self.pods(&ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    fn base_status(
        phase: &str,
        ready: bool,
        containers: Vec<ContainerStatus>,
        started: Time,
    ) -> PodStatus {
        let cond = |t: &str, v: bool| PodCondition {
            type_: t.into(),
            status: if v { "True" } else { "False" }.into(),
            last_transition_time: Some(now()),
            ..PodCondition::default()
        };
        PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![
                cond("PodScheduled", true),
                cond("Initialized", true),
                cond("ContainersReady", ready),
                cond("Ready", ready),
            ]),
            container_statuses: Some(containers),
            host_ip: Some("127.0.0.1".into()),
            pod_ip: Some("127.0.0.1".into()),
            pod_ips: Some(vec![PodIP {
                ip: "127.0.0.1".into(),
            }]),
            start_time: Some(started),
            ..PodStatus::default()
        }
    }

    fn running_status(c: &Container, ready: bool, started: &Time) -> ContainerStatus {
        ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: String::new(),
            ready,
            started: Some(true),
            restart_count: 0,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started.clone()),
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    async fn run_pod(&self, pod: Pod) -> anyhow::Result<()> {
        let key = pod_key(&pod);
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let started = now();
        let dir = self.config.work_dir.join(&ns).join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("volumes"))?;
        let mounts = self.prepare_volumes(&pod, &dir).await?;

        let running: Vec<ContainerStatus> = spec
            .containers
            .iter()
            .map(|c| Self::running_status(c, false, &started))
            .collect();
        self.write_status(
            &pod,
            Self::base_status("Running", false, running, started.clone()),
        )
        .await?;

        let deadline = spec
            .active_deadline_seconds
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));
        let work = async {
            let mut inits = Vec::new();
            for c in spec.init_containers.clone().unwrap_or_default() {
                let result = self
                    .run_container(&key, &ns, &name, &c, &mounts, &dir)
                    .await?;
                let failed = result.0 != 0;
                inits.push((c, result));
                if failed {
                    return Ok::<_, anyhow::Error>(Err(inits));
                }
            }
            let mut results = Vec::new();
            for c in &spec.containers {
                results.push((
                    c.clone(),
                    self.run_container(&key, &ns, &name, c, &mounts, &dir)
                        .await?,
                ));
            }
            Ok(Ok(results))
        };
        let outcome = match deadline {
            Some(d) => tokio::time::timeout(d, work).await.ok(),
            None => Some(work.await),
        };
        let mut status = match outcome {
            None => {
                self.kill_processes(&key);
                let mut s = Self::base_status("Failed", false, vec![], started);
                s.reason = Some("DeadlineExceeded".into());
                s.message = "Pod was active on the node longer than the specified deadline"
                    .to_string()
                    .into();
                s
            }
            Some(Err(e)) => {
                let mut s = Self::base_status("Failed", false, vec![], started);
                s.reason = Some("KubeletDoubleError".into());
                s.message = Some(format!("{e:#}"));
                s
            }
            // As a kubelet reports it: the init containers' states, the others still waiting.
            Some(Ok(Err(inits))) => {
                let waiting = spec
                    .containers
                    .iter()
                    .map(|c| ContainerStatus {
                        name: c.name.clone(),
                        image: c.image.clone().unwrap_or_default(),
                        state: Some(ContainerState {
                            waiting: Some(ContainerStateWaiting {
                                reason: Some("PodInitializing".into()),
                                ..ContainerStateWaiting::default()
                            }),
                            ..ContainerState::default()
                        }),
                        ..ContainerStatus::default()
                    })
                    .collect();
                let mut s = Self::base_status("Failed", false, waiting, started);
                s.init_container_statuses = Some(
                    inits
                        .into_iter()
                        .map(|(c, result)| terminated_status(&c, result))
                        .collect(),
                );
                s
            }
            Some(Ok(Ok(results))) => {
                let all_ok = results.iter().all(|(_, (code, ..))| *code == 0);
                let statuses = results
                    .into_iter()
                    .map(|(c, result)| terminated_status(&c, result))
                    .collect();
                Self::base_status(
                    if all_ok { "Succeeded" } else { "Failed" },
                    false,
                    statuses,
                    started,
                )
            }
        };
        if let Some(conditions) = status.conditions.as_mut() {
            conditions.retain(|c| c.type_ != "Ready" && c.type_ != "ContainersReady");
        }
        // The pod may be gone (deleted mid-run): nothing to report then.
        if self
            .pods(&ns)
            .get_opt(&name)
            .await?
            .is_some_and(|p| p.metadata.uid == pod.metadata.uid)
        {
            self.write_status(&pod, status).await?;
        }
        Ok(())
    }

    /// A projected volume's files, as the kubelet writes them.
    async fn project(
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

    async fn prepare_volumes(
        &self,
        pod: &Pod,
        dir: &Path,
    ) -> anyhow::Result<HashMap<String, PathBuf>> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let mut local = HashMap::new();
        for v in spec.volumes.clone().unwrap_or_default() {
            let path = dir.join("volumes").join(&v.name);
            std::fs::create_dir_all(&path)?;
            if let Some(projected) = &v.projected {
                self.project(pod, projected, &path).await?;
            }
            // A missing optional Secret or ConfigMap gives an empty volume, as on a real kubelet.
            if let Some(s) = &v.secret {
                let name = s.secret_name.clone().unwrap_or_default();
                match Api::<Secret>::namespaced(self.client.clone(), ns)
                    .get_opt(&name)
                    .await?
                {
                    Some(secret) => {
                        for (k, val) in secret.data.unwrap_or_default() {
                            std::fs::write(path.join(&k), &val.0)?;
                        }
                    }
                    None if s.optional == Some(true) => {}
                    None => anyhow::bail!("secret {name:?} of volume {:?} not found", v.name),
                }
            }
            if let Some(c) = &v.config_map {
                let what = format!("volume {:?}", v.name);
                self.config_map_files(ns, &c.name, c.optional, c.items.as_deref(), &path, &what)
                    .await?;
            }
            local.insert(v.name.clone(), path);
        }
        Ok(local)
    }

    /// A ConfigMap's keys (or the `items` chosen) as files in `dir`, as a kubelet writes a
    /// configMap volume or projection; a missing optional ConfigMap writes nothing.
    async fn config_map_files(
        &self,
        ns: &str,
        name: &str,
        optional: Option<bool>,
        items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
        dir: &Path,
        what: &str,
    ) -> anyhow::Result<()> {
        let data = match Api::<ConfigMap>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await?
        {
            Some(cm) => cm.data.unwrap_or_default(),
            None if optional == Some(true) => return Ok(()),
            None => anyhow::bail!("configmap {name:?} of {what} not found"),
        };
        match items {
            Some(items) => {
                for item in items {
                    if let Some(value) = data.get(&item.key) {
                        std::fs::write(dir.join(&item.path), value)?;
                    }
                }
            }
            None => {
                for (k, v) in &data {
                    std::fs::write(dir.join(k), v)?;
                }
            }
        }
        Ok(())
    }

    async fn env_of(
        &self,
        ns: &str,
        pod_name: &str,
        c: &Container,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let mut env = Vec::new();
        for from in c.env_from.clone().unwrap_or_default() {
            let prefix = from.prefix.clone().unwrap_or_default();
            if let Some(s) = from.secret_ref {
                let secret = Api::<Secret>::namespaced(self.client.clone(), ns)
                    .get(&s.name)
                    .await?;
                for (k, v) in secret.data.unwrap_or_default() {
                    env.push((
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v.0).into_owned(),
                    ));
                }
            }
            if let Some(m) = from.config_map_ref {
                let cm = Api::<ConfigMap>::namespaced(self.client.clone(), ns)
                    .get(&m.name)
                    .await?;
                for (k, v) in cm.data.unwrap_or_default() {
                    env.push((format!("{prefix}{k}"), v));
                }
            }
        }
        for e in c.env.clone().unwrap_or_default() {
            let value = if let Some(v) = e.value {
                v
            } else if let Some(from) = e.value_from {
                if let Some(s) = from.secret_key_ref {
                    let secret = Api::<Secret>::namespaced(self.client.clone(), ns)
                        .get(&s.name)
                        .await?;
                    secret
                        .data
                        .unwrap_or_default()
                        .get(&s.key)
                        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                        .unwrap_or_default()
                } else if let Some(m) = from.config_map_key_ref {
                    let cm = Api::<ConfigMap>::namespaced(self.client.clone(), ns)
                        .get(&m.name)
                        .await?;
                    cm.data
                        .unwrap_or_default()
                        .get(&m.key)
                        .cloned()
                        .unwrap_or_default()
                } else if let Some(f) = from.field_ref {
                    match f.field_path.as_str() {
                        "metadata.name" => pod_name.to_string(),
                        "metadata.namespace" => ns.to_string(),
                        _ => String::new(),
                    }
                } else {
                    String::new()
                }
            } else {
                String::new()
            };
            env.push((e.name, value));
        }
        Ok(env)
    }

    /// Runs one container; returns (exit code, termination message, started, finished).
    async fn run_container(
        &self,
        key: &str,
        ns: &str,
        pod_name: &str,
        c: &Container,
        volumes: &HashMap<String, PathBuf>,
        dir: &Path,
    ) -> anyhow::Result<(i32, String, Time, Time)> {
        let termination_path = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        let local_termination = dir.join(format!("termination-{}", c.name));
        let _ = std::fs::remove_file(&local_termination);
        // Longest mount path first, so /a/b is rewritten before /a.
        let mut rewrites: Vec<(String, String)> = c
            .volume_mounts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let base = volumes.get(&m.name)?;
                let local = match &m.sub_path {
                    Some(sub) if !sub.is_empty() => base.join(sub),
                    _ => base.clone(),
                };
                let _ = std::fs::create_dir_all(&local);
                Some((m.mount_path, local.to_string_lossy().into_owned()))
            })
            .collect();
        rewrites.push((
            termination_path,
            local_termination.to_string_lossy().into_owned(),
        ));
        rewrites.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        let rewrite = |s: &str| {
            rewrites.iter().fold(s.to_string(), |acc, (from, to)| {
                acc.replace(from.as_str(), to)
            })
        };

        let mut argv: Vec<String> = c.command.clone().unwrap_or_default();
        argv.extend(c.args.clone().unwrap_or_default());
        let argv: Vec<String> = argv.iter().map(|a| rewrite(a)).collect();
        let started = now();
        let Some((program, args)) = argv.split_first() else {
            let msg = format!(
                "container {} has no command; the kubelet double cannot run image entrypoints",
                c.name
            );
            return Ok((128, msg, started.clone(), started));
        };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        let workdir = c
            .working_dir
            .as_deref()
            .map(&rewrite)
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.to_path_buf());
        let _ = std::fs::create_dir_all(&workdir);
        cmd.current_dir(workdir);
        for (k, v) in &self.config.node_env {
            cmd.env(k, v);
        }
        for (k, v) in self.env_of(ns, pod_name, c).await? {
            cmd.env(k, rewrite(&v));
        }
        let log = std::fs::File::create(dir.join(format!("{}.log", c.name)))?;
        cmd.stdout(log.try_clone()?).stderr(log);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            // As a container runtime reports an entrypoint it cannot exec.
            Err(e) => {
                return Ok((
                    START_ERROR_EXIT_CODE,
                    format!("exec: {program:?}: {e}"),
                    started.clone(),
                    now(),
                ));
            }
        };
        if let (Some(pid), Ok(mut running)) = (child.id(), self.running.lock()) {
            running.entry(key.to_string()).or_default().push(pid);
        }
        let status = child.wait().await?;
        let code = status.code().unwrap_or(137);
        let mut message = std::fs::read(&local_termination).unwrap_or_default();
        message.truncate(TERMINATION_MESSAGE_LIMIT);
        Ok((
            code,
            String::from_utf8_lossy(&message).into_owned(),
            started,
            now(),
        ))
    }
}

impl KubeletConfig {
    /// The double as tests use it: one node per test, serving `namespaces`, working under
    /// `target/e2e-kubelet` (per Argo CD configuration: `per_argocd_cell`).
    pub fn for_test(namespaces: &[&str]) -> Self {
        Self {
            node_name: format!("kubelet-{}", namespaces.first().copied().unwrap_or("test")),
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            work_dir: crate::harness::cluster::repo_root()
                .join("target")
                .join(crate::harness::cluster::per_argocd_cell("e2e-kubelet")),
            node_env: vec![],
        }
    }
}

/// Runs the double in the background until the handle is aborted or dropped with its runtime.
pub fn spawn(client: Client, config: KubeletConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = run(client, config).await {
            tracing::error!(error = %format!("{e:#}"), "kubelet double failed");
        }
    })
}
